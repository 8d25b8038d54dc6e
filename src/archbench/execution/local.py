"""The local executor: runs the planned runs one after another in this process (the default)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from archbench.config import SweepConfig
from archbench.execution.runner import DataCache, Reporter, SweepSummary, execute_run
from archbench.sweep.expand import PlannedRun


class LocalExecutor:
    """Serial loop; a SIGTERM/SIGINT checkpoints the current run and stops the sweep."""

    def run_all(
        self,
        cfg: SweepConfig,
        root: Path,
        runs: list[PlannedRun],
        reporter: Reporter,
        should_stop: Callable[[], bool],
        summary: SweepSummary,
    ) -> None:
        data_cache = DataCache()  # each distinct data spec is loaded once per sweep
        for i, planned in enumerate(runs):
            if should_stop():
                summary.stopped = True
                break
            out, rec = execute_run(
                cfg,
                planned,
                root,
                reporter=reporter,
                index=i,
                total=len(runs),
                should_stop=should_stop,
                data_cache=data_cache,
            )
            summary.add(out)
            reporter.run_finished(planned, out.outcome, rec)
            if out.outcome == "killed":
                summary.stopped = True
                break
