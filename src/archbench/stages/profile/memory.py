"""Peak memory of inference and a training step: owns the CUDA allocator readings and the CPU subprocess.

CUDA: `max_memory_allocated` (tensors: weights, activations, gradients, optimizer state) and
`max_memory_reserved` (what the caching allocator holds from the driver) around one call, less what the
process held before the profiled network was built (the stage runs in the process that just trained).
CPU: a process's resident memory cannot be attributed to one call while other work shares the process,
so a fresh subprocess (`python -m archbench.stages.profile.memory`, the job as JSON on stdin, never pickle)
builds the same network, warms up with a 2-image call of each kind, resets its high-water mark
(/proc/self/clear_refs), runs one inference call, reads VmHWM, resets, runs one training step, reads
VmHWM, and prints one JSON line. Its peaks include the interpreter, torch, the weights and the optimizer
state; `baseline_mb` is the resident size just before the measured work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.stages.profile.target import Target

if TYPE_CHECKING:
    import torch

MB = 1024 * 1024


def cuda_usage(device: torch.device) -> tuple[int, int]:
    """(allocated, reserved) bytes now, after releasing the allocator's unused cache."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)


def cuda_peak(
    fn: Callable[[], None], device: torch.device, foreign: tuple[int, int] = (0, 0)
) -> dict[str, float]:
    """Allocator readings (MB) around one call of `fn`, less `foreign` (allocated, reserved) bytes held by
    other work in this process (e.g. the run that just trained): allocated before, peak allocated, peak
    reserved."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return {
        "baseline_mb": round((baseline - foreign[0]) / MB, 2),
        "peak_mb": round((torch.cuda.max_memory_allocated(device) - foreign[0]) / MB, 2),
        "reserved_mb": round((torch.cuda.max_memory_reserved(device) - foreign[1]) / MB, 2),
    }


# --- CPU: the parent side ------------------------------------------------------------------------------


def cpu_peak_rss(
    target: Target,
    batch: int,
    *,
    train_step: bool,
    amp: bool,
    channels_last: bool,
    threads: int,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Peak resident memory (MB) of a fresh process doing one inference call and one training step.

    Returns {"baseline_mb", "inference_mb", "train_step_mb" (if train_step)}; raises RuntimeError with the
    child's last words if it fails or is killed (e.g. by the kernel's out-of-memory killer).
    """
    job = {
        "target": target.to_json(),
        "batch": batch,
        "train_step": train_step,
        "amp": amp,
        "channels_last": channels_last,
        "threads": threads,
    }
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the archbench package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "archbench.stages.profile.memory"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"memory subprocess took longer than {timeout_s:.0f} s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = {}
    if proc.returncode != 0 or "error" in result or not result:
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}" + (
                " (out of memory?)" if proc.returncode == -9 else ""
            )
        else:
            why = result.get("error") or f"exit code {proc.returncode}"
        tail = proc.stderr.strip().splitlines()[-1:] if "error" not in result else []
        raise RuntimeError(f"memory subprocess failed: {why}" + (f" ({tail[0]})" if tail else ""))
    return result


# --- CPU: the child side -------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_high_water_mark() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # no /proc: ru_maxrss is KB on Linux, bytes on macOS
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = rss // 1024 if sys.platform == "darwin" else rss
    return round(kb / 1024, 2)


def _child(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from archbench.stages.profile.target import build_model, example_batch
    from archbench.stages.profile.timing import inference_step, train_step

    torch.set_num_threads(int(job["threads"]))
    target = Target.from_json(job["target"])
    device = torch.device("cpu")
    cl, amp = bool(job["channels_last"]), bool(job["amp"])
    model = build_model(target, device, channels_last=cl)
    x, y = example_batch(target, int(job["batch"]), device, channels_last=cl)
    # One small warm-up call of each kind first, so one-time costs (kernel libraries, thread pools, the
    # optimizer's state) are in the baseline and the peaks are those of a steady loop. Two images, not
    # one: BatchNorm in train mode refuses a single value per channel.
    wx, wy = example_batch(target, min(2, int(job["batch"])), device, channels_last=cl)
    inference_step(model, wx, amp)()
    step = train_step(model, target.train, amp) if job["train_step"] else None
    if step is not None:
        step(wx, wy)
        model.eval()
    del wx, wy
    resettable = _reset_high_water_mark()
    out: dict[str, Any] = {"baseline_mb": round((_status_kb("VmRSS") or 0) / 1024, 2)}
    inference_step(model, x, amp)()
    out["inference_mb"] = _peak_mb()
    if step is not None:
        model.train()
        _reset_high_water_mark()
        step(x, y)
        out["train_step_mb"] = _peak_mb()
    if not resettable:
        out["note"] = "high-water mark not resettable here: peaks include building the model"
    return out


def main() -> None:
    """`python -m archbench.stages.profile.memory`: one JSON job on stdin, one JSON result line on stdout."""
    try:
        result = _child(json.loads(sys.stdin.read()))
    except MemoryError:
        result = {"error": "MemoryError (out of host memory)"}
    except Exception as exc:  # reported to the parent, which records it for this entry
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
