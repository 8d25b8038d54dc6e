"""A sweep's and a run's on-disk layout: owns every file and folder name inside a results folder.

    <output_dir>/<sweep>/plan.json, sweep.yaml, results.csv
    <output_dir>/<sweep>/plans/plan-<key>.json (every plan the folder has had; plan.json is the current one)
    <output_dir>/<sweep>/runs/<run_id>/record.json, history.csv, predictions.npz, error.txt, warnings.log,
        .lock
    <output_dir>/<sweep>/runs/<run_id>/checkpoints/{last,best}.pt
    <output_dir>/<sweep>/stages/<stage>/index.json (+ the stage's figures and tables)

Pure path arithmetic: nothing here reads or writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "record.json"
PLAN_NAME = "plan.json"
PLANS_DIR = "plans"
SWEEP_FILE_NAME = "sweep.yaml"
RESULTS_NAME = "results.csv"
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
class SweepLayout:
    """The files of one sweep folder (a run folder inside it: `safe_join(layout.runs, run_id)`)."""

    sweep_dir: Path

    @property
    def runs(self) -> Path:
        return self.sweep_dir / RUNS_DIR

    @property
    def plan(self) -> Path:
        return self.sweep_dir / PLAN_NAME

    @property
    def plans(self) -> Path:
        """Every plan version the folder has had, one file each (`plan_version`)."""
        return self.sweep_dir / PLANS_DIR

    def plan_version(self, key: str) -> Path:
        return self.plans / f"plan-{key}.json"

    @property
    def plan_lock(self) -> Path:
        """Held while the plan and its history are read, merged and written (store/plans.py)."""
        return self.sweep_dir / ".plan.lock"

    @property
    def sweep_file(self) -> Path:
        """The sweep file as it was given, saved beside the plan."""
        return self.sweep_dir / SWEEP_FILE_NAME

    @property
    def results(self) -> Path:
        return self.sweep_dir / RESULTS_NAME


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
    def warnings_log(self) -> Path:
        return self.run_dir / "warnings.log"

    @property
    def lock(self) -> Path:
        return self.run_dir / ".lock"

    @property
    def record_lock(self) -> Path:
        return self.run_dir / ".record.lock"

    @property
    def sweep_dir(self) -> Path | None:
        return sweep_of(self.run_dir)

    def stage_dir(self, name: str) -> Path:
        """The sweep's `stages/<name>/` (a loose run folder keeps its own `stages/<name>/`)."""
        sweep = self.sweep_dir
        return stage_dir(sweep if sweep is not None else self.run_dir, name)
