"""The sweep driver: writes the plan, chooses the executor, hands it the runs, then settles the runs that
other processes held (cooperate.py).

Executors own *where* the runs of a sweep execute (this process, or a Ray cluster), never what a run does.

Every executor calls `runner.execute_run` for each planned run, so claiming, skipping, resuming and the
record rules are the same everywhere; a local and a Ray sweep on the same folder agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.execution.cooperate import run_done, settle_held_runs
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
from archbench.store.plans import save_plan
from archbench.sweep.expand import sweep_dir
from archbench.sweep.identity import reuse_run_folders
from archbench.util.paths import safe_join

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
    wait: bool = False,
    on_wait: Callable[[list[PlannedRun]], None] | None = None,
) -> SweepSummary:
    """Write the plan (`plan_runs`, default `runs`: tuning plans more than it runs), hand the runs to an
    executor (default: the one the sweep names; `reporter_for` and `refill`: see SweepContext), then settle
    the runs other processes held (`cooperate.py`; `wait`: until none is held; `on_wait` hears which runs it
    waits for). A spec that already has a folder in the sweep folder runs there (`reuse_run_folders`)."""
    rep = reporter or SilentReporter()
    root = sweep_dir(cfg)
    runs = reuse_run_folders(root, runs)
    root = write_plan(cfg, runs if plan_runs is None else reuse_run_folders(root, plan_runs), source_text)
    summary = SweepSummary(sweep_dir=root)
    todo = sum(1 for r in runs if not run_done(root, r))
    rep.sweep_started(len(runs), todo)
    if executor is None:
        executor = create_executor(cfg.executor)
    sweep = SweepContext(cfg, root, runs, rep, should_stop, summary, reporter_for, refill)
    executor.run_all(sweep)
    settle_held_runs(executor, sweep, wait=wait, on_wait=on_wait)
    return summary


def write_plan(cfg: SweepConfig, runs: list[PlannedRun], source_text: str | None) -> Path:
    """Create the sweep folder and record what it is meant to contain (plan.json, kept in plans/ with every
    earlier plan; the report uses it to list missing runs)."""
    root = sweep_dir(cfg)
    root.parent.mkdir(parents=True, exist_ok=True)
    root = safe_join(root.parent, root.name)  # refuses a sweep folder that is a symlink out of output_dir
    SweepLayout(root).runs.mkdir(parents=True, exist_ok=True)
    plan = {
        "sweep": cfg.name,
        "runs": [
            {"run_id": r.run_id, "spec_hash": r.spec_hash, "axes": r.axes, "spec": r.spec.identity()}
            | ({"role": r.tune.get("role")} if r.tune else {})
            for r in runs
        ],
    }
    save_plan(root, plan, source_text)
    return root
