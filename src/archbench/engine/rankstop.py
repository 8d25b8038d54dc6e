"""The bound on stopping a data-parallel run: owns what rank 0 does when a stop (SIGTERM, Ctrl-C) is not
agreed at a step in time; never decides when a run stops.

A stop is normally agreed by every rank at the epoch's start and every `train.log_every` steps
(ddp.py), so all ranks checkpoint the same step. That can take long: 50 slow steps on a loaded machine,
ranks still importing torch or loading data, a rank stuck in a collective. So rank 0 watches: once a stop
has been asked for `STOP_GRACE_S` without the run ending, it kills the other ranks (they hold no files and
no claim). Rank 0's next collective then fails at once, and the run ends `killed`, to resume from its last
checkpoint (the steps since are lost, nothing is corrupted). Not bounded: a single step of rank 0's own
that is longer than the grace (it notices the dead ranks at that step's gradient exchange).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from archbench.util.errors import RunKilled

STOP_GRACE_S = 5.0  # an agreed stop gets this long; then the other ranks are killed (the bound is ~10 s)


class StopWatch:
    """A daemon thread of rank 0: calls `kill_ranks` once `should_stop` has been true for the grace."""

    def __init__(self, should_stop: Callable[[], bool], kill_ranks: Callable[[], None]) -> None:
        self._should_stop, self._kill_ranks = should_stop, kill_ranks
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="archbench-stop-watch")
        self.forced_after_s: float | None = None  # set when the ranks were killed: seconds after the stop

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The run ended (or rank 0 failed): stop watching."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            if self._should_stop():
                asked = time.monotonic()
                if self._done.wait(STOP_GRACE_S):
                    return  # the run ended (an agreed stop) within the grace
                self.forced_after_s = time.monotonic() - asked  # first: rank 0 may fail at once
                self._kill_ranks()
                return

    def killed(self) -> RunKilled | None:
        """The run's end when the ranks were killed here (a `RunKilled`), else None."""
        if self.forced_after_s is None:
            return None
        return RunKilled(
            f"stopped: no step was agreed within {STOP_GRACE_S:g}s of the stop, so the other ranks were "
            f"killed {self.forced_after_s:.1f}s after it; the run resumes from its last checkpoint"
        )


__all__ = ["STOP_GRACE_S", "StopWatch"]
