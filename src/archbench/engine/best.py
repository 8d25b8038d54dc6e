"""Which weights are best: owns the weights EMA (`train.ema`), the choice between raw and EMA weights on
validation, and early stopping (`train.early_stopping`); never trains or writes files (epoch.py does).

Everything here is a pure function of the epoch's validation numbers and the counters kept in
`TrainState` (saved in every checkpoint), so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from archbench.config import TrainSpec


class WeightsEma:
    """An exponential moving average of a model's floating-point state (parameters and float buffers);
    integer buffers (e.g. BatchNorm's batch count) are copied. Updated after every optimizer step, with
    one foreach kernel; timm's ModelEmaV3 without warm-up."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()  # no RNG draw: the run's random stream is unchanged
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values(), strict=True))
        self._float = [(e, m) for e, m in pairs if e.is_floating_point()]
        self._other = [(e, m) for e, m in pairs if not e.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        if self._float:
            ema, now = zip(*self._float, strict=True)
            torch._foreach_lerp_(list(ema), list(now), 1.0 - self.decay)
        for e, m in self._other:
            e.copy_(m)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)  # copies in place: the update pairs stay valid


def better(a: float, b: float, metric: str, min_delta: float = 0.0) -> bool:
    """Whether `a` beats `b` on `metric` by more than `min_delta` (accuracy up, loss down)."""
    return a > b + min_delta if metric == "val_acc" else a < b - min_delta


def tracked(stats: dict[str, Any], t: TrainSpec) -> tuple[float, str]:
    """The epoch's value of `train.best_metric` and the weights it belongs to ("raw" or "ema"):
    `train.ema.use` picks one, or (`better`) the better of the two on validation."""
    raw = stats[t.best_metric]
    if t.ema is None or t.ema.use == "raw":
        return raw, "raw"
    ema = stats[f"ema_{t.best_metric}"]
    if t.ema.use == "ema" or better(ema, raw, t.best_metric):
        return ema, "ema"
    return raw, "raw"


def stop_reason(t: TrainSpec, early: dict[str, Any]) -> str | None:
    """Why training stops now (early stopping), or None: `early["stale"]` epochs in a row did not improve
    on the reference (`value` at `epoch`) by more than `min_delta`."""
    es = t.early_stopping
    if es is None or early["stale"] < es.patience:
        return None
    return (
        f"{t.best_metric} did not improve on {early['value']:.6g} (epoch {early['epoch']}) by more than "
        f"{es.min_delta} for {early['stale']} epochs (patience {es.patience})"
    )
