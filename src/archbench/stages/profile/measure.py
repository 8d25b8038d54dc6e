"""Profiling one target at one input size: owns the order of measurements and the entry's keys.

Order: params and FLOPs per image (counted on the meta device) → build on the device → inference
timings at every batch size → inference memory → training-step timing → training-step memory. Inference
comes before the training step, whose optimizer state would otherwise sit in the inference memory reading.
A failure (out of memory, a bad size) ends the entry with `error`, keeping what was measured before it.
The host's load average is read before and after, and `conditions.py` says whether the entry is noisy.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archbench.config import ProfileSpec
from archbench.stages.profile.target import Target

if TYPE_CHECKING:
    import torch

_DEFAULTS = ProfileSpec()  # the defaults live in the sweep file's `profile:` section, and only there


@dataclass(frozen=True)
class ProfileSettings:
    """How one target is measured: the `profile:` section's knobs plus what only the quick look sets."""

    batch_sizes: tuple[int, ...] = tuple(
        _DEFAULTS.batch_sizes
    )  # latency at the first, throughput at the last
    warmup: int = _DEFAULTS.warmup
    iters: int = _DEFAULTS.iters
    memory: bool = _DEFAULTS.memory
    train_step: bool = _DEFAULTS.train_step
    budget_s: float | None = _DEFAULTS.budget_s  # per measurement: more timed calls until spent
    memory_timeout_s: float = 900.0

    @classmethod
    def from_spec(cls, spec: ProfileSpec) -> ProfileSettings:
        return cls(
            batch_sizes=tuple(spec.batch_sizes),
            warmup=spec.warmup,
            iters=spec.iters,
            memory=spec.memory,
            train_step=spec.train_step,
            budget_s=spec.budget_s,
        )

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if self.iters < 1 or self.warmup < 0:
            raise ValueError(f"need iters >= 1 and warmup >= 0, got {self.iters} and {self.warmup}")


def precision(target: Target, device: torch.device) -> tuple[bool, bool]:
    """(amp, channels_last) as the run's training settings decide them on `device`."""
    from archbench.engine.runtime import amp_enabled, channels_last_enabled

    return amp_enabled(target.train, device), channels_last_enabled(target.train, device)


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on: device, CPU threads, library versions, what FLOPs count."""
    import platform

    import torch

    from archbench.stages.profile.counting import FLOP_NOTE, counted_ops
    from archbench.store.record import library_versions

    info: dict[str, Any] = {"type": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=[props.major, props.minor],
            memory_mb=round(props.total_memory / 2**20),
        )
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
    return {
        "device": info,
        "threads": torch.get_num_threads(),
        "libraries": library_versions(),
        "counted_ops": counted_ops(),
        "flop_note": FLOP_NOTE,
    }


def measure(target: Target, settings: ProfileSettings, device: torch.device) -> dict[str, Any]:
    """Params, MACs/FLOPs per image, latency, throughput, training step and peak memory of one target, and
    the conditions they were measured under (`conditions`: load before and after, threads, spread)."""
    from archbench.stages.profile.conditions import assess, load_average

    before = load_average()
    entry = _measure(target, settings, device)
    entry["conditions"] = assess(entry, device, before, load_average())
    return entry


def _measure(target: Target, settings: ProfileSettings, device: torch.device) -> dict[str, Any]:
    import torch

    from archbench.stages.profile.memory import cuda_usage
    from archbench.stages.profile.target import build_model, example_batch

    amp, cl = precision(target, device)
    entry: dict[str, Any] = {"resolution": target.resolution}
    model: Any = None
    bench: _Bench | None = None
    try:
        entry.update(_counts(target))
        foreign = cuda_usage(device) if device.type == "cuda" else (0, 0)
        model = build_model(target, device, channels_last=cl)
        bench = _Bench(target, settings, device, model, amp, cl)
        entry.update(bench.inference())
        batch = settings.batch_sizes[-1]
        x, y = example_batch(target, batch, device, channels_last=cl)
        memory: dict[str, Any] = {"batch": batch}
        if settings.memory and device.type == "cuda":
            memory.update(bench.cuda_inference_memory(x, foreign))
        if settings.train_step:
            bench.train_step(entry, memory, x, y, foreign)
        if settings.memory and device.type == "cpu":
            memory.update(bench.cpu_memory(batch))
        if settings.memory:
            entry.update(_memory_fields(memory))
    except Exception as exc:  # one size failing (OOM, a size the model refuses) must not stop the others
        entry["error"] = f"{type(exc).__name__}: {exc}".strip()[:2000]
    finally:
        del model, bench  # the bench holds the model too
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return entry


def _counts(target: Target) -> dict[str, Any]:
    """Params and FLOPs per image (counted on the meta device), with MACs = FLOPs / 2."""
    from archbench.stages.profile.counting import count_target

    counts = count_target(target)
    flops = counts["flops"]
    return {
        "params_total": counts["params_total"],
        "params_trainable": counts["params_trainable"],
        "flops": flops,
        "macs": flops // 2,
        "gflops": round(flops / 1e9, 6),
        "gmacs": round(flops / 2e9, 6),
        "flops_by_op": counts["flops_by_op"],
        "flops_counted_on": counts["counted_on"],
    }


def _memory_fields(memory: dict[str, Any]) -> dict[str, Any]:
    """The entry's `memory` block and its headline peaks (training step, else inference)."""
    out: dict[str, Any] = {"memory": memory}
    peak = memory.get("train_step_mb", memory.get("inference_mb"))
    if peak is not None:
        out["peak_memory_mb"] = peak
    if "inference_reserved_mb" in memory:
        out["peak_memory_reserved_mb"] = max(
            memory["inference_reserved_mb"], memory.get("train_step_reserved_mb", 0.0)
        )
    return out


@dataclass
class _Bench:
    """One model built on one device, and the measurements taken of it (in `measure`'s order)."""

    target: Target
    settings: ProfileSettings
    device: torch.device
    model: Any
    amp: bool
    channels_last: bool

    def _timed(self, fn: Any) -> list[float]:
        from archbench.stages.profile.timing import time_calls

        s = self.settings
        return time_calls(fn, self.device, warmup=s.warmup, iters=s.iters, budget_s=s.budget_s)

    def inference(self) -> dict[str, Any]:
        """Timings at every batch size: latency at the first, throughput at the last."""
        from archbench.stages.profile.target import example_batch
        from archbench.stages.profile.timing import inference_step, summarise

        inference = []
        for batch in self.settings.batch_sizes:
            x, _ = example_batch(self.target, batch, self.device, channels_last=self.channels_last)
            inference.append(summarise(self._timed(inference_step(self.model, x, self.amp)), batch))
        first, last = inference[0], inference[-1]
        return {
            "inference": inference,
            "latency_ms_p10": first["ms_p10"],
            "latency_ms_p50": first["ms_p50"],
            "latency_ms_p90": first["ms_p90"],
            "latency_batch": first["batch"],
            "throughput_img_s": last["img_s"],
            "throughput_batch": last["batch"],
        }

    def cuda_inference_memory(self, x: Any, foreign: tuple[int, int]) -> dict[str, Any]:
        from archbench.stages.profile.memory import cuda_peak
        from archbench.stages.profile.timing import inference_step

        got = cuda_peak(inference_step(self.model, x, self.amp), self.device, foreign)
        return {
            "method": "torch.cuda.max_memory_allocated / max_memory_reserved, one call",
            "foreign_mb": round(foreign[0] / 2**20, 2),  # held by other work, not counted
            "inference_mb": got["peak_mb"],
            "inference_reserved_mb": got["reserved_mb"],
            "baseline_mb": got["baseline_mb"],
        }

    def train_step(
        self, entry: dict[str, Any], memory: dict[str, Any], x: Any, y: Any, foreign: tuple[int, int]
    ) -> None:
        """Training-step timing (and its CUDA peak memory) at the largest batch, after inference."""
        from archbench.stages.profile.memory import cuda_peak
        from archbench.stages.profile.timing import summarise, train_step

        batch = self.settings.batch_sizes[-1]
        fit = train_step(self.model, self.target.train, self.amp)
        train = summarise(self._timed(lambda: fit(x, y)), batch)
        entry.update(
            train_step_ms=train["ms_p50"],
            train_step_ms_p10=train["ms_p10"],
            train_step_ms_p90=train["ms_p90"],
            train_step_spread=train["spread"],
            train_throughput_img_s=train["img_s"],
            train_batch=batch,
            train_iters=train["iters"],
        )
        if self.settings.memory and self.device.type == "cuda":
            got = cuda_peak(lambda: fit(x, y), self.device, foreign)
            memory.update(train_step_mb=got["peak_mb"], train_step_reserved_mb=got["reserved_mb"])
        self.model.eval()

    def cpu_memory(self, batch: int) -> dict[str, Any]:
        import torch

        from archbench.stages.profile.memory import cpu_peak_rss

        peak = cpu_peak_rss(
            self.target,
            batch,
            train_step=self.settings.train_step,
            amp=self.amp,
            channels_last=self.channels_last,
            threads=torch.get_num_threads(),
            timeout_s=self.settings.memory_timeout_s,
        )
        return {"method": "peak RSS (VmHWM) of a fresh subprocess, one call each", **peak}
