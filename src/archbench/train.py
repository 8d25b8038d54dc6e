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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from . import faults
from .augment import BatchMaker, BatchSource
from .checkpoint import check_owner, load_checkpoint, load_latest, save_checkpoint
from .config import RunSpec, spec_hash
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

if TYPE_CHECKING:
    from .distributed import RankContext


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
    data_path: dict[str, Any] = field(default_factory=dict)  # sources.open_sources: path, bytes, budget


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
    split: BatchSource,
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


def _fresh_sums() -> dict[str, Any]:
    return {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


@dataclass
class TrainState:
    """Everything that changes while a run trains, and the only thing a checkpoint holds.

    `to_checkpoint` / `restore` are exact inverses (with the global RNGs), which is what makes a killed and
    resumed run bitwise equal to an uninterrupted one.
    """

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    data_gen: torch.Generator
    device: torch.device
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    perm: torch.Tensor | None = None  # this epoch's data order; None between epochs
    sums: dict[str, Any] = field(default_factory=_fresh_sums)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    owner: dict[str, str] = field(default_factory=dict)  # run_id and spec_hash, written into every checkpoint

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            **self.owner,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": _rng_state(self.device, self.data_gen),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "perm": self.perm,
            "sums": self.sums,
            "history": self.history,
            "best": self.best,
            "events": self.events,
            "resumes": self.resumes,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `to_checkpoint` dict (counts one more resume)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if not faults.skip_restore("scheduler"):
            self.sched.load_state_dict(state["scheduler"])
        if not faults.skip_restore("rng"):
            _set_rng_state(state["rng"], self.device, self.data_gen)
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.perm = state["perm"]
        self.sums = dict(state["sums"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.events = list(state.get("events", [])) + self.events
        self.resumes = int(state.get("resumes", 0)) + 1
        self.events.append(
            {
                "event": "resumed",
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "step": self.step,
            }
        )


@dataclass
class Loop:
    """What stays fixed for the whole run: the batch sources, the batch maker, loss and sizes."""

    spec: RunSpec
    train_split: BatchSource
    val_split: BatchSource
    maker: BatchMaker
    crit: nn.Module
    n_batches: int
    use_amp: bool
    last_path: Path
    best_path: Path
    ranks: RankContext | None = None  # data-parallel runs: this process's rank (distributed.py)
    ddp: nn.Module | None = None  # the model wrapped in DistributedDataParallel (forward passes only)

    @property
    def writes(self) -> bool:
        """Only rank 0 validates and writes checkpoints."""
        return self.ranks is None or self.ranks.is_main


def train_epoch(
    state: TrainState,
    loop: Loop,
    should_stop: Callable[[], bool],
    on_batch: BatchCallback | None,
) -> dict[str, Any]:
    """Train the rest of the current epoch (all of it, or what a resume left), then validate; returns the
    epoch's stats. Raises RunKilled at a step boundary once asked to stop (after saving `last`)."""
    t = loop.spec.train
    model, device = state.model, state.device
    model.train()
    if state.perm is None:
        state.perm = torch.randperm(len(loop.train_split), generator=state.data_gen)
        state.batch_in_epoch = 0
        state.sums = _fresh_sums()
    sums = state.sums
    loop.train_split.plan(state.perm, t.batch_size, state.batch_in_epoch)  # streamed sources read ahead
    t0 = time.perf_counter()
    while state.batch_in_epoch < loop.n_batches:
        if state.batch_in_epoch % t.grad_accum == 0 and _stop_agreed(should_stop, loop, device):
            sums["seconds"] += time.perf_counter() - t0
            state.events.append({"event": "stopped_by_signal", "epoch": state.epoch, "step": state.step})
            if loop.ranks is not None:  # the checkpoint holds every rank's sums (resumed by rank 0 only)
                state.sums = loop.ranks.sum_sums(sums, _SUMMED, device)
            if loop.writes:
                save_checkpoint(loop.last_path, state.to_checkpoint())
            raise RunKilled(f"stopped at epoch {state.epoch}, step {state.step}")
        faults.before_step(state.step, state.resumes)
        bs, correct, loss_v = _train_step(state, loop)
        sums["loss"] += loss_v * bs
        sums["correct"] += correct
        sums["seen"] += bs
        state.batch_in_epoch += 1
        state.step += 1
        if on_batch is not None:
            elapsed = sums["seconds"] + time.perf_counter() - t0
            on_batch(
                state.epoch,
                state.batch_in_epoch,
                loop.n_batches,
                sums["loss"] / sums["seen"],
                sums["correct"] / sums["seen"],
                sums["seen"] / max(elapsed, 1e-9),
            )
    seconds = sums["seconds"] + time.perf_counter() - t0
    if loop.ranks is not None:
        sums = state.sums = loop.ranks.sum_sums(sums, _SUMMED, device)
    val_loss, val_acc = (
        evaluate_loss_acc(model, loop.val_split, loop.maker, loop.spec.eval.batch_size, loop.use_amp, device)
        if loop.writes
        else (math.nan, math.nan)
    )
    return {
        "epoch": state.epoch + 1,
        "step": state.step,
        "train_loss": sums["loss"] / max(1, sums["seen"]),
        "train_acc": sums["correct"] / max(1, sums["seen"]),
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": float(state.opt.param_groups[0]["lr"]),
        "seconds": seconds,
        "images_per_s": sums["seen"] / max(seconds, 1e-9),
    }


_SUMMED = ("loss", "correct", "seen")  # the epoch sums added up over the ranks of a data-parallel run


def _stop_agreed(should_stop: Callable[[], bool], loop: Loop, device: torch.device) -> bool:
    """`should_stop()`; in a data-parallel run rank 0's answer, so every rank stops at the same step."""
    if loop.ranks is None:
        return should_stop()
    return loop.ranks.agree(loop.ranks.is_main and should_stop(), device)


def _train_step(state: TrainState, loop: Loop) -> tuple[int, int, float]:
    """One batch: forward, loss, backward, and the optimizer step at each accumulation boundary.

    Returns (batch size, correct predictions, loss). A non-finite loss stops the run before the optimizer
    step, so no saved weights ever hold it.
    """
    t = loop.spec.train
    assert state.perm is not None
    b = state.batch_in_epoch
    idx = state.perm[b * t.batch_size : (b + 1) * t.batch_size]
    xb, yb = loop.maker.train_batch(loop.train_split, idx, state.data_gen)
    weight = 1.0
    if loop.ranks is not None:  # this rank's rows of the global batch (augmentation drawn for all of it)
        rows = int(yb.shape[0])
        xb, yb = loop.ranks.shard(xb), loop.ranks.shard(yb)
        weight = loop.ranks.loss_weight(int(yb.shape[0]), rows)
    with autocast(state.device, loop.use_amp):
        faults.in_forward(state.step)
        out = (loop.ddp or state.model)(xb)
        loss = loop.crit(out.float(), yb) if yb.numel() else out.float().sum() * 0.0
    loss = faults.on_loss(loss, state.step)
    loss_v = float(loss.detach())
    if not math.isfinite(loss_v):
        raise RunFailure(f"non_finite_loss@{state.step}", f"loss={loss_v} at epoch {state.epoch}, batch {b}")
    (loss * weight / t.grad_accum).backward()
    if (b + 1) % t.grad_accum == 0 or b + 1 == loop.n_batches:
        if t.grad_clip is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
        state.opt.step()
        state.opt.zero_grad(set_to_none=True)
        state.sched.step()
    return int(yb.shape[0]), int((out.argmax(1) == yb).sum()), loss_v


def _end_epoch(state: TrainState, loop: Loop, stats: dict[str, Any]) -> None:
    """Book the finished epoch: history, the `best` checkpoint when it improved, then `last`."""
    t = loop.spec.train
    state.history.append(stats)
    metric = stats[t.best_metric]
    state.epoch += 1
    state.perm = None
    state.batch_in_epoch = 0
    improved = not state.best or (
        metric > state.best["value"] if t.best_metric == "val_acc" else metric < state.best["value"]
    )
    if improved:
        state.best = {"metric": t.best_metric, "value": metric, "epoch": state.epoch, "step": state.step}
        if loop.writes:
            best = {**state.owner, "model": state.model.state_dict(), "best": state.best}
            save_checkpoint(loop.best_path, best)
    if loop.writes:
        save_checkpoint(loop.last_path, state.to_checkpoint())


def train_run(
    spec: RunSpec,
    bundle: DatasetBundle,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: BatchCallback | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | None = None,
    ranks: RankContext | None = None,
) -> TrainResult:
    """Train (or resume) one run and return the model with its best weights loaded.

    `device` is the one the runner resolved for the whole run; None resolves `spec.train.device` here.
    `ranks`: this process's place in a data-parallel run (distributed.py starts the ranks and passes it).
    Reads top to bottom: set up (seeds, model, optimizer, batch sources) → resume from `last` →
    one `train_epoch` per remaining epoch, each booked by `_end_epoch` → load the evaluated weights.
    """
    from .layout import RunLayout
    from .models import create_model

    t = spec.train
    device = device if device is not None else resolve_device(t.device)
    configure_determinism(t, device, spec.seed)
    cl = channels_last_enabled(t, device)

    # Set-up, in a fixed order: every RNG draw (weight init, then the data order) is part of the result.
    image_size = spec.data.resolution or bundle.native_size[0]
    model = create_model(
        spec.model, in_chans=bundle.in_chans, num_classes=bundle.num_classes, image_size=image_size
    ).to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    params = count_params(model)
    opt = build_optimizer(model, t)
    from .sources import open_sources

    (train_split, val_split), data_path = open_sources(
        [bundle.train, bundle.val], device, spec.data.memory_budget, bundle.loading.get("prepared_bytes")
    )
    maker = BatchMaker(bundle, device, spec.data.resolution, spec.data.augment, channels_last=cl)
    n_batches = math.ceil(len(train_split) / t.batch_size)
    sched = build_scheduler(opt, t, steps_per_epoch=math.ceil(n_batches / t.grad_accum))
    crit = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    data_gen = torch.Generator().manual_seed(spec.seed)
    layout = RunLayout(run_dir)
    layout.checkpoints.mkdir(parents=True, exist_ok=True)
    loop = Loop(
        spec, train_split, val_split, maker, crit, n_batches, amp_enabled(t, device),
        layout.checkpoint("last"), layout.checkpoint("best"), ranks,
    )  # fmt: skip
    state = TrainState(model, opt, sched, data_gen, device)

    # Every checkpoint names the run it belongs to; resume refuses (sets aside) any other run's file.
    state.owner = {"run_id": run_dir.name, "spec_hash": spec_hash(spec)}
    # Data-parallel: rank 0 reads (and sets aside damaged files) first, the other ranks then read the same.
    saved, notes = (
        ranks.main_first(lambda: load_latest(loop.last_path, state.owner), device)
        if ranks is not None
        else load_latest(loop.last_path, state.owner)
    )
    state.events += [{"event": "checkpoint_set_aside", "detail": note} for note in notes]
    if saved is not None:
        state.restore(saved)
    if ranks is not None:
        loop.ddp = ranks.wrap(model, device)
        if not ranks.is_main:
            state.sums = _fresh_sums()  # a mid-epoch checkpoint holds all ranks' sums: rank 0 resumes them

    while state.epoch < t.epochs:
        stats = train_epoch(state, loop, should_stop, on_batch)
        _end_epoch(state, loop, stats)
        if on_epoch is not None:
            on_epoch(stats)
    train_split.close()
    val_split.close()

    if faults.active("kill@after_checkpoint"):
        faults.die()
    if spec.eval.checkpoint == "best" and loop.best_path.exists() and loop.writes:
        best_state = load_checkpoint(loop.best_path)
        check_owner(loop.best_path, best_state, state.owner)
        model.load_state_dict(best_state["model"])
    return TrainResult(
        model=model,
        history=state.history,
        best=state.best,
        train_seconds=float(sum(h["seconds"] for h in state.history)),
        resumes=state.resumes,
        events=state.events,
        device=device_info(device, t),
        params=params,
        data_path=data_path,
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
    "train_epoch",
    "train_run",
    "TrainState",
]
