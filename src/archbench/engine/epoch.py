"""One training epoch: owns the step (forward, loss, backward, optimizer), the epoch's data order and
augmentation draws, validation, and when `last` and `best` are written; never builds the model or the data
(train.py does) and never writes the record.

The step never waits for the device: the epoch's order and augmentation are drawn once at its start and
copied to the device once; loss, accuracy and the first non-finite step are summed there (`EpochSums`) and
read every `train.log_every` steps, at the epoch's end and before a checkpoint (`read_sums`), nowhere else.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from archbench.config import RunSpec
from archbench.engine.augment import BatchMaker, BatchSource, DeviceSplit
from archbench.engine.best import better, stop_reason, tracked
from archbench.engine.runtime import autocast, compiled_graphs, read_scalars, to_device
from archbench.engine.state import EpochSums, TrainState
from archbench.store.checkpoint import save_checkpoint
from archbench.util import faults
from archbench.util.errors import RunFailure, RunKilled

if TYPE_CHECKING:
    from archbench.engine.collectives import RankContext

# on_batch(epoch, batches done in it, batches in it, mean loss, accuracy, images/s)
BatchCallback = Callable[[int, int, int, float, float, float], None]


@dataclass
class TrainSetup:
    """What train_run set up and stays fixed for the whole run: the batch sources, the batch maker, the
    loss, sizes, checkpoint paths and what the step calls; plus when a checkpoint was last written."""

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
    ranks: RankContext | None = None  # data-parallel runs: this process's rank (collectives.py)
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


def write_checkpoints(state: TrainState, setup: TrainSetup) -> None:
    """Write `best` (when an improved epoch is pending) and then `last`; the caller has read the sums, so
    nothing after a non-finite loss is ever written."""
    if not setup.writes:
        return
    if state.best_model is not None:
        save_checkpoint(setup.best_path, {**state.owner, "model": state.best_model, "best": state.best})
        state.best_model = None
    save_checkpoint(setup.last_path, state.to_checkpoint())
    setup.last_write = time.monotonic()


def _start_epoch(state: TrainState, setup: TrainSetup) -> None:
    """Draw the epoch's data order, then its augmentation, from the run's data generator: once, on the host
    (the same stream on every device), so no step draws anything."""
    n = len(setup.train_split)
    state.perm = torch.randperm(n, generator=state.data_gen)
    state.draws = setup.maker.draw(n, state.data_gen, setup.spec.train.batch_size)
    state.on_device = None
    state.batch_in_epoch = 0
    state.sums = EpochSums.fresh(state.device)


def _epoch_on_device(state: TrainState, setup: TrainSetup) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The epoch's order and draws on the device, copied once (pinned, non_blocking); steps slice them."""
    assert state.perm is not None
    if state.draws is None:  # a checkpoint from before the draws were made per epoch
        state.draws = setup.maker.draw(len(state.perm), state.data_gen, setup.spec.train.batch_size)
    if state.on_device is None:
        draws = {k: to_device(v, state.device) for k, v in state.draws.items()}
        state.on_device = (to_device(state.perm, state.device), draws)
    return state.on_device


def read_sums(state: TrainState) -> tuple[float, float]:
    """The loop's one wait for the device: the epoch's mean loss and accuracy so far. Fails the run when a
    loss went non-finite, naming the first such step, so nothing computed after it is ever saved."""
    s = state.sums
    loss, correct, first_bad = read_scalars(s.loss, s.correct, s.first_bad)
    if first_bad >= 0:
        raise RunFailure(
            f"non_finite_loss@{int(first_bad)}",
            f"the loss was non-finite at step {int(first_bad)} (epoch {state.epoch}); found at step "
            f"{state.step}, before any checkpoint was written",
        )
    seen = max(1, s.seen)
    return loss / seen, correct / seen


def train_epoch(
    state: TrainState,
    setup: TrainSetup,
    should_stop: Callable[[], bool],
    on_batch: BatchCallback | None,
) -> dict[str, Any]:
    """Train the rest of the current epoch (all of it, or what a resume left), then validate; returns the
    epoch's stats. Raises RunKilled at a step boundary once asked to stop (after saving `last`).

    The device is read every `train.log_every` global steps and at the epoch's end, nowhere else: that is
    when `on_batch` hears of progress and when a non-finite loss is found."""
    t = setup.spec.train
    state.model.train()
    if state.perm is None:
        _start_epoch(state, setup)
    assert state.perm is not None
    perm, draws = _epoch_on_device(state, setup)
    # Device-resident data is indexed on the device; host-backed sources gather on the host.
    order = perm if isinstance(setup.train_split, DeviceSplit) else state.perm
    setup.train_split.plan(state.perm, t.batch_size, state.batch_in_epoch)  # streamed sources read ahead
    sums = state.sums  # this rank's own sums (`state.sums` holds every rank's while a checkpoint is written)
    t0 = time.perf_counter()
    while state.batch_in_epoch < setup.n_batches:
        # Stop and time-based checkpoints only where no gradient is half accumulated (resume stays exact).
        if state.batch_in_epoch % t.grad_accum == 0 and any(due := _stop_or_due(should_stop, state, setup)):
            _pause(state, setup, sums, t0, stop=due[0])
            t0 = time.perf_counter()  # the checkpoint's time is not training time
        faults.before_step(state.step, state.resumes)
        xb, yb = _batch(state, setup, order, draws)
        compiling = _step(state, setup, xb, yb)
        if compiling:  # that step compiled: its time is compile time, not training time
            sums.compile_seconds += compiling
            t0 += compiling
        state.batch_in_epoch += 1
        state.step += 1
        if state.step % t.log_every == 0 and state.batch_in_epoch < setup.n_batches:
            _report(state, setup, on_batch, t0)
    if setup.ranks is not None:  # the epoch's numbers are every rank's
        state.sums = setup.ranks.reduce_sums(sums)
    loss, acc = _report(state, setup, on_batch, t0)  # the epoch's end: always read (and so waited for)
    return _epoch_stats(state, setup, loss, acc, state.sums.seconds + time.perf_counter() - t0)


def _report(
    state: TrainState, setup: TrainSetup, on_batch: BatchCallback | None, t0: float
) -> tuple[float, float]:
    """Read the sums (the epoch's mean loss and accuracy so far) and tell `on_batch`."""
    sums = state.sums
    if setup.ranks is not None:  # a non-finite loss on any rank fails every rank, naming the same step
        setup.ranks.share_first_bad(sums)
    loss, acc = read_sums(state)
    if on_batch is not None:
        elapsed = sums.seconds + time.perf_counter() - t0
        ips = sums.seen / max(elapsed, 1e-9)
        on_batch(state.epoch, state.batch_in_epoch, setup.n_batches, loss, acc, ips)
    return loss, acc


def _pause(state: TrainState, setup: TrainSetup, sums: EpochSums, t0: float, *, stop: bool) -> None:
    """Write `last` at this step boundary, then raise RunKilled when asked to stop. The checkpoint holds
    every rank's sums; each rank trains on with its own (`sums`)."""
    if setup.ranks is not None:
        state.sums = setup.ranks.reduce_sums(sums)
    read_sums(state)  # never checkpoint what a non-finite loss produced
    sums.seconds += time.perf_counter() - t0
    state.sums.seconds = sums.seconds
    if stop:
        state.events.append({"event": "stopped_by_signal", "epoch": state.epoch, "step": state.step})
    write_checkpoints(state, setup)
    state.sums = sums
    if stop:
        raise RunKilled(f"stopped at epoch {state.epoch}, step {state.step}")


def _batch(
    state: TrainState, setup: TrainSetup, order: torch.Tensor, draws: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The current step's batch: its rows of the epoch's order (this rank's share), with their draws."""
    t = setup.spec.train
    rows = slice(state.batch_in_epoch * t.batch_size, (state.batch_in_epoch + 1) * t.batch_size)
    if setup.ranks is not None:  # this rank's rows of the global batch, with their augmentation draws
        rows = setup.ranks.rows(rows)
    batch_draws = {k: v[..., rows] for k, v in draws.items()}
    return setup.maker.train_batch(setup.train_split, order[rows], batch_draws)


def _epoch_stats(
    state: TrainState, setup: TrainSetup, loss: float, acc: float, seconds: float
) -> dict[str, Any]:
    """The finished epoch's history row: training numbers, then validation (rank 0 alone validates)."""
    spec = setup.spec

    def validate(model: nn.Module) -> tuple[float, float]:
        if not setup.writes:
            return math.nan, math.nan
        return evaluate_loss_acc(
            model, setup.val_split, setup.maker, spec.eval.batch_size, setup.use_amp, state.device
        )

    val_loss, val_acc = validate(state.model)
    ema: dict[str, float] = {}
    if state.ema is not None:  # the averaged weights, validated beside the raw ones
        ema["ema_val_loss"], ema["ema_val_acc"] = validate(state.ema.model)
    return {
        "epoch": state.epoch + 1,
        "step": state.step,
        "train_loss": loss,
        "train_acc": acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": float(state.opt.param_groups[0]["lr"]),
        "seconds": seconds,
        "images_per_s": state.sums.seen / max(seconds, 1e-9),
        **({"compile_seconds": state.sums.compile_seconds} if spec.train.compile else {}),
        **ema,
    }


def _step(state: TrainState, setup: TrainSetup, xb: torch.Tensor, yb: torch.Tensor) -> float:
    """`_train_step`, and the host seconds it took if torch.compile compiled during it (else 0)."""
    if not setup.spec.train.compile:
        _train_step(state, setup, xb, yb)
        return 0.0
    graphs, started = compiled_graphs(), time.perf_counter()
    _train_step(state, setup, xb, yb)
    return time.perf_counter() - started if compiled_graphs() != graphs else 0.0


def _stop_or_due(should_stop: Callable[[], bool], state: TrainState, setup: TrainSetup) -> tuple[bool, bool]:
    """(stop asked, time-based checkpoint due). In a data-parallel run rank 0's answers, agreed at the
    epoch's start and every `train.log_every` steps (where the device is read anyway), so every rank stops
    or checkpoints at the same step."""
    if setup.ranks is None:
        stop = should_stop()
        return stop, not stop and setup.minutes_due()
    if state.batch_in_epoch != 0 and state.step % setup.spec.train.log_every != 0:
        return False, False
    mine = (should_stop(), setup.minutes_due()) if setup.ranks.is_main else (False, False)
    stop, due = setup.ranks.agree(mine, state.device)
    return stop, due


def _train_step(state: TrainState, setup: TrainSetup, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One batch: forward, loss, backward, and the optimizer step at each accumulation boundary.

    Nothing here reads the device: the loss and correct count are added to the device-side sums, and a
    non-finite loss is noted there (`first_bad`) for the next read to fail the run.
    """
    t = setup.spec.train
    sums, bs = state.sums, int(yb.shape[0])
    with autocast(state.device, setup.use_amp):
        faults.in_forward(state.step)
        out = setup.forward(xb)
        loss = setup.crit(out.float(), yb) if bs else out.float().sum() * 0.0  # a rank may get no rows
    loss = faults.on_loss(loss, state.step)
    detached = loss.detach()
    sums.loss.add_(detached.double() * bs)
    hard = yb.argmax(1) if yb.is_floating_point() else yb  # mixed (soft) targets: their larger share
    sums.correct.add_((out.detach().argmax(1) == hard).sum())
    bad = (sums.first_bad < 0) & ~torch.isfinite(detached)
    sums.first_bad.masked_fill_(bad, state.step)
    sums.seen += bs
    b = state.batch_in_epoch
    if setup.ranks is not None:  # DDP averages the ranks: weighted, that is the global batch's mean loss
        loss = loss * setup.ranks.loss_weight(
            bs, min(t.batch_size, len(setup.train_split) - b * t.batch_size)
        )
    (loss / t.grad_accum).backward()
    if (b + 1) % t.grad_accum == 0 or b + 1 == setup.n_batches:
        if t.grad_clip is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
        state.opt.step()
        state.opt.zero_grad(set_to_none=True)
        state.sched.step()
        if state.ema is not None:
            state.ema.update()


def end_epoch(state: TrainState, setup: TrainSetup, stats: dict[str, Any]) -> bool:
    """Book the finished epoch: history, the best weights when it improved, and the checkpoints when the
    cadence says so (`train.checkpoint`). Returns whether they were written."""
    t = setup.spec.train
    state.history.append(stats)
    metric, which = tracked(stats, t)
    state.epoch += 1
    state.perm, state.draws, state.on_device = None, None, None
    state.batch_in_epoch = 0
    if t.early_stopping is not None:
        _count_stale(state, setup, metric)
    due = setup.epoch_due(state.epoch) or state.stopped
    if not state.best or better(metric, state.best["value"], t.best_metric):
        state.best = {"metric": t.best_metric, "value": metric, "epoch": state.epoch, "step": state.step}
        if t.ema is not None:
            state.best["weights"] = which
        model = state.ema.model if which == "ema" and state.ema is not None else state.model
        weights = model.state_dict()
        state.best_model = weights if due else {k: v.detach().clone() for k, v in weights.items()}
    if due:
        write_checkpoints(state, setup)
    return due


def _count_stale(state: TrainState, setup: TrainSetup, metric: float) -> None:
    """Early stopping's count of epochs without an improvement of more than `min_delta` on its reference
    (Keras' and Lightning's rule), and the stop itself, recorded as an event with its reason. In a
    data-parallel run rank 0 (which alone validates) decides for every rank."""
    t = setup.spec.train
    assert t.early_stopping is not None
    early = state.early
    if not early or better(metric, early["value"], t.best_metric, t.early_stopping.min_delta):
        early.update(value=metric, epoch=state.epoch, stale=0)
    else:
        early["stale"] += 1
    reason = stop_reason(t, early) if state.epoch < t.epochs else None
    if setup.ranks is not None:
        (stop,) = setup.ranks.agree((reason is not None,), state.device)
        reason = reason or ("rank 0 stopped early" if stop else None)
    if reason is not None:
        early["stopped"] = {"epoch": state.epoch, "reason": reason}
        state.events.append({"event": "early_stopped", "epoch": state.epoch, "reason": reason})
