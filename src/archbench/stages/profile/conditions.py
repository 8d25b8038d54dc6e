"""The conditions a measurement was taken under: owns the load average, the usable cores, the timing spread
and the "noisy" verdict with its reasons; times nothing itself.

A profile row is *noisy* when any of these holds, and the row says which:
- the host's 1-minute load average, read before and after the row was measured (`os.getloadavg`),
  exceeds the cores this process may use (`os.sched_getaffinity`): other work competed for the CPU. The
  load counts this process too, so profiling with as many threads as cores on an idle machine is not noisy;
- a measurement's spread, p90 / p10 − 1 of its timed calls, exceeds 25 %: the calls did not take the same
  time (contention, frequency changes, a cold cache);
- fewer than 10 calls were timed (`profile.iters` below 10, or a budget that ran out): too few to say.
What it does not detect: a load that rose and fell between the two readings, a CPU quota (cgroup) smaller
than the affinity set, or another process on the same GPU. Compare rows measured in one invocation.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

NOISY_SPREAD = 0.25  # p90 / p10 − 1 above this: the row is noisy
MIN_STEADY_ITERS = 10  # fewer timed calls than this: too few to judge the spread


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity set; the machine's count where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The host's 1-minute load average, or None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def spread(p10: float, p90: float) -> float | None:
    """p90 / p10 − 1 of a measurement's timed calls (None when p10 is not positive)."""
    return round(p90 / p10 - 1.0, 4) if p10 > 0 else None


def timed_measurements(entry: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, summary) of every timing an entry holds: inference at each batch size, the training step."""
    out = [(f"inference b{m['batch']}", m) for m in entry.get("inference") or []]
    if "train_step_ms" in entry:
        out.append(
            (
                f"train step b{entry['train_batch']}",
                {"iters": entry["train_iters"], "spread": entry.get("train_step_spread")},
            )
        )
    return out


def noisy_reasons(
    measurements: list[tuple[str, dict[str, Any]]], loads: list[float | None], cores: int
) -> list[str]:
    """Why a row's numbers should not be trusted as they stand ([]: steady)."""
    reasons = []
    known = [x for x in loads if x is not None]
    if known and max(known) > cores:
        reasons.append(f"load {max(known):.1f} > {cores} usable cores")
    wide = [
        f"{label} {m['spread']:.0%}" for label, m in measurements if (m.get("spread") or 0) > NOISY_SPREAD
    ]
    if wide:
        reasons.append(f"spread > {NOISY_SPREAD:.0%}: {', '.join(wide)}")
    fewest = min((int(m["iters"]) for _, m in measurements), default=None)
    if fewest is not None and fewest < MIN_STEADY_ITERS:
        reasons.append(f"{fewest} timed calls < {MIN_STEADY_ITERS}")
    return reasons


def assess(
    entry: dict[str, Any], device: torch.device, load_before: float | None, load_after: float | None
) -> dict[str, Any]:
    """The `conditions` of one measured entry: device, threads, cores, load before/after, spread, verdict."""
    import torch

    measurements = timed_measurements(entry)
    spreads = [m["spread"] for _, m in measurements if m.get("spread") is not None]
    cores = usable_cores()
    reasons = noisy_reasons(measurements, [load_before, load_after], cores)
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "usable_cores": cores,
        "load_before": load_before,
        "load_after": load_after,
        "spread": max(spreads) if spreads else None,
        "noisy": reasons,
    }


def verdict(conditions: dict[str, Any] | None) -> str:
    """One cell: "steady", "noisy: why; why", or "" when the row states no conditions (older records)."""
    if not conditions:
        return ""
    reasons = conditions.get("noisy") or []
    return "noisy: " + "; ".join(reasons) if reasons else "steady"
