"""Profiling one target at one input size: owns the order of measurements and the entry's keys.

Order: params and FLOPs per image (counted on the meta device) → build on the device → inference
timings at every batch size → inference memory → training-step timing → training-step memory. Inference
comes before the training step, whose optimizer state would otherwise sit in the inference memory reading.
A failure (out of memory, a bad size) ends the entry with `error`, keeping what was measured before it.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archbench.stages.profile.target import Target

if TYPE_CHECKING:
    import torch

    from archbench.config import ProfileSpec


@dataclass(frozen=True)
class ProfileSettings:
    batch_sizes: tuple[int, ...] = (1, 64)  # latency at the first, throughput at the last
    warmup: int = 3
    iters: int = 10
    memory: bool = True
    train_step: bool = True
    budget_s: float | None = None  # quick looks: stop each timing early once it took this long
    memory_timeout_s: float = 900.0

    @classmethod
    def from_spec(cls, spec: ProfileSpec) -> ProfileSettings:
        return cls(
            batch_sizes=tuple(spec.batch_sizes),
            warmup=spec.warmup,
            iters=spec.iters,
            memory=spec.memory,
            train_step=spec.train_step,
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
    """Params, MACs/FLOPs per image, latency, throughput, training step and peak memory of one target."""
    import torch

    from archbench.stages.profile.counting import count_target
    from archbench.stages.profile.memory import cpu_peak_rss, cuda_peak, cuda_usage
    from archbench.stages.profile.target import build_model, example_batch
    from archbench.stages.profile.timing import inference_step, summarise, time_calls, train_step

    amp, cl = precision(target, device)
    entry: dict[str, Any] = {"resolution": target.resolution}
    model: Any = None
    try:
        counts = count_target(target)
        flops = counts["flops"]
        entry.update(
            params_total=counts["params_total"],
            params_trainable=counts["params_trainable"],
            flops=flops,
            macs=flops // 2,
            gflops=round(flops / 1e9, 6),
            gmacs=round(flops / 2e9, 6),
            flops_by_op=counts["flops_by_op"],
            flops_counted_on=counts["counted_on"],
        )
        foreign = cuda_usage(device) if device.type == "cuda" else (0, 0)
        model = build_model(target, device, channels_last=cl)

        def timed(fn: Any) -> list[float]:
            return time_calls(
                fn, device, warmup=settings.warmup, iters=settings.iters, budget_s=settings.budget_s
            )

        inference = []
        for batch in settings.batch_sizes:
            x, _ = example_batch(target, batch, device, channels_last=cl)
            inference.append(summarise(timed(inference_step(model, x, amp)), batch))
        entry["inference"] = inference
        first, last = inference[0], inference[-1]
        entry.update(
            latency_ms_p50=first["ms_p50"],
            latency_ms_p90=first["ms_p90"],
            latency_batch=first["batch"],
            throughput_img_s=last["img_s"],
            throughput_batch=last["batch"],
        )

        batch = settings.batch_sizes[-1]
        x, y = example_batch(target, batch, device, channels_last=cl)
        memory: dict[str, Any] = {"batch": batch}
        if settings.memory and device.type == "cuda":
            memory["method"] = "torch.cuda.max_memory_allocated / max_memory_reserved, one call"
            memory["foreign_mb"] = round(foreign[0] / 2**20, 2)  # held by other work, not counted
            got = cuda_peak(inference_step(model, x, amp), device, foreign)
            memory.update(inference_mb=got["peak_mb"], inference_reserved_mb=got["reserved_mb"])
            memory["baseline_mb"] = got["baseline_mb"]
        if settings.train_step:
            fit = train_step(model, target.train, amp)
            train = summarise(timed(lambda: fit(x, y)), batch)
            entry.update(
                train_step_ms=train["ms_p50"],
                train_step_ms_p90=train["ms_p90"],
                train_throughput_img_s=train["img_s"],
                train_batch=batch,
                train_iters=train["iters"],
            )
            if settings.memory and device.type == "cuda":
                got = cuda_peak(lambda: fit(x, y), device, foreign)
                memory.update(train_step_mb=got["peak_mb"], train_step_reserved_mb=got["reserved_mb"])
            model.eval()
        if settings.memory and device.type == "cpu":
            memory["method"] = "peak RSS (VmHWM) of a fresh subprocess, one call each"
            memory.update(
                cpu_peak_rss(
                    target,
                    batch,
                    train_step=settings.train_step,
                    amp=amp,
                    channels_last=cl,
                    threads=torch.get_num_threads(),
                    timeout_s=settings.memory_timeout_s,
                )
            )
        if settings.memory:
            entry["memory"] = memory
            peak = memory.get("train_step_mb", memory.get("inference_mb"))
            if peak is not None:
                entry["peak_memory_mb"] = peak
            if "inference_reserved_mb" in memory:
                entry["peak_memory_reserved_mb"] = max(
                    memory["inference_reserved_mb"], memory.get("train_step_reserved_mb", 0.0)
                )
    except Exception as exc:  # one size failing (OOM, a size the model refuses) must not stop the others
        entry["error"] = f"{type(exc).__name__}: {exc}".strip()[:2000]
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return entry
