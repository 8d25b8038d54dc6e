"""The sweep driver: writes the plan, chooses the executor and hands it the runs.

Executors own *where* the runs of a sweep execute (this process, or a Ray cluster), never what a run does.

Every executor calls `runner.execute_run` for each planned run, so claiming, skipping, resuming and the
record rules are the same everywhere; a local and a Ray sweep on the same folder agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.execution.types import (
    Executor,
    Refill,
    Reporter,
    ReporterFor,
    SilentReporter,
    SweepContext,
    SweepSummary,
)
from archbench.store.layout import SweepLayout
from archbench.store.record import read_record
from archbench.sweep.expand import sweep_dir
from archbench.util.paths import atomic_write_text, safe_join

if TYPE_CHECKING:
    from archbench.config import ExecutorSpec, SweepConfig
    from archbench.sweep.expand import PlannedRun


def create_executor(spec: ExecutorSpec) -> Executor:
    """The executor named by the sweep's `executor:` section (Ray is imported only when asked for)."""
    if spec.kind == "ray":
        from archbench.execution.ray import RayExecutor

        return RayExecutor(spec)
    from archbench.execution.local import LocalExecutor

    return LocalExecutor()


def run_sweep(
    cfg: SweepConfig,
    runs: list[PlannedRun],
    *,
    source_text: str | None = None,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    executor: Executor | None = None,
    plan_runs: list[PlannedRun] | None = None,
    reporter_for: ReporterFor | None = None,
    refill: Refill | None = None,
) -> SweepSummary:
    """Write the plan (`plan_runs`, default `runs`: tuning plans more than it runs), then hand the runs to an
    executor (default: the one the sweep names). `reporter_for` and `refill`: see SweepContext."""
    rep = reporter or SilentReporter()
    root = write_plan(cfg, runs if plan_runs is None else plan_runs, source_text)
    summary = SweepSummary(sweep_dir=root)
    todo = sum(1 for r in runs if not run_done(root, r))
    rep.sweep_started(len(runs), todo)
    if executor is None:
        executor = create_executor(cfg.executor)
    executor.run_all(SweepContext(cfg, root, runs, rep, should_stop, summary, reporter_for, refill))
    return summary


def write_plan(cfg: SweepConfig, runs: list[PlannedRun], source_text: str | None) -> Path:
    """Create the sweep folder and record what it is meant to contain (the report uses it to list
    missing runs)."""
    root = sweep_dir(cfg)
    root.parent.mkdir(parents=True, exist_ok=True)
    root = safe_join(root.parent, root.name)  # refuses a sweep folder that is a symlink out of output_dir
    layout = SweepLayout(root)
    layout.runs.mkdir(parents=True, exist_ok=True)
    plan = {
        "sweep": cfg.name,
        "runs": [
            {"run_id": r.run_id, "spec_hash": r.spec_hash, "axes": r.axes, "spec": r.spec.identity()}
            | ({"role": r.tune.get("role")} if r.tune else {})
            for r in runs
        ],
    }
    atomic_write_text(layout.plan, json.dumps(plan, indent=2))
    if source_text is not None:
        atomic_write_text(layout.sweep_file, source_text)
    return root


def run_done(root: Path, planned: PlannedRun) -> bool:
    """True when the run's record says it is finished (completed; a trial also when pruned) with its own
    spec hash."""
    try:
        run_dir = safe_join(SweepLayout(root).runs, planned.run_id)
    except ValueError:
        return False
    rec = read_record(run_dir)
    done = ("completed", "pruned") if planned.is_trial else ("completed",)
    return rec is not None and rec.status in done and rec.spec_hash == planned.spec_hash
