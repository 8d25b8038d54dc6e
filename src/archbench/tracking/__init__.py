"""Experiment tracking: owns mirroring run records into a tracker (MLflow); the local record stays the truth.

A tracker is told when a run starts, after each epoch and when its record is final. It never blocks
training: events are sent from a background thread, a run waits for them at most `timeout_s` when it
ends, and whatever could not be sent is noted in the sweep's outbox for `archbench sync`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from archbench.config import MlflowSpec, SweepConfig
    from archbench.store.record import RunRecord


class RunTracker(Protocol):
    def started(self, record: RunRecord) -> None: ...
    def epoch(self, stats: dict[str, Any]) -> None: ...
    def finished(self, run_dir: Path, record: RunRecord) -> None: ...


class NullTracker:
    def started(self, record: RunRecord) -> None:
        pass

    def epoch(self, stats: dict[str, Any]) -> None:
        pass

    def finished(self, run_dir: Path, record: RunRecord) -> None:
        pass


def open_tracker(cfg: SweepConfig, sweep_root: Path) -> RunTracker:
    """The tracker for one run of this sweep (MLflow is imported only when tracking is configured)."""
    if cfg.tracking is None or cfg.tracking.mlflow is None:
        return NullTracker()
    from archbench.tracking.mlflow_live import LiveMlflowTracker

    return LiveMlflowTracker(
        cfg.tracking.mlflow,
        experiment=cfg.tracking.mlflow.experiment or cfg.name,
        sweep_root=sweep_root,
        sweep_name=cfg.name,
    )


def sync_command(sweep_root: Path, spec: MlflowSpec) -> str:
    """The exact `archbench sync` command that sends MLflow what it has not seen of this sweep folder."""
    import shlex

    args = ["archbench", "sync", str(sweep_root), "--mlflow-uri", spec.uri]
    if spec.experiment:
        args += ["--experiment", spec.experiment]
    if spec.log_models:
        args.append("--log-models")
    return shlex.join(args)


def catch_up_line(cfg: SweepConfig, sweep_root: Path) -> str | None:
    """Before a sweep runs: send MLflow what it has not seen of this sweep folder (tracking.mlflow.catch_up)
    and say so in one line; when MLflow cannot be reached, the line gives the exact `sync` command for
    later. None without tracking, or when MLflow already holds every final record."""
    if cfg.tracking is None or cfg.tracking.mlflow is None:
        return None
    from archbench.tracking.mlflow import catch_up

    spec = cfg.tracking.mlflow
    done = catch_up(spec, spec.experiment or cfg.name, sweep_root, cfg.name)
    later = f"send what it has not seen later with: {sync_command(sweep_root, spec)}"
    ids = ", ".join(done.sent[:5]) + (f" and {len(done.sent) - 5} more" if len(done.sent) > 5 else "")
    if done.unreachable:
        return f"tracking: MLflow at {spec.uri} cannot be reached ({done.first_error}); {later}"
    if done.not_sent:
        sent = f"sent {len(done.sent)} run(s) MLflow had not seen ({ids}); " if done.sent else ""
        return f"tracking: {sent}{len(done.not_sent)} not sent ({done.first_error}); {later}"
    if done.sent:
        return f"tracking: sent {len(done.sent)} run(s) MLflow had not seen to {spec.uri} ({ids})"
    return None
