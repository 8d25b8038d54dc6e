"""Timing inference and training steps: owns warm-up, device synchronisation and percentiles; never counts.

On CUDA each call is bracketed by CUDA events and the device is synchronised before reading them, so the
time is the GPU's, not the launch queue's; on CPU calls are synchronous and `perf_counter` brackets them.
A training step is what the training loop does: zero_grad, forward (under the run's autocast), loss,
backward, optimizer step. Its optimizer is the run's, at learning rate 0, so timing leaves weights as they
were while doing the same arithmetic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from archbench.engine.runtime import autocast

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archbench.config import TrainSpec


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def inference_step(model: nn.Module, x: torch.Tensor, amp: bool) -> Callable[[], None]:
    import torch

    def step() -> None:
        with torch.inference_mode(), autocast(x.device, amp):
            model(x)

    return step


def train_step(model: nn.Module, train: TrainSpec, amp: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One optimizer step of the run's kind on (x, y); puts the model in train mode (callers restore eval).

    The optimizer lives as long as the returned function, so its state is allocated once, as in training.
    """
    from torch import nn

    from archbench.engine.optim import build_optimizer

    model.train()
    opt = build_optimizer(model, train)
    for group in opt.param_groups:
        group["lr"] = 0.0
    crit = nn.CrossEntropyLoss(label_smoothing=train.label_smoothing)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(x.device, amp):
            out = model(x)
            loss = crit(out.float(), y)
        loss.backward()
        opt.step()

    return step


MAX_ITERS = 1000  # a measurement's timed calls never exceed this, however fast they are


def time_calls(
    fn: Callable[[], None],
    device: torch.device,
    *,
    warmup: int,
    iters: int,
    budget_s: float | None = None,
) -> list[float]:
    """Milliseconds of each timed call of `fn`, after `warmup` untimed calls.

    Adaptive within `budget_s`: at least `iters` calls are timed; after them timing goes on while the timed
    calls add up to less than `budget_s` seconds (at most MAX_ITERS calls), so a fast call gets enough
    samples for a steady p10/p90 and a slow one costs only its `iters`. Warm-up stops early once it has
    taken `budget_s`. None or 0: exactly `iters` timed calls.
    """
    import torch

    cuda = device.type == "cuda"
    budget = budget_s or 0.0
    started = time.perf_counter()
    for _ in range(warmup):
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        if budget and time.perf_counter() - started > budget:
            break
    times: list[float] = []
    while len(times) < iters or (sum(times) / 1e3 < budget and len(times) < MAX_ITERS):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(float(begin.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def summarise(times_ms: Sequence[float], batch: int) -> dict[str, Any]:
    """p10, median and p90 milliseconds per call, their spread (p90 / p10 − 1), and images/s at the median."""
    from archbench.stages.profile.conditions import spread

    p10, p50, p90 = (percentile(times_ms, q) for q in (10, 50, 90))
    return {
        "batch": batch,
        "ms_p10": round(p10, 4),
        "ms_p50": round(p50, 4),
        "ms_p90": round(p90, 4),
        "spread": spread(p10, p90),
        "img_s": round(batch / (p50 / 1e3), 2) if p50 > 0 else None,
        "iters": len(times_ms),
    }
