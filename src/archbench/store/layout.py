"""A sweep's and a run's on-disk layout: owns every file and folder name inside a results folder.

    <output_dir>/<sweep>/plan.json, sweep.yaml, results.csv
    <output_dir>/<sweep>/runs/<run_id>/record.json, history.csv, predictions.npz, error.txt, .lock
    <output_dir>/<sweep>/runs/<run_id>/checkpoints/{last,best}.pt
    <output_dir>/<sweep>/stages/<stage>/index.json (+ the stage's figures and tables)

Pure path arithmetic: nothing here reads or writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "record.json"
PLAN_NAME = "plan.json"
RUNS_DIR = "runs"
STAGES_DIR = "stages"
INDEX_NAME = "index.json"


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep folder a run folder belongs to (`<sweep>/runs/<id>`), or None for a loose run folder."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == RUNS_DIR else None


def stage_dir(sweep_dir: Path, name: str) -> Path:
    """`<sweep>/stages/<name>/`: where a stage writes its sweep-level figures, tables and index.json."""
    return Path(sweep_dir) / STAGES_DIR / name


@dataclass(frozen=True)
class RunLayout:
    """The files of one run folder."""

    run_dir: Path

    @property
    def record(self) -> Path:
        return self.run_dir / RECORD_NAME

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """`which` is `last` or `best`."""
        return self.checkpoints / f"{which}.pt"

    @property
    def predictions(self) -> Path:
        return self.run_dir / "predictions.npz"

    @property
    def history(self) -> Path:
        return self.run_dir / "history.csv"

    @property
    def error(self) -> Path:
        return self.run_dir / "error.txt"

    @property
    def lock(self) -> Path:
        return self.run_dir / ".lock"

    @property
    def record_lock(self) -> Path:
        return self.run_dir / ".record.lock"

    def rank_log(self, rank: int) -> Path:
        """What data-parallel rank `rank` (1..N-1) prints."""
        return self.run_dir / f"rank{rank}.log"

    @property
    def sweep_dir(self) -> Path | None:
        return sweep_of(self.run_dir)

    def stage_dir(self, name: str) -> Path:
        """The sweep's `stages/<name>/` (a loose run folder keeps its own `stages/<name>/`)."""
        sweep = self.sweep_dir
        return stage_dir(sweep if sweep is not None else self.run_dir, name)
