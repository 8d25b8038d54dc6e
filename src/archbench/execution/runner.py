"""Executes one planned run: owns the run lifecycle and writes the run's record.

Lifecycle of a run: claimed (flock) → running (record written) → completed | failed(reason) | killed.
A run counts as done only when its record validates with status completed and its own spec hash.
One failing run never stops the sweep (disk full, out of memory, a planted symlink: that run fails with
its reason and the next is tried); SIGTERM/SIGINT checkpoint the current run and stop the sweep.
A completed run is skipped only when it verifies (reconcile.py); otherwise its record is set aside and the
run is redone from its checkpoint (derived files damaged) or from scratch (checkpoint damaged).
Exit codes (SweepSummary): 0 all done, 1 some failed, 3 some left busy (claimed by another live process),
130 stopped.

The steps of a claimed run: reconcile the earlier record → train and evaluate → finalise (hashes, the
completed record, stages); every way an attempt ends without completing goes through `_end_unfinished`.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.config import SweepConfig
from archbench.execution.datasets import LoadedDatasets
from archbench.execution.failure import failure_reason, how_it_ended
from archbench.execution.history import LiveHistory, write_history_csv
from archbench.execution.reconcile import EarlierRecord, reconcile_earlier_record
from archbench.execution.types import Reporter, RunOutcome, SilentReporter
from archbench.execution.warnings_log import RunWarnings
from archbench.stages import enabled_stages, run_stages
from archbench.store.layout import RunLayout, SweepLayout
from archbench.store.lock import RunClaim
from archbench.store.record import (
    DistributedBlock,
    EpochStats,
    Metrics,
    RunRecord,
    Status,
    code_version,
    host_info,
    library_versions,
    now_iso,
    read_record,
    write_record,
)
from archbench.sweep.expand import PlannedRun
from archbench.util import faults
from archbench.util.paths import atomic_write_text, safe_join

if TYPE_CHECKING:
    from archbench.tracking import RunTracker


def execute_run(
    cfg: SweepConfig,
    planned: PlannedRun,
    root: Path,
    *,
    reporter: Reporter | None = None,
    index: int = 0,
    total: int = 1,
    should_stop: Callable[[], bool] = lambda: False,
    datasets: LoadedDatasets | None = None,
    host_extra: dict[str, Any] | None = None,
) -> tuple[RunOutcome, RunRecord | None]:
    """Run ONE planned run end to end in whatever process calls it: claim → train → evaluate → stages →
    record. Every executor (local loop, Ray task) calls exactly this, so their rules cannot drift apart."""
    runs = SweepLayout(root).runs
    try:
        run_dir = safe_join(runs, planned.run_id)
        run_dir.mkdir(exist_ok=True)
        run_dir = safe_join(runs, planned.run_id)  # re-check: it may be a planted symlink
    except (ValueError, OSError) as exc:
        return RunOutcome(planned.run_id, "failed", f"unsafe_path: {exc}"), None
    claim = RunClaim(run_dir)
    try:
        acquired = claim.try_acquire()
    except OSError as exc:  # e.g. disk full creating the lock file
        reason, detail = failure_reason(exc)
        return RunOutcome(planned.run_id, "failed", f"{reason}: {detail}"), None
    if not acquired:
        owner = claim.owner()
        busy = f"claimed by pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        return RunOutcome(planned.run_id, "busy", busy), None
    try:
        with RunWarnings(run_dir) as caught:
            run = _ClaimedRun(
                cfg=cfg,
                planned=planned,
                run_dir=run_dir,
                datasets=datasets or LoadedDatasets(),
                reporter=reporter or SilentReporter(),
                index=index,
                total=total,
                should_stop=should_stop,
                host_extra=host_extra or {},
                warnings=caught,
            )
            outcome, rec = _execute_claimed_run(run)
        if caught.count:  # warnings after the count was taken (a skipped run's stages, the tracker, ...)
            rec = _count_warnings(run_dir, rec, caught)
    except OSError as exc:
        # Could not even record the run (disk full while writing its "running" record, ...): it stays
        # not completed, so the next invocation retries it; the sweep goes on.
        kind, detail = failure_reason(exc)
        return RunOutcome(planned.run_id, "failed", f"{kind}: {detail}"), None
    finally:
        claim.release()
    why = rec.failure_reason if rec.failure_reason else None
    if why is not None and rec.failure_detail and outcome == "failed":
        why += f": {rec.failure_detail}"  # the terminal summary shows the fix, not only the type
    return RunOutcome(planned.run_id, outcome, why), rec


@dataclass
class _ClaimedRun:
    """One planned run whose claim this process holds, and what executing it needs."""

    cfg: SweepConfig
    planned: PlannedRun
    run_dir: Path
    datasets: LoadedDatasets
    reporter: Reporter
    index: int
    total: int
    should_stop: Callable[[], bool]
    host_extra: dict[str, Any]
    warnings: RunWarnings

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)


@dataclass
class _Attempt:
    """This process's attempt at a claimed run: its record as it stands (each step updates it, so a
    failure records what was done up to there), its tracker and the device it trains on."""

    run: _ClaimedRun
    record: RunRecord
    tracker: RunTracker
    device: Any = None


def _execute_claimed_run(run: _ClaimedRun) -> tuple[str, RunRecord]:
    """reconcile the earlier record → train and evaluate → finalise; returns (outcome, record)."""
    earlier = reconcile_earlier_record(run.run_dir, run.planned)
    if earlier.symlinks:
        return "failed", _unsafe_record(run, earlier.symlinks)
    if earlier.record is not None and earlier.finishes(run.planned):
        _keep_checkpoints(run)  # e.g. rollback copies left by an older version or a kill after the record
        return "skipped", _complete_stages(run, earlier.record)
    attempt = _start_attempt(run, earlier)
    try:
        _train_and_evaluate(attempt)
        _finalise(attempt)
        return "trained", _finish(attempt, attempt.record)
    except Exception as exc:
        return _end_unfinished(attempt, exc)


def _unsafe_record(run: _ClaimedRun, links: list[str]) -> RunRecord:
    """The failed record of a run folder holding planted links (returned, never written into it)."""
    detail = f"symlink inside the run folder: {', '.join(links[:5])}; remove it"
    return _ended(_new_record(run.cfg, run.planned, "failed"), "failed", "unsafe_path", detail)


def _complete_stages(run: _ClaimedRun, prev: RunRecord) -> RunRecord:
    """A finished run is skipped; a completed one first gets the enabled stages it lacks (or that failed)."""
    if run.planned.is_trial:
        return prev  # trials get no stages: explain and profile read the test split
    stages = [name for name, _ in enabled_stages(run.cfg)]
    if any(name not in prev.stages or "error" in prev.stages[name] for name in stages):
        prev = run_stages(run.cfg, run.run_dir, prev, only_missing=True)
    return prev


def _start_attempt(run: _ClaimedRun, earlier: EarlierRecord) -> _Attempt:
    """Write the "running" record (keeping the earlier start time and events), tell reporter and tracker."""
    prev = earlier.record
    record = _new_record(
        run.cfg,
        run.planned,
        "running",
        code_version=code_version(),
        libraries=library_versions(),
        host={**host_info(), "pid": os.getpid(), **run.host_extra},
        started_at=prev.started_at if prev and prev.started_at else now_iso(),
        events=earlier.events + [{"event": "started", "at": now_iso(), "pid": os.getpid()}],
        tune=run.planned.tune,
    )
    write_record(run.run_dir, record)
    faults.set_run(run.planned.run_id)
    run.reporter.run_started(run.planned, run.index, run.total, run.planned.spec.train.epochs)
    from archbench.tracking import open_tracker

    tracker = open_tracker(run.cfg, run.run_dir.parent.parent)
    tracker.started(record)
    return _Attempt(run, record, tracker)


def _train_and_evaluate(attempt: _Attempt) -> None:
    """Load the data, train (on one or more ranks), record what training did, evaluate on the test split."""
    from archbench.engine.ddp import RankPlan, train_on_ranks
    from archbench.engine.evaluate import evaluate_run
    from archbench.engine.runtime import resolve_device

    run, record, spec = attempt.run, attempt.record, attempt.run.planned.spec
    bundle = run.datasets.get(spec.data)
    record.data = bundle.summary()
    record.data_fingerprint = bundle.fingerprint
    record.class_names = bundle.class_names
    if run.planned.is_trial:
        bundle = bundle.without_test()  # a tuning trial never reads the test split
    attempt.device = device = resolve_device(spec.train.device)  # once per run: train, evaluate, stages
    ranks = RankPlan.for_run(run.cfg.executor.resources, device)  # processes > 1: data-parallel

    def on_epoch(stats: dict[str, Any]) -> None:
        run.reporter.epoch(stats)
        attempt.tracker.epoch(stats)

    result = train_on_ranks(
        ranks,
        spec,
        bundle,
        run.run_dir,
        should_stop=run.should_stop,
        on_batch=run.reporter.batch,
        on_epoch=LiveHistory(run.run_dir, record, on_epoch).epoch,
        on_resume=lambda epoch, step: run.reporter.run_resumed(run.planned, epoch, step),
        device=device,
    )
    _record_training(record, result, ranks.block(spec) if ranks.world_size > 1 else None)
    # Which data path the run used, beside how the data was obtained (cache key, decode seconds).
    record.data = {**(record.data or {}), "loading": {**bundle.loading, **result.data_path}}
    write_history_csv(run.run_dir, result.history)
    if not run.planned.is_trial:  # trials are scored on validation only (record.best, history)
        record.metrics = Metrics(**evaluate_run(result.model, spec, bundle, run.run_dir, device))
        from archbench.engine.reevaluate import reproduce_block

        record.reproduce = reproduce_block(record.device)  # what `verify --deep` holds it to


def _record_training(record: RunRecord, result: Any, distributed: DistributedBlock | None) -> None:
    """What training did, into the record: history, best epoch, time, resumes, events, device, model."""
    from archbench.models import build_info

    record.distributed = distributed
    record.history = [EpochStats(**h) for h in result.history]
    record.best = result.best
    record.train_seconds = result.train_seconds
    record.resumes = result.resumes
    record.events = record.events + result.events
    record.device = result.device
    record.params = result.params
    record.model_build = build_info(result.model)


def _finalise(attempt: _Attempt) -> None:
    """Hash what the record vouches for, write it completed, then run the enabled stages on it."""
    from archbench.store.checkpoint import file_sha256
    from archbench.store.verify import DERIVED, artifact_hashes

    run, record, spec = attempt.run, attempt.record, attempt.run.planned.spec
    ckpt = run.layout.checkpoint(spec.eval.checkpoint)
    record.checkpoint_sha256 = file_sha256(ckpt) if ckpt.exists() else None
    kept = [f"checkpoints/{name}.pt" for name in spec.train.kept_checkpoints]
    record.artifacts = artifact_hashes(run.run_dir, [*kept, *DERIVED])
    attempt.record = RunRecord.model_validate(
        record.model_dump() | {"status": "completed", "ended_at": now_iso()}
    )
    write_record(run.run_dir, attempt.record)  # the run is done here; later stages only add blocks to it
    _keep_checkpoints(run)
    if enabled_stages(run.cfg) and not run.planned.is_trial:
        attempt.record = run_stages(run.cfg, run.run_dir, attempt.record, device=attempt.device)


def _keep_checkpoints(run: _ClaimedRun) -> None:
    """A finished run keeps the checkpoints `train.keep_checkpoints` names and no rollback copy; called
    only once its record is written (a kill before that leaves them for the next attempt)."""
    from archbench.store.checkpoint import keep_only

    keep_only(run.layout.checkpoints, run.planned.spec.train.kept_checkpoints)


def _end_unfinished(attempt: _Attempt, exc: Exception) -> tuple[str, RunRecord]:
    """Every way an attempt ends without completing (pruned, killed, failed): status and reason from
    `how_it_ended`, the record written; all but a pruned trial are then told to the tracker."""
    run, record = attempt.run, attempt.record
    status, reason, detail = how_it_ended(exc)
    if status == "pruned":
        _keep_trained_history(run, record)
    elif status == "failed":
        try:
            atomic_write_text(run.layout.error, traceback.format_exc())  # replaces, never follows
        except OSError:
            pass
    _safe_write(run.run_dir, _ended(record, status, reason, detail))
    if status == "pruned":
        _keep_checkpoints(run)  # a finished trial: its record is written, no rollback copy is needed
        return status, record
    return status, _finish(attempt, record)


def _keep_trained_history(run: _ClaimedRun, record: RunRecord) -> None:
    """A pruned trial keeps what it trained: the trainer saved `last.pt` before calling on_epoch, so its
    history is exactly what was trained."""
    from archbench.store.checkpoint import load_latest

    state, _ = load_latest(run.layout.checkpoint("last"))
    history = list(state["history"]) if state is not None else []
    record.history = [EpochStats(**h) for h in history]
    record.best = dict(state["best"]) if state is not None and state.get("best") else None
    record.train_seconds = float(sum(h["seconds"] for h in history))
    write_history_csv(run.run_dir, history)


def _ended(record: RunRecord, status: Status, reason: str | None, detail: str) -> RunRecord:
    """The one place a run that did not complete gets its status, failure reason and end time."""
    record.status = status
    record.failure_reason = reason
    record.failure_detail = detail
    record.ended_at = now_iso()
    return record


def _finish(attempt: _Attempt, record: RunRecord) -> RunRecord:
    """The warnings count goes into the record before the tracker is told, so both hold the same."""
    record = _count_warnings(attempt.run.run_dir, record, attempt.run.warnings)
    attempt.tracker.finished(attempt.run.run_dir, record)
    return record


def _count_warnings(run_dir: Path, record: RunRecord, log: RunWarnings) -> RunRecord:
    """The one place the record's `warnings` is set: the lines of the run's warnings.log (written when it
    changed)."""
    n = log.total()
    if n == record.warnings:
        return record
    record = record.model_copy(update={"warnings": n})
    _safe_write(run_dir, record)
    return record


def _new_record(cfg: SweepConfig, planned: PlannedRun, status: Status, **fields: Any) -> RunRecord:
    """A fresh record for a planned run: its identity (id, sweep, spec, hash, axes, seed) plus `fields`."""
    return RunRecord(
        run_id=planned.run_id,
        sweep=cfg.name,
        status=status,
        spec=planned.spec,
        spec_hash=planned.spec_hash,
        axes=planned.axes,
        seed=planned.spec.seed,
        **fields,
    )


def mark_run_failed(
    cfg: SweepConfig, planned: PlannedRun, root: Path, reason: str, detail: str
) -> RunOutcome:
    """Record that a run died outside its own code (its worker or node was lost every time it was tried).

    Taken under the run's claim; a run that meanwhile completed, or is busy elsewhere, is left alone."""
    try:
        run_dir = safe_join(SweepLayout(root).runs, planned.run_id)
        run_dir.mkdir(exist_ok=True)
    except (ValueError, OSError) as exc:
        return RunOutcome(planned.run_id, "failed", f"unsafe_path: {exc}")
    claim = RunClaim(run_dir)
    if not claim.try_acquire():
        return RunOutcome(planned.run_id, "busy", f"claimed by {claim.owner()}")
    try:
        rec = read_record(run_dir)
        if rec is not None and rec.spec_hash == planned.spec_hash and rec.status == "completed":
            return RunOutcome(planned.run_id, "trained")
        if rec is None or rec.spec_hash != planned.spec_hash:
            rec = _new_record(cfg, planned, "failed", code_version=code_version(), started_at=now_iso())
        event = {"event": "worker_died", "at": now_iso(), "detail": detail}
        rec = _ended(rec.model_copy(update={"events": [*rec.events, event]}), "failed", reason, detail)
        _safe_write(run_dir, rec)
        from archbench.tracking import open_tracker

        open_tracker(cfg, root).finished(run_dir, rec)
        return RunOutcome(planned.run_id, "failed", reason)
    finally:
        claim.release()


def _safe_write(run_dir: Path, record: RunRecord) -> None:
    try:
        write_record(run_dir, record)
    except OSError:
        pass  # e.g. disk still full: the run stays not-completed and is retried next time
