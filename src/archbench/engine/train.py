"""Training one run: owns building what a run trains (model, optimizer, schedule, batch sources), resume
from `last`, the epochs in order and loading the evaluated weights; the epoch itself is epoch.py's.

It reads a `RunSpec` and a `DatasetBundle` and writes checkpoints into `<run_dir>/checkpoints/`; it never
writes the record (the runner does) and never evaluates on the test split (evaluate.py does).
Resume is exact: model, optimizer, scheduler, every RNG, the data-order generator, the epoch's permutation
and augmentation draws, the device-side sums and the position within the epoch are saved (state.py), so a
killed and resumed run ends bitwise equal on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from archbench.config import RunSpec, TrainSpec, spec_hash
from archbench.data.registry import DatasetBundle
from archbench.engine.augment import BatchMaker
from archbench.engine.best import WeightsEma, tracked
from archbench.engine.epoch import BatchCallback, TrainSetup, end_epoch, train_epoch, write_checkpoints
from archbench.engine.optim import build_optimizer, build_scheduler, optimizer_impl
from archbench.engine.runtime import (
    amp_enabled,
    channels_last_enabled,
    configure_determinism,
    device_info,
    keep_host_memory,
    resolve_device,
)
from archbench.engine.state import EpochSums, TrainState
from archbench.models.base import count_params
from archbench.store.checkpoint import check_owner, load_checkpoint, load_latest
from archbench.store.layout import RunLayout
from archbench.util import faults

if TYPE_CHECKING:
    from archbench.engine.collectives import RankContext

# on_resume(epoch, step): the epoch the run continues in (1-based, as progress lines count) and the steps done
ResumeCallback = Callable[[int, int], None]


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


def _device_block(
    device: torch.device, t: TrainSpec, opt: torch.optim.Optimizer, history: list[dict[str, Any]]
) -> dict[str, Any]:
    """The record's `device` block: runtime's resolved policy, the optimizer's implementation and, when
    compiling, the seconds spent compiling (kept out of every epoch's training `seconds`)."""
    block = {**device_info(device, t), "optimizer": optimizer_impl(opt)}
    if t.compile:
        block["compile_seconds"] = float(sum(h.get("compile_seconds", 0.0) for h in history))
    return block


@dataclass
class _Built:
    """What `_build` made: the state that trains and the fixed set-up, with the record's numbers on them."""

    state: TrainState
    setup: TrainSetup
    params: dict[str, int]
    data_path: dict[str, Any]


def _build(
    spec: RunSpec, bundle: DatasetBundle, run_dir: Path, device: torch.device, ranks: RankContext | None
) -> _Built:
    """Model, optimizer, batch sources, schedule and loss, in a fixed order: every RNG draw (weight init,
    then the data order) is part of the result."""
    from archbench.engine.sources import open_sources
    from archbench.models import create_model

    t = spec.train
    cl = channels_last_enabled(t, device)
    image_size = spec.data.resolution or bundle.native_size[0]
    model = create_model(
        spec.model, in_chans=bundle.in_chans, num_classes=bundle.num_classes, image_size=image_size,
        band_names=bundle.info.get("band_names"),
    ).to(device)  # fmt: skip
    if cl:
        model = model.to(memory_format=torch.channels_last)
    params = count_params(model)
    opt = build_optimizer(model, t)
    (train_split, val_split), data_path = open_sources(
        [bundle.train, bundle.val], device, spec.data.memory_budget, bundle.loading.get("prepared_bytes")
    )
    maker = BatchMaker(
        bundle, device, spec.data.resolution, spec.data.augment, channels_last=cl,
        label_smoothing=t.label_smoothing,
    )  # fmt: skip
    n_batches = math.ceil(len(train_split) / t.batch_size)
    sched = build_scheduler(opt, t, steps_per_epoch=math.ceil(n_batches / t.grad_accum))
    # Mixed batches carry soft targets with the label smoothing already folded in (timm's Mixup).
    crit = nn.CrossEntropyLoss(label_smoothing=0.0 if spec.data.augment.mixes else t.label_smoothing)
    data_gen = torch.Generator().manual_seed(spec.seed)
    layout = RunLayout(run_dir)
    layout.checkpoints.mkdir(parents=True, exist_ok=True)
    setup = TrainSetup(
        spec, train_split, val_split, maker, crit, n_batches, amp_enabled(t, device),
        layout.checkpoint("last"), layout.checkpoint("best"),
        torch.compile(model) if t.compile else model, ranks=ranks,
    )  # fmt: skip
    state = TrainState(model, opt, sched, data_gen, device)
    if t.ema is not None:
        state.ema = WeightsEma(model, t.ema.decay)
    # Every checkpoint names the run it belongs to; resume refuses (sets aside) any other run's file.
    state.owner = {"run_id": run_dir.name, "spec_hash": spec_hash(spec)}
    return _Built(state, setup, params, data_path)


def _resume(built: _Built, on_resume: ResumeCallback | None) -> None:
    """Continue from `last` when there is one (and tell `on_resume`, on rank 0); then, data-parallel, wrap
    the model in DDP. Rank 0 reads (and sets aside damaged files) first, the other ranks then read it."""
    state, setup, ranks = built.state, built.setup, built.setup.ranks
    device = state.device
    saved, notes = (
        ranks.main_first(lambda: load_latest(setup.last_path, state.owner), device)
        if ranks is not None
        else load_latest(setup.last_path, state.owner)
    )
    state.events += [{"event": "checkpoint_set_aside", "detail": note} for note in notes]
    if saved is not None:
        state.restore(saved)
        if on_resume is not None and setup.writes:
            on_resume(state.epoch + 1, state.step)
    if ranks is not None:
        setup.ddp = ranks.wrap(state.model, device)
        setup.forward = torch.compile(setup.ddp) if setup.spec.train.compile else setup.ddp
        if not ranks.is_main:  # a mid-epoch checkpoint holds all ranks' sums: rank 0 resumes them
            state.sums = EpochSums.fresh(device)


def _train_epochs(
    state: TrainState,
    setup: TrainSetup,
    should_stop: Callable[[], bool],
    on_batch: BatchCallback | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Every remaining epoch, each booked by `end_epoch`, then `on_epoch` told."""
    while state.epoch < setup.spec.train.epochs and not state.stopped:  # or early stopping ended it
        stats = train_epoch(state, setup, should_stop, on_batch)
        written = end_epoch(state, setup, stats)
        if on_epoch is not None:
            try:
                on_epoch(stats)
            except BaseException:  # e.g. a pruned trial: the run ends here, so it ends checkpointed
                if not written:
                    write_checkpoints(state, setup)
                raise
    setup.train_split.close()
    setup.val_split.close()


def _load_evaluated(state: TrainState, setup: TrainSetup) -> None:
    """The weights evaluation uses: `best` when `eval.checkpoint` says so (rank 0), else the last ones (raw
    or EMA, as `train.ema.use` says)."""
    if setup.spec.eval.checkpoint == "best" and setup.best_path.exists() and setup.writes:
        best_state = load_checkpoint(setup.best_path)
        check_owner(setup.best_path, best_state, state.owner)
        state.model.load_state_dict(best_state["model"])
    elif setup.spec.eval.checkpoint == "last" and state.ema is not None and setup.writes and state.history:
        if tracked(state.history[-1], setup.spec.train)[1] == "ema":
            state.model.load_state_dict(state.ema.state_dict())


def train_run(
    spec: RunSpec,
    bundle: DatasetBundle,
    run_dir: Path,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: BatchCallback | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_resume: ResumeCallback | None = None,
    device: torch.device | None = None,
    ranks: RankContext | None = None,
) -> TrainResult:
    """Train (or resume) one run and return the model with its best weights loaded.

    `device` is the one the runner resolved for the whole run; None resolves `spec.train.device` here.
    `ranks`: this process's place in a data-parallel run (ddp.py starts the ranks and passes it).
    `on_resume(epoch, step)` hears once that the run continues from `last` (rank 0 only).
    Reads top to bottom: set up (seeds, model, optimizer, batch sources) → resume from `last` →
    one `train_epoch` per remaining epoch, each booked by `end_epoch` → load the evaluated weights.
    """
    t = spec.train
    device = device if device is not None else resolve_device(t.device)
    configure_determinism(t, device, spec.seed)
    keep_host_memory()  # process-wide, once: freed batch buffers are reused, not page-faulted back
    built = _build(spec, bundle, run_dir, device, ranks)
    _resume(built, on_resume)
    state, setup = built.state, built.setup
    _train_epochs(state, setup, should_stop, on_batch, on_epoch)
    if faults.active("kill@after_checkpoint"):
        faults.die()
    _load_evaluated(state, setup)
    return TrainResult(
        model=state.model,
        history=state.history,
        best=state.best,
        train_seconds=float(sum(h["seconds"] for h in state.history)),
        resumes=state.resumes,
        events=state.events,
        device=_device_block(device, t, state.opt, state.history),
        params=built.params,
        data_path=built.data_path,
    )
