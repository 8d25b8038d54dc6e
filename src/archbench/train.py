"""Training one run: owns the loop, the optimizer/schedule, resume from `last`, and the `best` checkpoint.

It reads a `RunSpec` and a `DatasetBundle` and writes checkpoints into `<run_dir>/checkpoints/`; it never
writes the record (the runner does) and never evaluates on the test split (evaluate.py does).
Resume is exact: model, optimizer, scheduler, every RNG, the data-order generator, the epoch's permutation
and the position within it are saved, so a killed and resumed run ends bitwise equal on CPU.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from . import faults
from .augment import BatchMaker, DeviceSplit
from .checkpoint import load_checkpoint, load_latest, save_checkpoint
from .config import RunSpec
from .data.registry import DatasetBundle
from .errors import RunFailure
from .optim import build_optimizer, build_scheduler, lr_factor
from .runtime import (
    amp_enabled,
    autocast,
    channels_last_enabled,
    configure_determinism,
    count_params,
    device_info,
    resolve_device,
)


class RunKilled(Exception):
    """Raised at a step boundary after SIGTERM/SIGINT, once the `last` checkpoint is safely written."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, Any]]
    best: dict[str, Any]
    train_seconds: float
    resumes: int
    events: list[dict[str, Any]] = field(default_factory=list)
    device: dict[str, Any] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)


def _rng_state(device: torch.device, data_gen: torch.Generator) -> dict[str, Any]:
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "data": data_gen.get_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device, data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_gen.set_state(state["data"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate_loss_acc(
    model: nn.Module,
    split: DeviceSplit,
    maker: BatchMaker,
    batch_size: int,
    use_amp: bool,
    device: torch.device,
) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    crit = nn.CrossEntropyLoss(reduction="sum")
    for start in range(0, len(split), batch_size):
        xb, yb = maker.eval_batch(split, start, start + batch_size)
        with autocast(device, use_amp):
            out = model(xb)
        loss_sum += crit(out.float(), yb).double()
        correct += (out.argmax(1) == yb).sum()
    n = max(1, len(split))
    return float(loss_sum) / n, int(correct) / n


BatchCallback = Callable[[int, int, int, float, float, float], None]


def train_run(
    spec: RunSpec,
    bundle: DatasetBundle,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: BatchCallback | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train (or resume) one run and return the model with its best weights loaded.

    `device` is the one the runner resolved for the whole run; None resolves `spec.train.device` here.
    """
    from .models import create_model

    t = spec.train
    device = device if device is not None else resolve_device(t.device)
    configure_determinism(t, device, spec.seed)
    use_amp = amp_enabled(t, device)
    cl = channels_last_enabled(t, device)

    image_size = spec.data.resolution or bundle.native_size[0]
    model = create_model(
        spec.model, in_chans=bundle.in_chans, num_classes=bundle.num_classes, image_size=image_size
    ).to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    params = count_params(model)
    opt = build_optimizer(model, t)
    train_split = DeviceSplit(bundle.train, device)
    val_split = DeviceSplit(bundle.val, device)
    maker = BatchMaker(bundle, device, spec.data.resolution, spec.data.augment, channels_last=cl)
    n = len(train_split)
    n_batches = math.ceil(n / t.batch_size)
    steps_per_epoch = math.ceil(n_batches / t.grad_accum)
    sched = build_scheduler(opt, t, steps_per_epoch)
    crit = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    data_gen = torch.Generator().manual_seed(spec.seed)

    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"

    epoch, batch_in_epoch, step = 0, 0, 0
    perm: torch.Tensor | None = None
    sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    resumes = 0
    state, notes = load_latest(last_path)
    for note in notes:
        events.append({"event": "checkpoint_set_aside", "detail": note})
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if not faults.skip_restore("scheduler"):
            sched.load_state_dict(state["scheduler"])
        if not faults.skip_restore("rng"):
            _set_rng_state(state["rng"], device, data_gen)
        epoch, batch_in_epoch, step = state["epoch"], state["batch_in_epoch"], state["step"]
        perm = state["perm"]
        sums = dict(state["sums"])
        history = list(state["history"])
        best = dict(state["best"])
        events = list(state.get("events", [])) + events
        resumes = int(state.get("resumes", 0)) + 1
        events.append({"event": "resumed", "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step})

    def full_state() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(device, data_gen),
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "step": step,
            "perm": perm,
            "sums": sums,
            "history": history,
            "best": best,
            "events": events,
            "resumes": resumes,
        }

    better = (lambda a, b: a > b) if t.best_metric == "val_acc" else (lambda a, b: a < b)
    while epoch < t.epochs:
        model.train()
        if perm is None:
            perm = torch.randperm(n, generator=data_gen)
            batch_in_epoch = 0
            sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        t0 = time.perf_counter()
        while batch_in_epoch < n_batches:
            if batch_in_epoch % t.grad_accum == 0 and should_stop():
                sums["seconds"] += time.perf_counter() - t0
                events.append({"event": "stopped_by_signal", "epoch": epoch, "step": step})
                save_checkpoint(last_path, full_state())
                raise RunKilled(f"stopped at epoch {epoch}, step {step}")
            if faults.active("kill@step", step) or (resumes == 0 and faults.active("killonce@step", step)):
                faults.die()
            if faults.active("hang@step", step):
                faults.hang()
            if faults.active("term@step", step):
                import os
                import signal

                os.kill(os.getpid(), signal.SIGTERM)
            idx = perm[batch_in_epoch * t.batch_size : (batch_in_epoch + 1) * t.batch_size]
            xb, yb = maker.train_batch(train_split, idx, data_gen)
            with autocast(device, use_amp):
                if faults.active("oom@step", step):
                    raise torch.cuda.OutOfMemoryError("injected out-of-memory (ARCHBENCH_FAULT)")
                out = model(xb)
                loss = crit(out.float(), yb)
            if faults.active("nan@step", step):
                loss = loss * float("nan")
            loss_v = float(loss.detach())
            if not math.isfinite(loss_v):
                raise RunFailure(
                    f"non_finite_loss@{step}", f"loss={loss_v} at epoch {epoch}, batch {batch_in_epoch}"
                )
            (loss / t.grad_accum).backward()
            last_in_epoch = batch_in_epoch + 1 == n_batches
            if (batch_in_epoch + 1) % t.grad_accum == 0 or last_in_epoch:
                if t.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
            bs = int(yb.shape[0])
            sums["loss"] += loss_v * bs
            sums["correct"] += int((out.argmax(1) == yb).sum())
            sums["seen"] += bs
            batch_in_epoch += 1
            step += 1
            if on_batch is not None:
                elapsed = sums["seconds"] + time.perf_counter() - t0
                on_batch(
                    epoch,
                    batch_in_epoch,
                    n_batches,
                    sums["loss"] / sums["seen"],
                    sums["correct"] / sums["seen"],
                    sums["seen"] / max(elapsed, 1e-9),
                )
        seconds = sums["seconds"] + time.perf_counter() - t0
        val_loss, val_acc = evaluate_loss_acc(model, val_split, maker, spec.eval.batch_size, use_amp, device)
        stats = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": sums["loss"] / max(1, sums["seen"]),
            "train_acc": sums["correct"] / max(1, sums["seen"]),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": seconds,
            "images_per_s": sums["seen"] / max(seconds, 1e-9),
        }
        history.append(stats)
        metric = stats[t.best_metric]
        epoch += 1
        perm = None
        batch_in_epoch = 0
        if not best or better(metric, best["value"]):
            best = {"metric": t.best_metric, "value": metric, "epoch": epoch, "step": step}
            save_checkpoint(best_path, {"model": model.state_dict(), "best": best})
        save_checkpoint(last_path, full_state())
        if on_epoch is not None:
            on_epoch(stats)
    if faults.active("kill@after_checkpoint"):
        faults.die()
    train_seconds = float(sum(h["seconds"] for h in history))
    if spec.eval.checkpoint == "best" and best_path.exists():
        model.load_state_dict(load_checkpoint(best_path)["model"])
    return TrainResult(
        model=model,
        history=history,
        best=best,
        train_seconds=train_seconds,
        resumes=resumes,
        events=events,
        device=device_info(device, t),
        params=params,
    )


# Re-exported for callers of the old names; new code imports them from runtime.py / optim.py.
__all__ = [
    "BatchCallback",
    "RunKilled",
    "TrainResult",
    "amp_enabled",
    "build_optimizer",
    "build_scheduler",
    "channels_last_enabled",
    "configure_determinism",
    "count_params",
    "device_info",
    "evaluate_loss_acc",
    "lr_factor",
    "resolve_device",
    "train_run",
]
