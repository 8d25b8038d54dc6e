"""Training one run: owns the loop, the optimizer/schedule, resume from `last`, and the `best` checkpoint.

It reads a `RunSpec` and a `DatasetBundle` and writes checkpoints into `<run_dir>/checkpoints/`; it never
writes the record (the runner does) and never evaluates on the test split (evaluate.py does).
Resume is exact: model, optimizer, scheduler, every RNG, the data-order generator, the epoch's permutation
and augmentation draws, the device-side sums and the position within the epoch are saved, so a killed and
resumed run ends bitwise equal on CPU.

The step never waits for the device: the epoch's order and augmentation are drawn once at its start and
copied to the device once; loss, accuracy and the first non-finite step are summed there and read every
`train.log_every` steps, at the epoch's end and before a checkpoint (`_read_sums`), nowhere else.
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

from archbench.config import RunSpec, TrainSpec, spec_hash
from archbench.data.registry import DatasetBundle
from archbench.engine.augment import BatchMaker, BatchSource, DeviceSplit
from archbench.engine.optim import build_optimizer, build_scheduler, lr_factor, optimizer_impl
from archbench.engine.runtime import (
    amp_enabled,
    autocast,
    channels_last_enabled,
    compiled_graphs,
    configure_determinism,
    device_info,
    keep_host_memory,
    read_scalars,
    resolve_device,
    to_device,
)
from archbench.models.base import count_params
from archbench.store.checkpoint import check_owner, load_checkpoint, load_latest, save_checkpoint
from archbench.util import faults
from archbench.util.errors import RunFailure, RunKilled

if TYPE_CHECKING:
    from archbench.engine.ddp import RankContext


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
    loss, right = read_scalars(loss_sum, correct)
    return loss / n, right / n


BatchCallback = Callable[[int, int, int, float, float, float], None]


def _fresh_sums(device: torch.device) -> dict[str, Any]:
    """The epoch's running sums. `loss` (float64), `correct` (int64) and `first_bad` (the first global step
    whose loss was non-finite, -1 while none was) stay on the device, so no step waits for them; they are
    read at the log interval only (`_read_sums`)."""
    return {
        "loss": torch.zeros((), dtype=torch.float64, device=device),
        "correct": torch.zeros((), dtype=torch.int64, device=device),
        "first_bad": torch.full((), -1, dtype=torch.int64, device=device),
        "seen": 0,
        "seconds": 0.0,
        "compile_seconds": 0.0,
    }


def _sums_on(sums: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Saved sums back on the device (checkpoints from before the device-side sums held Python numbers)."""
    out = _fresh_sums(device)
    for key in ("loss", "correct", "first_bad"):
        if key in sums:
            out[key] = torch.as_tensor(sums[key], dtype=out[key].dtype).to(device)
    out["seen"], out["seconds"] = int(sums["seen"]), float(sums["seconds"])
    out["compile_seconds"] = float(sums.get("compile_seconds", 0.0))
    return out


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
    perm: torch.Tensor | None = None  # this epoch's data order (host); None between epochs
    draws: dict[str, torch.Tensor] | None = None  # this epoch's augmentation draws (host), row k: perm[k]
    sums: dict[str, Any] = field(default_factory=lambda: _fresh_sums(torch.device("cpu")))
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    owner: dict[str, str] = field(default_factory=dict)  # run_id and spec_hash, written into every checkpoint
    # The epoch's order and draws on the device (copied once per epoch or resume; never saved).
    on_device: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
    # Weights of an improved epoch not yet written to `best` (a device copy; written with the next `last`).
    best_model: dict[str, torch.Tensor] | None = None

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
            "draws": self.draws,
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
        self.draws = state.get("draws")  # absent in older checkpoints: drawn when the epoch goes on
        self.on_device = None
        self.sums = _sums_on(state["sums"], self.device)
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
    # What the step calls: the model itself, its DistributedDataParallel wrapper (`ddp`), or the
    # torch.compile wrapper of either (the same parameters; the model stays what is checkpointed and
    # validated).
    forward: Callable[[torch.Tensor], torch.Tensor]
    last_write: float = field(default_factory=time.monotonic)  # when a checkpoint was last written
    ranks: RankContext | None = None  # data-parallel runs: this process's rank (distributed.py)
    ddp: nn.Module | None = None  # the model wrapped in DistributedDataParallel (forward passes only)

    @property
    def writes(self) -> bool:
        """Only rank 0 validates and writes checkpoints."""
        return self.ranks is None or self.ranks.is_main

    def minutes_due(self) -> bool:
        """`train.checkpoint.every_minutes` elapsed since the last checkpoint (a clock read, no sync)."""
        minutes = self.spec.train.checkpoint.every_minutes
        return minutes is not None and time.monotonic() - self.last_write >= 60.0 * minutes

    def epoch_due(self, epochs_done: int) -> bool:
        """A checkpoint at this epoch's end: every N-th epoch, the last one, or when the minutes are up."""
        t = self.spec.train
        return epochs_done % t.checkpoint.every_epochs == 0 or epochs_done >= t.epochs or self.minutes_due()


def _checkpoint(state: TrainState, loop: Loop) -> None:
    """Write `best` (when an improved epoch is pending) and then `last`; the caller has read the sums, so
    nothing after a non-finite loss is ever written."""
    if not loop.writes:
        return
    if state.best_model is not None:
        save_checkpoint(loop.best_path, {**state.owner, "model": state.best_model, "best": state.best})
        state.best_model = None
    save_checkpoint(loop.last_path, state.to_checkpoint())
    loop.last_write = time.monotonic()


def _start_epoch(state: TrainState, loop: Loop) -> None:
    """Draw the epoch's data order, then its augmentation, from the run's data generator: once, on the host
    (the same stream on every device), so no step draws anything."""
    n = len(loop.train_split)
    state.perm = torch.randperm(n, generator=state.data_gen)
    state.draws = loop.maker.draw(n, state.data_gen)
    state.on_device = None
    state.batch_in_epoch = 0
    state.sums = _fresh_sums(state.device)


def _epoch_on_device(state: TrainState, loop: Loop) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The epoch's order and draws on the device, copied once (pinned, non_blocking); steps slice them."""
    assert state.perm is not None
    if state.draws is None:  # a checkpoint from before the draws were made per epoch
        state.draws = loop.maker.draw(len(state.perm), state.data_gen)
    if state.on_device is None:
        draws = {k: to_device(v, state.device) for k, v in state.draws.items()}
        state.on_device = (to_device(state.perm, state.device), draws)
    return state.on_device


def _read_sums(state: TrainState) -> tuple[float, float]:
    """The loop's one wait for the device: the epoch's mean loss and accuracy so far. Fails the run when a
    loss went non-finite, naming the first such step, so nothing computed after it is ever saved."""
    s = state.sums
    loss, correct, first_bad = read_scalars(s["loss"], s["correct"], s["first_bad"])
    if first_bad >= 0:
        raise RunFailure(
            f"non_finite_loss@{int(first_bad)}",
            f"the loss was non-finite at step {int(first_bad)} (epoch {state.epoch}); found at step "
            f"{state.step}, before any checkpoint was written",
        )
    seen = max(1, s["seen"])
    return loss / seen, correct / seen


def train_epoch(
    state: TrainState,
    loop: Loop,
    should_stop: Callable[[], bool],
    on_batch: BatchCallback | None,
) -> dict[str, Any]:
    """Train the rest of the current epoch (all of it, or what a resume left), then validate; returns the
    epoch's stats. Raises RunKilled at a step boundary once asked to stop (after saving `last`).

    The device is read every `train.log_every` global steps and at the epoch's end, nowhere else: that is
    when `on_batch` hears of progress and when a non-finite loss is found."""
    t = loop.spec.train
    model = state.model
    model.train()
    if state.perm is None:
        _start_epoch(state, loop)
    assert state.perm is not None
    perm, draws = _epoch_on_device(state, loop)
    # Device-resident data is indexed on the device; host-backed sources gather on the host.
    order = perm if isinstance(loop.train_split, DeviceSplit) else state.perm
    loop.train_split.plan(state.perm, t.batch_size, state.batch_in_epoch)  # streamed sources read ahead
    sums = state.sums
    t0 = time.perf_counter()

    def report() -> tuple[float, float]:
        if loop.ranks is not None:  # a non-finite loss on any rank fails every rank, naming the same step
            loop.ranks.share_first_bad(sums)
        loss, acc = _read_sums(state)
        if on_batch is not None:
            elapsed = sums["seconds"] + time.perf_counter() - t0
            ips = sums["seen"] / max(elapsed, 1e-9)
            on_batch(state.epoch, state.batch_in_epoch, loop.n_batches, loss, acc, ips)
        return loss, acc

    while state.batch_in_epoch < loop.n_batches:
        # Stop and time-based checkpoints only where no gradient is half accumulated (resume stays exact).
        if state.batch_in_epoch % t.grad_accum == 0 and any(due := _stop_or_due(should_stop, state, loop)):
            stop = due[0]
            if loop.ranks is not None:  # the checkpoint holds every rank's sums; each trains on with its own
                state.sums = loop.ranks.reduce_sums(sums)
            _read_sums(state)  # never checkpoint what a non-finite loss produced
            sums["seconds"] += time.perf_counter() - t0
            state.sums["seconds"] = sums["seconds"]
            if stop:
                state.events.append({"event": "stopped_by_signal", "epoch": state.epoch, "step": state.step})
            _checkpoint(state, loop)
            state.sums = sums
            if stop:
                raise RunKilled(f"stopped at epoch {state.epoch}, step {state.step}")
            t0 = time.perf_counter()  # the checkpoint's time is not training time
        faults.before_step(state.step, state.resumes)
        rows = slice(state.batch_in_epoch * t.batch_size, (state.batch_in_epoch + 1) * t.batch_size)
        if loop.ranks is not None:  # this rank's rows of the global batch, with their augmentation draws
            rows = loop.ranks.rows(rows)
        batch_draws = {k: v[..., rows] for k, v in draws.items()}
        xb, yb = loop.maker.train_batch(loop.train_split, order[rows], batch_draws)
        compiling = _step(state, loop, xb, yb)
        if compiling:  # that step compiled: its time is compile time, not training time
            sums["compile_seconds"] += compiling
            t0 += compiling
        state.batch_in_epoch += 1
        state.step += 1
        if state.step % t.log_every == 0 and state.batch_in_epoch < loop.n_batches:
            report()
    if loop.ranks is not None:  # the epoch's numbers are every rank's
        sums = state.sums = loop.ranks.reduce_sums(sums)
    loss, acc = report()  # the epoch's end: always read (and so waited for: its seconds are the device's)
    seconds = sums["seconds"] + time.perf_counter() - t0
    val_loss, val_acc = (
        evaluate_loss_acc(
            model, loop.val_split, loop.maker, loop.spec.eval.batch_size, loop.use_amp, state.device
        )
        if loop.writes
        else (math.nan, math.nan)  # rank 0 alone validates
    )
    return {
        "epoch": state.epoch + 1,
        "step": state.step,
        "train_loss": loss,
        "train_acc": acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": float(state.opt.param_groups[0]["lr"]),
        "seconds": seconds,
        "images_per_s": sums["seen"] / max(seconds, 1e-9),
        **({"compile_seconds": sums["compile_seconds"]} if loop.spec.train.compile else {}),
    }


def _step(state: TrainState, loop: Loop, xb: torch.Tensor, yb: torch.Tensor) -> float:
    """`_train_step`, and the host seconds it took if torch.compile compiled during it (else 0)."""
    if not loop.spec.train.compile:
        _train_step(state, loop, xb, yb)
        return 0.0
    graphs, started = compiled_graphs(), time.perf_counter()
    _train_step(state, loop, xb, yb)
    return time.perf_counter() - started if compiled_graphs() != graphs else 0.0


def _stop_or_due(should_stop: Callable[[], bool], state: TrainState, loop: Loop) -> tuple[bool, bool]:
    """(stop asked, time-based checkpoint due). In a data-parallel run rank 0's answers, agreed at the
    epoch's start and every `train.log_every` steps (where the device is read anyway), so every rank stops
    or checkpoints at the same step."""
    if loop.ranks is None:
        stop = should_stop()
        return stop, not stop and loop.minutes_due()
    if state.batch_in_epoch != 0 and state.step % loop.spec.train.log_every != 0:
        return False, False
    mine = (should_stop(), loop.minutes_due()) if loop.ranks.is_main else (False, False)
    stop, due = loop.ranks.agree(mine, state.device)
    return stop, due


def _train_step(state: TrainState, loop: Loop, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One batch: forward, loss, backward, and the optimizer step at each accumulation boundary.

    Nothing here reads the device: the loss and correct count are added to the device-side sums, and a
    non-finite loss is noted there (`first_bad`) for the next read to fail the run.
    """
    t = loop.spec.train
    sums, bs = state.sums, int(yb.shape[0])
    with autocast(state.device, loop.use_amp):
        faults.in_forward(state.step)
        out = loop.forward(xb)
        loss = loop.crit(out.float(), yb) if bs else out.float().sum() * 0.0  # a rank may get no rows
    loss = faults.on_loss(loss, state.step)
    detached = loss.detach()
    sums["loss"].add_(detached.double() * bs)
    sums["correct"].add_((out.detach().argmax(1) == yb).sum())
    bad = (sums["first_bad"] < 0) & ~torch.isfinite(detached)
    sums["first_bad"].masked_fill_(bad, state.step)
    sums["seen"] += bs
    b = state.batch_in_epoch
    if loop.ranks is not None:  # DDP averages the ranks: weighted, that is the global batch's mean loss
        loss = loss * loop.ranks.loss_weight(bs, min(t.batch_size, len(loop.train_split) - b * t.batch_size))
    (loss / t.grad_accum).backward()
    if (b + 1) % t.grad_accum == 0 or b + 1 == loop.n_batches:
        if t.grad_clip is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
        state.opt.step()
        state.opt.zero_grad(set_to_none=True)
        state.sched.step()


def _end_epoch(state: TrainState, loop: Loop, stats: dict[str, Any]) -> bool:
    """Book the finished epoch: history, the best weights when it improved, and the checkpoints when the
    cadence says so (`train.checkpoint`). Returns whether they were written."""
    t = loop.spec.train
    state.history.append(stats)
    metric = stats[t.best_metric]
    state.epoch += 1
    state.perm, state.draws, state.on_device = None, None, None
    state.batch_in_epoch = 0
    due = loop.epoch_due(state.epoch)
    improved = not state.best or (
        metric > state.best["value"] if t.best_metric == "val_acc" else metric < state.best["value"]
    )
    if improved:
        state.best = {"metric": t.best_metric, "value": metric, "epoch": state.epoch, "step": state.step}
        weights = state.model.state_dict()
        state.best_model = weights if due else {k: v.detach().clone() for k, v in weights.items()}
    if due:
        _checkpoint(state, loop)
    return due


def _device_block(
    device: torch.device, t: TrainSpec, opt: torch.optim.Optimizer, history: list[dict[str, Any]]
) -> dict[str, Any]:
    """The record's `device` block: runtime's resolved policy, the optimizer's implementation and, when
    compiling, the seconds spent compiling (kept out of every epoch's training `seconds`)."""
    block = {**device_info(device, t), "optimizer": optimizer_impl(opt)}
    if t.compile:
        block["compile_seconds"] = float(sum(h.get("compile_seconds", 0.0) for h in history))
    return block


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
    from archbench.models import create_model
    from archbench.store.layout import RunLayout

    t = spec.train
    device = device if device is not None else resolve_device(t.device)
    configure_determinism(t, device, spec.seed)
    keep_host_memory()  # process-wide, once: freed batch buffers are reused, not page-faulted back
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
    from archbench.engine.sources import open_sources

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
        layout.checkpoint("last"), layout.checkpoint("best"),
        torch.compile(model) if t.compile else model, ranks=ranks,
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
        loop.forward = torch.compile(loop.ddp) if t.compile else loop.ddp
        if not ranks.is_main:
            state.sums = _fresh_sums(
                device
            )  # a mid-epoch checkpoint holds all ranks' sums: rank 0 resumes them

    while state.epoch < t.epochs:
        stats = train_epoch(state, loop, should_stop, on_batch)
        written = _end_epoch(state, loop, stats)
        if on_epoch is not None:
            try:
                on_epoch(stats)
            except BaseException:  # e.g. a pruned trial: the run ends here, so it ends checkpointed
                if not written:
                    _checkpoint(state, loop)
                raise
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
        device=_device_block(device, t, opt, state.history),
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
