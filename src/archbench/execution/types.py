"""The shared types of execution: what a sweep hands an executor, what a run's execution reports back.

Imports nothing else from execution: the runner, the executors and the driver all build on these.
Names: a `RunOutcome` is what happened to ONE planned run in the process that ran it (its `outcome` is one
of trained|skipped|failed|killed|busy|pruned); a `SweepSummary` collects them for the whole sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from archbench.config import SweepConfig
    from archbench.store.record import RunRecord
    from archbench.sweep.expand import PlannedRun


class Reporter(Protocol):
    def sweep_started(self, total: int, todo: int) -> None: ...
    def run_started(self, planned: PlannedRun, index: int, total: int, epochs: int) -> None: ...
    def run_resumed(self, planned: PlannedRun, epoch: int, step: int) -> None: ...
    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None: ...
    def epoch(self, stats: dict[str, Any]) -> None: ...
    def run_finished(self, planned: PlannedRun, outcome: str, record: RunRecord | None) -> None: ...


class SilentReporter:
    def sweep_started(self, total: int, todo: int) -> None:
        pass

    def run_started(self, planned: PlannedRun, index: int, total: int, epochs: int) -> None:
        pass

    def run_resumed(self, planned: PlannedRun, epoch: int, step: int) -> None:
        pass

    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        pass

    def epoch(self, stats: dict[str, Any]) -> None:
        pass

    def run_finished(self, planned: PlannedRun, outcome: str, record: RunRecord | None) -> None:
        pass


@dataclass
class RunOutcome:
    """What happened to one planned run in the process that ran it (picklable: executors send it back)."""

    run_id: str
    outcome: str  # trained|skipped|failed|killed|busy|pruned
    reason: str | None = None
    node: str | None = None


@dataclass
class SweepSummary:
    sweep_dir: Path
    # run_id -> trained|skipped|failed|killed|busy|pruned (pruned: a tuning trial stopped by its pruner)
    outcomes: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # run_id -> where it ran (Ray node), if known
    stopped: bool = False

    def add(self, out: RunOutcome) -> None:
        self.outcomes[out.run_id] = out.outcome
        if out.reason:
            self.reasons[out.run_id] = out.reason
        else:  # a run tried again (e.g. busy, then done): no reason of its earlier outcome stays
            self.reasons.pop(out.run_id, None)
        if out.node:
            self.nodes[out.run_id] = out.node

    def count(self, outcome: str) -> int:
        return sum(1 for v in self.outcomes.values() if v == outcome)

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return 130
        if self.count("failed"):
            return 1
        return 3 if self.count("busy") else 0


ReporterFor = Callable[["PlannedRun", Reporter], Reporter]
"""Builds a run's reporter in the process that runs it, around the reporter found there (picklable)."""

Refill = Callable[[RunOutcome], "list[PlannedRun]"]
"""Told each finished run's outcome in the sweep's process; returns more runs to queue (tuning's next
trials)."""


@dataclass
class SweepContext:
    """One sweep as an executor receives it: the runs to execute under `root`, whom to tell, when to stop,
    and the summary to fill in. `reporter_for` wraps each run's reporter where the run executes (a tuning
    trial reports its epochs to its study from there); `refill` adds runs as others finish."""

    cfg: SweepConfig
    root: Path
    runs: list[PlannedRun]
    reporter: Reporter
    should_stop: Callable[[], bool]
    summary: SweepSummary
    reporter_for: ReporterFor | None = None
    refill: Refill | None = None


class Executor(Protocol):
    """Runs the planned runs of a sweep, each through `runner.execute_run`, and fills in the summary.
    Within `session()`, what an executor starts (a Ray instance, warm workers) serves every `run_all`."""

    def run_all(self, sweep: SweepContext) -> None: ...

    def session(self) -> AbstractContextManager[None]: ...
