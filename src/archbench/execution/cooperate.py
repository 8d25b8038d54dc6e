"""Sweeps that share a folder: owns what a sweep does about the runs another live process held.

A run claimed by another process when this sweep reached it is `busy`. Once the sweep's own runs are
done, every busy run is looked at again, on disk: one that its holder has released by then is handed to
the executor once more (`execute_run` re-reads its record: a run the other process completed is skipped,
one it left unfinished is resumed here). So the summary counts a run finished elsewhere as done, and calls
a run busy only when a live process still holds it at the end; the process that ends with every run done
exits 0. With `wait`, the sweep polls the held runs' locks (every `POLL_SECONDS`) until each is released,
and ends with every run done unless one fails or it is stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.execution.types import Executor, SweepContext
from archbench.store.layout import SweepLayout
from archbench.store.lock import RunClaim
from archbench.store.record import read_record
from archbench.util.paths import safe_join

if TYPE_CHECKING:
    from archbench.sweep.expand import PlannedRun

POLL_SECONDS = 1.0


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


def held_elsewhere(root: Path, planned: PlannedRun) -> bool:
    """Is the run's claim held right now (a read-only probe of its lock)?"""
    try:
        run_dir = safe_join(SweepLayout(root).runs, planned.run_id)
    except ValueError:
        return False
    return RunClaim(run_dir).held_by_someone()


def settle_held_runs(
    executor: Executor,
    sweep: SweepContext,
    *,
    wait: bool = False,
    on_wait: Callable[[list[PlannedRun]], None] | None = None,
    poll_s: float = POLL_SECONDS,
) -> None:
    """Give every run left busy its final outcome (see the module docstring); `on_wait` hears once which
    runs a waiting sweep waits for."""
    announced = False
    while not sweep.summary.stopped:
        busy = [r for r in sweep.runs if sweep.summary.outcomes.get(r.run_id) == "busy"]
        released = [r for r in busy if not held_elsewhere(sweep.root, r)]
        if released:
            executor.run_all(dataclasses.replace(sweep, runs=released))
            if not wait:
                return  # one more look only: a run grabbed again meanwhile stays busy
            continue
        if not busy or not wait:
            return
        if sweep.should_stop():
            sweep.summary.stopped = True
            return
        if not announced and on_wait is not None:
            on_wait(busy)
        announced = True
        time.sleep(poll_s)


__all__ = ["POLL_SECONDS", "held_elsewhere", "run_done", "settle_held_runs"]
