"""The local executor: runs the planned runs one after another in this process (the default)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from archbench.execution.datasets import LoadedDatasets
from archbench.execution.runner import execute_run
from archbench.execution.types import SweepContext


class LocalExecutor:
    """Serial loop; a SIGTERM/SIGINT checkpoints the current run and stops the sweep."""

    @contextmanager
    def session(self) -> Iterator[None]:
        """Nothing to keep between sweeps (each loads its data once)."""
        yield

    def run_all(self, sweep: SweepContext) -> None:
        datasets = LoadedDatasets()  # each distinct data spec is loaded once per sweep
        queue = deque(sweep.runs)
        i = 0
        while queue:
            if sweep.should_stop():
                sweep.summary.stopped = True
                break
            planned = queue.popleft()
            reporter = sweep.reporter_for(planned, sweep.reporter) if sweep.reporter_for else sweep.reporter
            out, rec = execute_run(
                sweep.cfg,
                planned,
                sweep.root,
                reporter=reporter,
                index=i,
                total=i + 1 + len(queue),
                should_stop=sweep.should_stop,
                datasets=datasets,
            )
            i += 1
            sweep.summary.add(out)
            sweep.reporter.run_finished(planned, out.outcome, rec)
            if out.outcome == "killed":
                sweep.summary.stopped = True
                break
            if sweep.refill is not None:
                queue.extend(sweep.refill(out))
