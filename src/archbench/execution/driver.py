"""The sweep driver: writes the plan, chooses the executor and hands it the runs.

Executors own *where* the runs of a sweep execute (this process, or a Ray cluster), never what a run does.

Every executor calls `runner.execute_run` for each planned run, so claiming, skipping, resuming and the
record rules are the same everywhere; a local and a Ray sweep on the same folder agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from archbench.execution.runner import (
    Executor,
    Reporter,
    SilentReporter,
    SweepSummary,
    run_done,
    write_plan,
)

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
) -> SweepSummary:
    """Write the plan (`plan_runs`, default `runs`: tuning plans more than it runs), then hand the runs to an
    executor (default: the serial local loop)."""
    rep = reporter or SilentReporter()
    root = write_plan(cfg, runs if plan_runs is None else plan_runs, source_text)
    summary = SweepSummary(sweep_dir=root)
    todo = sum(1 for r in runs if not run_done(root, r))
    rep.sweep_started(len(runs), todo)
    if executor is None:
        executor = create_executor(cfg.executor)
    executor.run_all(cfg, root, runs, rep, should_stop, summary)
    return summary
