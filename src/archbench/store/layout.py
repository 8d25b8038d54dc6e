"""A sweep's and a run's on-disk layout: owns every file and folder name inside a results folder.

    <output_dir>/<sweep>/plan.json, sweep.yaml, results.csv, tracking-outbox.jsonl
    <output_dir>/<sweep>/plans/plan-<key>.json (every plan the folder has had; plan.json is the current one)
    <output_dir>/<sweep>/runs/<run_id>/record.json, history.csv, predictions.npz, error.txt, warnings.log,
                                       rank<r>.log, .lock, .record.lock
    <output_dir>/<sweep>/runs/<run_id>/checkpoints/{last,best}.pt
    <output_dir>/<sweep>/runs/<run_id>/<stage>/ (a stage's own files of the run: explain/heatmaps.npz)
    <output_dir>/<sweep>/stages/<stage>/index.json (+ the stage's figures and tables, named by the stage)
    <output_dir>/<sweep>/tune/summary.json, optuna.db (a tuned sweep)
    <output_dir>/report/ (or <sweep>/report/): `archbench report`'s default output

`SweepLayout(sweep_dir)` and `RunLayout(run_dir)` name them; nothing else spells these names.
Pure path arithmetic: nothing here reads or writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD_NAME = "record.json"
PLAN_NAME = "plan.json"
PLANS_DIR = "plans"
SWEEP_FILE_NAME = "sweep.yaml"
RESULTS_NAME = "results.csv"
RUNS_DIR = "runs"
STAGES_DIR = "stages"
INDEX_NAME = "index.json"
CHECKPOINTS_DIR = "checkpoints"
PREDICTIONS_NAME = "predictions.npz"
HISTORY_NAME = "history.csv"
TUNE_DIR = "tune"
REPORT_DIR = "report"
OUTBOX_NAME = "tracking-outbox.jsonl"


class _Name:
    """A read-only path property: `name` (a file or folder, may hold a `/`) inside the layout's `folder`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, layout: Any, owner: type | None = None) -> Path:
        return Path(layout.folder) / self.name


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep folder a run folder belongs to (`<sweep>/runs/<id>`), or None for a loose run folder."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == RUNS_DIR else None


def stage_dir(sweep_dir: Path, name: str) -> Path:
    """`<sweep>/stages/<name>/`: where a stage writes its sweep-level figures, tables and index.json."""
    return Path(sweep_dir) / STAGES_DIR / name


def report_dir(results: Path) -> Path:
    """Where `archbench report RESULTS` writes unless told (`RESULTS` a sweep folder or an output_dir)."""
    return Path(results) / REPORT_DIR


@dataclass(frozen=True)
class RunLayout:
    """The files of one run folder."""

    run_dir: Path

    record = _Name(RECORD_NAME)
    checkpoints = _Name(CHECKPOINTS_DIR)
    predictions = _Name(PREDICTIONS_NAME)
    history = _Name(HISTORY_NAME)
    error = _Name("error.txt")
    warnings_log = _Name("warnings.log")  # library warnings while the run trains, evaluates, runs stages
    lock = _Name(".lock")  # the run's claim (store/lock.py)
    record_lock = _Name(".record.lock")  # around a record's read-merge-write (`update_stage`)

    @property
    def folder(self) -> Path:
        return Path(self.run_dir)

    def checkpoint(self, which: str) -> Path:
        """`which` is `last` or `best`."""
        return self.checkpoints / f"{which}.pt"

    def rank_log(self, rank: int) -> Path:
        """What data-parallel rank `rank` (1..N-1) prints."""
        return self.folder / f"rank{rank}.log"

    def relative(self, path: Path) -> str:
        """`path` as the record's `artifacts` key it: relative to the run folder, with `/` (e.g.
        `checkpoints/best.pt`)."""
        return Path(path).relative_to(self.folder).as_posix()

    @property
    def sweep_dir(self) -> Path | None:
        return sweep_of(self.run_dir)

    def stage_files(self, name: str) -> Path:
        """`<run>/<name>/`: a stage's own files of this run (the explain stage's heatmaps)."""
        return self.folder / name

    def stage_dir(self, name: str) -> Path:
        """The sweep's `stages/<name>/` (a loose run folder keeps its own `stages/<name>/`)."""
        sweep = self.sweep_dir
        return stage_dir(sweep if sweep is not None else self.run_dir, name)


@dataclass(frozen=True)
class SweepLayout:
    """The files of one sweep folder (`<output_dir>/<sweep name>/`)."""

    sweep_dir: Path

    plan = _Name(PLAN_NAME)
    plans = _Name(PLANS_DIR)  # every plan version the folder has had, one file each (`plan_version`)
    plan_lock = _Name(".plan.lock")  # held while the plan and its history are read, merged, written
    sweep_file = _Name(SWEEP_FILE_NAME)  # the sweep file as it was given, saved beside the plan
    results = _Name(RESULTS_NAME)
    tracking_outbox = _Name(OUTBOX_NAME)  # runs whose MLflow copy may be stale (tracking/)
    runs = _Name(RUNS_DIR)
    stages = _Name(STAGES_DIR)
    tune = _Name(TUNE_DIR)
    tune_summary = _Name(f"{TUNE_DIR}/summary.json")
    optuna_db = _Name(f"{TUNE_DIR}/optuna.db")  # the study storage unless `tune.storage` names another

    @property
    def folder(self) -> Path:
        return Path(self.sweep_dir)

    def plan_version(self, key: str) -> Path:
        return self.plans / f"plan-{key}.json"

    def run_dir(self, run_id: str) -> Path:
        """`runs/<run_id>/`: a plain join. Where an id may be unsafe (`../x` in a plan.json someone edited),
        check it with `util.paths.safe_join(layout.runs, run_id)`."""
        return self.runs / run_id

    def stage_dir(self, name: str) -> Path:
        return stage_dir(self.folder, name)

    def stage_index(self, name: str) -> Path:
        """`stages/<name>/index.json`: what the report embeds for a stage."""
        return self.stage_dir(name) / INDEX_NAME
