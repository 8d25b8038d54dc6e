"""The local executor: runs the planned runs one after another in this process (the default)."""

from __future__ import annotations

from archbench.execution.datasets import LoadedDatasets
from archbench.execution.runner import execute_run
from archbench.execution.types import SweepContext


class LocalExecutor:
    """Serial loop; a SIGTERM/SIGINT checkpoints the current run and stops the sweep."""

    def run_all(self, sweep: SweepContext) -> None:
        datasets = LoadedDatasets()  # each distinct data spec is loaded once per sweep
        for i, planned in enumerate(sweep.runs):
            if sweep.should_stop():
                sweep.summary.stopped = True
                break
            out, rec = execute_run(
                sweep.cfg,
                planned,
                sweep.root,
                reporter=sweep.reporter,
                index=i,
                total=len(sweep.runs),
                should_stop=sweep.should_stop,
                datasets=datasets,
            )
            sweep.summary.add(out)
            sweep.reporter.run_finished(planned, out.outcome, rec)
            if out.outcome == "killed":
                sweep.summary.stopped = True
                break
