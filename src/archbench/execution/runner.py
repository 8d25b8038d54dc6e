"""Runs a sweep: owns claiming, skipping, resuming and the run lifecycle, and writes each run record.

Lifecycle of a run: claimed (flock) → running (record written) → completed | failed(reason) | killed.
A run counts as done only when its record validates with status completed and its own spec hash.
One failing run never stops the sweep (disk full, out of memory, a planted symlink: that run fails with
its reason and the next is tried); SIGTERM/SIGINT checkpoint the current run and stop the sweep.
A completed run is skipped only when it verifies (verify.py); otherwise its record is set aside and the
run is redone from its checkpoint (derived files damaged) or from scratch (checkpoint damaged).
Exit codes: 0 all done, 1 some failed, 3 some left busy (claimed by another live process), 130 stopped.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from archbench.config import DataSpec, SweepConfig
from archbench.stages import enabled_stages, run_stages
from archbench.store.lock import RunClaim
from archbench.store.record import (
    RECORD_NAME,
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
from archbench.sweep.expand import PlannedRun, canonical_json, sweep_dir
from archbench.util import faults
from archbench.util.errors import ArchbenchError, RunFailure, RunKilled, RunPruned
from archbench.util.paths import atomic_write_text, safe_join

PLAN_NAME = "plan.json"


class Reporter(Protocol):
    def sweep_started(self, total: int, todo: int) -> None: ...
    def run_started(self, planned: PlannedRun, index: int, total: int, epochs: int) -> None: ...
    def run_resumed(self, planned: PlannedRun, epoch: int, step: int) -> None: ...
    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None: ...
    def epoch(self, stats: dict[str, Any]) -> None: ...
    def run_finished(self, planned: PlannedRun, outcome: str, record: RunRecord | None) -> None: ...


class SilentReporter:
    def sweep_started(self, total: int, todo: int) -> None:
        pass

    def run_started(self, planned: PlannedRun, index: int, total: int, epochs: int) -> None:
        pass

    def run_resumed(self, planned: PlannedRun, epoch: int, step: int) -> None:
        pass

    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        pass

    def epoch(self, stats: dict[str, Any]) -> None:
        pass

    def run_finished(self, planned: PlannedRun, outcome: str, record: RunRecord | None) -> None:
        pass


@dataclass
class SweepSummary:
    sweep_dir: Path
    # run_id -> trained|skipped|failed|killed|busy|pruned (pruned: a tuning trial stopped by its pruner)
    outcomes: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # run_id -> where it ran (Ray node), if known
    stopped: bool = False

    def add(self, out: RunOutcome) -> None:
        self.outcomes[out.run_id] = out.outcome
        if out.reason:
            self.reasons[out.run_id] = out.reason
        if out.node:
            self.nodes[out.run_id] = out.node

    def count(self, outcome: str) -> int:
        return sum(1 for v in self.outcomes.values() if v == outcome)

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return 130
        if self.count("failed"):
            return 1
        return 3 if self.count("busy") else 0


def write_plan(cfg: SweepConfig, runs: list[PlannedRun], source_text: str | None) -> Path:
    """Create the sweep folder and record what it is meant to contain (the report uses it to list
    missing runs)."""
    root = sweep_dir(cfg)
    root.parent.mkdir(parents=True, exist_ok=True)
    root = safe_join(root.parent, root.name)  # refuses a sweep folder that is a symlink out of output_dir
    (root / "runs").mkdir(parents=True, exist_ok=True)
    plan = {
        "sweep": cfg.name,
        "runs": [
            {"run_id": r.run_id, "spec_hash": r.spec_hash, "axes": r.axes, "spec": r.spec.identity()}
            | ({"role": r.tune.get("role")} if r.tune else {})
            for r in runs
        ],
    }
    atomic_write_text(root / PLAN_NAME, json.dumps(plan, indent=2))
    if source_text is not None:
        atomic_write_text(root / "sweep.yaml", source_text)
    return root


def _write_history_csv(run_dir: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run_dir / "history.csv", buf.getvalue())


class _LiveHistory:
    """Writes `history.csv` and the running record's history after every epoch, so `ls` on a running
    sweep shows how far each run has got (epoch x/y, ETA); then passes the epoch on (reporter, tracking)."""

    def __init__(self, run_dir: Path, record: RunRecord, then: Callable[[dict[str, Any]], None]) -> None:
        self.run_dir, self.record, self.then = run_dir, record, then
        self.history: list[dict[str, Any]] = []
        if (run_dir / "history.csv").is_file():
            try:
                with open(run_dir / "history.csv", newline="") as f:
                    self.history = [dict(row) for row in csv.DictReader(f)]
            except (OSError, csv.Error):
                self.history = []

    def epoch(self, stats: dict[str, Any]) -> None:
        # A resumed run repeats no finished epoch, but a kill between the checkpoint and this write can
        # leave the file one epoch behind or ahead: keep only the epochs before this one, then add it.
        self.history = [h for h in self.history if int(float(h.get("epoch", 0))) < stats["epoch"]]
        self.history.append(dict(stats))
        try:
            _write_history_csv(self.run_dir, self.history)
            self.record.history = [EpochStats(**h) for h in self.history]
            write_record(self.run_dir, self.record)
        except (OSError, ValueError):
            pass  # progress only: the final record and history.csv are written when the run ends
        self.then(stats)


class RunWarnings:
    """Library warnings raised while a run trains, evaluates and runs its stages go to
    `runs/<id>/warnings.log` (one line each, first occurrence per place, appended across resumes) instead of
    the terminal; the record's `warnings` holds how many lines the log has."""

    NAME = "warnings.log"

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / self.NAME
        self.count = 0
        self._saved: Any = None

    def _show(
        self, message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = " ".join(str(message).split())
        entry = f"{now_iso()} {category.__name__}: {text} ({filename}:{lineno})\n"
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644
            )
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(entry)
            self.count += 1
        except OSError:
            pass  # never fail a run over its warning log

    def total(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as f:
                return sum(1 for _ in f)
        except OSError:
            return self.count

    def __enter__(self) -> RunWarnings:
        import warnings

        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        warnings.simplefilter("default")
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc: object) -> None:
        self._saved.__exit__(*exc)


class DataCache:
    """Loads each distinct data spec once per sweep process."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, spec: DataSpec) -> Any:
        from archbench.data import create_dataset

        key = canonical_json(spec.model_dump(mode="json", exclude={"augment", "resolution"}))
        if key not in self._cache:
            self._cache = {key: create_dataset(spec)}  # keep one: datasets can be large
        return self._cache[key]


# What torch's CPU allocator (and friends) say when the host runs out of memory (e.g. under RLIMIT_AS).
_ALLOC_FAILED = re.compile(r"can't allocate memory|not enough memory|out of memory|std::bad_alloc", re.I)


def _failure(exc: BaseException) -> tuple[str, str]:
    import torch

    if isinstance(exc, RunFailure):
        return exc.reason, exc.detail
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or (
        isinstance(exc, RuntimeError) and _ALLOC_FAILED.search(str(exc))
    ):
        return "oom", f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (
            "disk_full",
            f"errno {exc.errno} ({errno.errorcode.get(exc.errno or 0, '?')}) writing {exc.filename}",
        )
    if isinstance(exc, OSError):
        code = errno.errorcode.get(exc.errno or 0, "?")
        return "os_error", f"errno {exc.errno} ({code}) {exc.strerror} on {exc.filename}"
    if isinstance(exc, ArchbenchError):
        return type(exc).__name__, str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


@dataclass
class RunOutcome:
    """What happened to one planned run in the process that ran it (picklable: executors send it back)."""

    run_id: str
    outcome: str  # trained|skipped|failed|killed|busy
    reason: str | None = None
    node: str | None = None


def execute_run(
    cfg: SweepConfig,
    planned: PlannedRun,
    root: Path,
    *,
    reporter: Reporter | None = None,
    index: int = 0,
    total: int = 1,
    should_stop: Callable[[], bool] = lambda: False,
    data_cache: DataCache | None = None,
    host_extra: dict[str, Any] | None = None,
) -> tuple[RunOutcome, RunRecord | None]:
    """Run ONE planned run end to end in whatever process calls it: claim → train → evaluate → stages →
    record. Every executor (local loop, Ray task) calls exactly this, so their rules cannot drift apart."""
    rep = reporter or SilentReporter()
    try:
        run_dir = safe_join(root / "runs", planned.run_id)
        run_dir.mkdir(exist_ok=True)
        run_dir = safe_join(root / "runs", planned.run_id)  # re-check: it may be a planted symlink
    except (ValueError, OSError) as exc:
        return RunOutcome(planned.run_id, "failed", f"unsafe_path: {exc}"), None
    claim = RunClaim(run_dir)
    try:
        acquired = claim.try_acquire()
    except OSError as exc:  # e.g. disk full creating the lock file
        reason, detail = _failure(exc)
        return RunOutcome(planned.run_id, "failed", f"{reason}: {detail}"), None
    if not acquired:
        owner = claim.owner()
        busy = f"claimed by pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        return RunOutcome(planned.run_id, "busy", busy), None
    try:
        with RunWarnings(run_dir) as caught:
            outcome, rec = _run_one(
                cfg,
                planned,
                run_dir,
                data_cache or DataCache(),
                rep,
                index,
                total,
                should_stop,
                host_extra or {},
                warnings_seen=caught.total,
            )
        if rec is not None and caught.count and rec.warnings != caught.total():
            rec = rec.model_copy(update={"warnings": caught.total()})
            _safe_write(run_dir, rec)
    except OSError as exc:
        # Could not even record the run (disk full while writing its "running" record, ...): it stays
        # not completed, so the next invocation retries it; the sweep goes on.
        kind, detail = _failure(exc)
        return RunOutcome(planned.run_id, "failed", f"{kind}: {detail}"), None
    finally:
        claim.release()
    why = rec.failure_reason if rec is not None and rec.failure_reason else None
    if why is not None and rec is not None and rec.failure_detail and outcome == "failed":
        why += f": {rec.failure_detail}"  # the terminal summary shows the fix, not only the type
    return RunOutcome(planned.run_id, outcome, why), rec


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
        run_dir = safe_join(root / "runs", planned.run_id)
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
        rec = rec.model_copy(
            update={
                "status": "failed",
                "failure_reason": reason,
                "failure_detail": detail,
                "ended_at": now_iso(),
                "events": [*rec.events, event],
            }
        )
        _safe_write(run_dir, rec)
        from archbench.tracking import open_tracker

        open_tracker(cfg, root).finished(run_dir, rec)
        return RunOutcome(planned.run_id, "failed", reason)
    finally:
        claim.release()


class Executor(Protocol):
    """Runs the planned runs of a sweep, each through `execute_run`, and fills in the summary."""

    def run_all(
        self,
        cfg: SweepConfig,
        root: Path,
        runs: list[PlannedRun],
        reporter: Reporter,
        should_stop: Callable[[], bool],
        summary: SweepSummary,
    ) -> None: ...


def run_done(root: Path, planned: PlannedRun) -> bool:
    try:
        run_dir = safe_join(root / "runs", planned.run_id)
    except ValueError:
        return False
    rec = read_record(run_dir)
    done = ("completed", "pruned") if planned.is_trial else ("completed",)
    return rec is not None and rec.status in done and rec.spec_hash == planned.spec_hash


def _plan_entry(planned: PlannedRun) -> dict[str, Any]:
    return {"run_id": planned.run_id, "spec_hash": planned.spec_hash}


def _set_aside(path: Path) -> Path:
    n = 0
    while os.path.lexists(path.with_name(f"{path.name}.untrusted-{n}")):
        n += 1
    dest = path.with_name(f"{path.name}.untrusted-{n}")
    os.replace(path, dest)
    return dest


def _untrusted_completed(run_dir: Path, planned: PlannedRun, prev: RunRecord) -> str | None:
    """Why a completed record cannot be trusted as is (None: it verifies). Sets the record aside, and
    the checkpoints too when they are what failed, so the run is redone: from its own checkpoint when
    only derived files (predictions, history) or stored numbers are damaged, from scratch otherwise."""
    from archbench.store.verify import verify_run

    if not prev.artifacts:
        return None  # written before records carried hashes: kept (verify and ls say it is unverified)
    verdict = verify_run(run_dir, _plan_entry(planned), prev)
    if verdict.ok:
        return None
    ckpt_bad = any(p.startswith("checkpoints/") or "sha256 for checkpoints" in p for p in verdict.problems)
    if ckpt_bad and (run_dir / "checkpoints").is_dir():
        _set_aside(run_dir / "checkpoints")
    _set_aside(run_dir / RECORD_NAME)
    return "; ".join(verdict.problems)


def unsafe_entries(run_dir: Path) -> list[str]:
    """Symlinks inside a run folder (a planted `error.txt`, `checkpoints/`, ...): writes would follow them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(run_dir, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                found.append(str(p))
    return found


def _run_one(
    cfg: SweepConfig,
    planned: PlannedRun,
    run_dir: Path,
    data_cache: DataCache,
    rep: Reporter,
    index: int,
    total: int,
    should_stop: Callable[[], bool],
    host_extra: dict[str, Any],
    warnings_seen: Callable[[], int] = lambda: 0,
) -> tuple[str, RunRecord | None]:
    links = unsafe_entries(run_dir)
    if links:
        # Nothing is written into a folder holding a planted link (not even the record: a completed one
        # stays as it is); the run fails and the link stays for inspection.
        rec = _new_record(
            cfg,
            planned,
            "failed",
            failure_reason="unsafe_path",
            failure_detail=f"symlink inside the run folder: {', '.join(links[:5])}; remove it",
            ended_at=now_iso(),
        )
        return "failed", rec
    prev = read_record(run_dir)
    if prev is not None and (prev.spec_hash != planned.spec_hash or prev.run_id != planned.run_id):
        prev = None
    if prev is None and (run_dir / RECORD_NAME).exists():
        # Invalid, foreign or tampered record: never trusted, kept aside for inspection.
        _set_aside(run_dir / RECORD_NAME)
    if prev is not None and prev.migrated_from is not None:
        write_record(run_dir, prev)  # an older schema, migrated on read: store it in today's format
    if prev is not None and prev.status == "pruned" and planned.is_trial:
        return "skipped", prev  # a pruned trial is finished: its pruner decided, rerunning changes nothing
    events: list[dict[str, Any]] = list(prev.events) if prev else []
    if prev is not None and prev.status == "completed":
        why = _untrusted_completed(run_dir, planned, prev)
        if why is not None:
            events = list(prev.events) + [{"event": "redone", "at": now_iso(), "detail": why[:2000]}]
            prev = None
    if prev is not None and prev.status == "completed":
        if planned.is_trial:
            return "skipped", prev  # trials get no stages: explain and profile read the test split
        stages = [name for name, _ in enabled_stages(cfg)]
        if any(name not in prev.stages or "error" in prev.stages[name] for name in stages):
            prev = run_stages(cfg, run_dir, prev, only_missing=True)
        return "skipped", prev
    if prev is not None and prev.status == "running":
        # We hold the claim, so the process that wrote "running" is gone: it was killed.
        events.append(
            {"event": "owner_died", "at": now_iso(), "detail": "found status running with no live owner"}
        )
        prev = prev.model_copy(update={"status": "killed", "events": events, "ended_at": now_iso()})
        write_record(run_dir, prev)
    record = _new_record(
        cfg,
        planned,
        "running",
        code_version=code_version(),
        libraries=library_versions(),
        host={**host_info(), "pid": os.getpid(), **host_extra},
        started_at=prev.started_at if prev and prev.started_at else now_iso(),
        events=events + [{"event": "started", "at": now_iso(), "pid": os.getpid()}],
        tune=planned.tune,
    )
    write_record(run_dir, record)
    faults.set_run(planned.run_id)
    rep.run_started(planned, index, total, planned.spec.train.epochs)
    from archbench.tracking import open_tracker

    tracker = open_tracker(cfg, run_dir.parent.parent)

    def finish(record: RunRecord) -> RunRecord:
        """The warnings count goes into the record before MLflow is told, so both hold the same file."""
        n = warnings_seen()
        if n != record.warnings:
            record = record.model_copy(update={"warnings": n})
            _safe_write(run_dir, record)
        tracker.finished(run_dir, record)
        return record

    tracker.started(record)

    def on_epoch(stats: dict[str, Any]) -> None:
        rep.epoch(stats)
        tracker.epoch(stats)

    try:
        bundle = data_cache.get(planned.spec.data)
        record.data = bundle.summary()
        record.data_fingerprint = bundle.fingerprint
        record.class_names = bundle.class_names
        if planned.is_trial:
            bundle = bundle.without_test()  # a tuning trial never reads the test split
        from archbench.engine.ddp import RankPlan, train_on_ranks
        from archbench.engine.evaluate import evaluate_run
        from archbench.engine.runtime import resolve_device

        device = resolve_device(planned.spec.train.device)  # once per run: train, evaluate, stages
        ranks = RankPlan.for_run(cfg.executor.resources, device)  # processes > 1: data-parallel
        live = _LiveHistory(run_dir, record, on_epoch)
        result = train_on_ranks(
            ranks,
            planned.spec,
            bundle,
            run_dir,
            should_stop=should_stop,
            on_batch=rep.batch,
            on_epoch=live.epoch,
            on_resume=lambda epoch, step: rep.run_resumed(planned, epoch, step),
            device=device,
        )
        record.distributed = ranks.block(planned.spec) if ranks.world_size > 1 else None
        record.history = [EpochStats(**h) for h in result.history]
        record.best = result.best
        record.train_seconds = result.train_seconds
        record.resumes = result.resumes
        record.events = record.events + result.events
        record.device = result.device
        record.params = result.params
        from archbench.models import build_info

        record.model_build = build_info(result.model)
        # Which data path the run used, beside how the data was obtained (cache key, decode seconds).
        record.data = {**(record.data or {}), "loading": {**bundle.loading, **result.data_path}}
        _write_history_csv(run_dir, result.history)
        if not planned.is_trial:  # trials are scored on validation only (record.best, history)
            record.metrics = Metrics(**evaluate_run(result.model, planned.spec, bundle, run_dir, device))
        from archbench.store.checkpoint import file_sha256
        from archbench.store.verify import DERIVED, artifact_hashes

        ckpt = run_dir / "checkpoints" / f"{planned.spec.eval.checkpoint}.pt"
        record.checkpoint_sha256 = file_sha256(ckpt) if ckpt.exists() else None
        record.artifacts = artifact_hashes(run_dir, ["checkpoints/best.pt", "checkpoints/last.pt", *DERIVED])
        record = RunRecord.model_validate(
            record.model_dump() | {"status": "completed", "ended_at": now_iso()}
        )
        write_record(run_dir, record)  # the run is done here; later stages only add blocks to it
        if enabled_stages(cfg) and not planned.is_trial:
            del result, bundle  # free the training copies before stages load what they need
            record = run_stages(cfg, run_dir, record, device=device)
        record = finish(record)
        return "trained", record
    except RunPruned as exc:
        # The trainer saved `last.pt` before calling on_epoch, so its history is exactly what was trained.
        from archbench.store.checkpoint import load_latest

        state, _ = load_latest(run_dir / "checkpoints" / "last.pt")
        history = list(state["history"]) if state is not None else []
        record.history = [EpochStats(**h) for h in history]
        record.best = dict(state["best"]) if state is not None and state.get("best") else None
        record.train_seconds = float(sum(h["seconds"] for h in history))
        _write_history_csv(run_dir, history)
        record.status = "pruned"
        record.failure_detail = str(exc)
        record.ended_at = now_iso()
        _safe_write(run_dir, record)
        return "pruned", record
    except RunKilled as exc:
        record.status = "killed"
        record.failure_reason = "killed"
        record.failure_detail = str(exc)
        record.ended_at = now_iso()
        _safe_write(run_dir, record)
        record = finish(record)
        return "killed", record
    except Exception as exc:
        reason, detail = _failure(exc)
        record.status = "failed"
        record.failure_reason = reason
        record.failure_detail = detail
        record.ended_at = now_iso()
        try:
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())  # replaces, never follows
        except OSError:
            pass
        _safe_write(run_dir, record)
        record = finish(record)
        return "failed", record


def _safe_write(run_dir: Path, record: RunRecord) -> None:
    try:
        write_record(run_dir, record)
    except OSError:
        pass  # e.g. disk still full: the run stays not-completed and is retried next time
