"""Experiment tracking: owns mirroring run records into a tracker (MLflow); the local record stays the truth.

A tracker is told when a run starts, after each epoch and when its record is final. It never blocks
training: events are sent from a background thread, a run waits for them at most `timeout_s` when it
ends, and whatever could not be sent is noted in the sweep's outbox for `archbench sync`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from archbench.config import SweepConfig
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
    from archbench.tracking.mlflow import LiveMlflowTracker

    return LiveMlflowTracker(
        cfg.tracking.mlflow, experiment=cfg.tracking.mlflow.experiment or cfg.name, sweep_root=sweep_root
    )
