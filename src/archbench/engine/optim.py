"""Optimizer and learning-rate schedule: owns how a `TrainSpec` becomes torch optimizer and scheduler.

Shared by the trainer and by profiling's training-step timing, so both step the same optimizer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from archbench.util.errors import RunFailure

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archbench.config import TrainSpec


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RunFailure("nothing_to_train", "every parameter is frozen (model.freeze too large)")
    groups: Any = params if train.layer_decay is None else layer_decay_groups(model, train)
    # Fused kernels (one launch for every parameter) when everything is on CUDA; else the foreach
    # (multi-tensor) path, which on CPU computes the same values as the per-tensor loop.
    fused = all(p.is_cuda for p in params)
    impl: dict[str, Any] = {"fused": True} if fused else {"foreach": True}
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=train.lr,
            momentum=train.momentum,
            nesterov=train.nesterov and train.momentum > 0,
            weight_decay=train.weight_decay,
            **impl,
        )
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=train.lr, weight_decay=train.weight_decay, **impl)
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay, **impl)


def layer_decay_groups(model: nn.Module, train: TrainSpec) -> list[dict[str, Any]]:
    """One param group per layer of the model's `group_matcher` (timm's `param_groups_layer_decay`), each
    with its own lr: `train.lr * layer_decay**k`, k counted down from the head (k=0) to the stem.

    Weight decay stays as without layer decay (every parameter, `train.weight_decay`): timm's usual
    exclusion of biases and norms would be a second change under one key. The lr is written into each
    group (torch's schedulers scale a group's initial lr; they ignore timm's `lr_scale`, kept beside it).
    Planning refuses models without layer groups (sweep/checks.py); this is the run-time guard.
    """
    from timm.optim import param_groups_layer_decay

    from archbench.models import layer_decay_refusal

    if not callable(getattr(model, "group_matcher", None)):
        raise RunFailure("layer_decay_unsupported", layer_decay_refusal(type(model).__name__))
    assert train.layer_decay is not None
    groups = param_groups_layer_decay(
        model, weight_decay=train.weight_decay, weight_decay_exclude_1d=False, layer_decay=train.layer_decay
    )
    for group in groups:
        group["lr"] = train.lr * group["lr_scale"]
    return list(groups)


def optimizer_impl(opt: torch.optim.Optimizer) -> str:
    """`fused`, `foreach` or `for-loop`: which implementation steps the parameters (for the record)."""
    if opt.defaults.get("fused"):
        return "fused"
    return "foreach" if opt.defaults.get("foreach") else "for-loop"


def lr_factor(step: int, total: int, warmup: int, train: TrainSpec, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at optimizer step `step` (pure, so the schedule is easy to test)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if train.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if train.schedule == "step":
        return float(train.gamma ** (step // (train.step_size * steps_per_epoch)))
    return 1.0


def build_scheduler(
    opt: torch.optim.Optimizer, train: TrainSpec, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    import torch

    total = train.epochs * steps_per_epoch
    # Warm-up longer than the run (e.g. --set train.epochs=1 on a long config) is capped at half of it.
    warmup = min(int(round(train.warmup_epochs * steps_per_epoch)), total // 2)
    if train.schedule == "onecycle":
        pct = min(train.warmup_epochs / train.epochs, 0.5) if train.warmup_epochs else 0.3
        # One peak per param group: with train.layer_decay each group peaks at its own lr.
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(total, 1), pct_start=pct
        )
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, train, steps_per_epoch)
    )
