"""A trial where it trains: owns telling the study each epoch's validation value from the process that
trains the trial, and asking the pruner there.

The driver asks and tells trials (protocol.py); the epochs in between are reported by whichever process
trains the run — this one on the local executor, a Ray worker otherwise — through the shared storage
(study.open_storage), so the pruner reads every trial's intermediate values from it, wherever they ran.
`TrialPruning` is what the protocol hands an executor: picklable, called once per run where it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archbench.config import TuneSpec
from archbench.execution.types import Reporter
from archbench.store.record import RunRecord
from archbench.sweep.expand import PlannedRun
from archbench.tune import study as studies
from archbench.util import faults
from archbench.util.errors import RunPruned


class TrialReporter:
    """Passes progress through to the inner reporter; reports each epoch's validation metric to the trial
    and stops the run (RunPruned) when the pruner says so, before its last epoch."""

    def __init__(self, inner: Reporter, trial: Any, metric: str, epochs: int) -> None:
        self.inner, self.trial, self.metric, self.epochs = inner, trial, metric, epochs

    def __getattr__(self, name: str) -> Any:
        """Reporter methods not overridden here pass straight to the inner reporter."""
        if name == "inner":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def sweep_started(self, total: int, todo: int) -> None:
        pass  # announced once for the whole protocol

    def run_started(self, planned: PlannedRun, index: int, total: int, epochs: int) -> None:
        self.inner.run_started(planned, index, total, epochs)

    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        self.inner.batch(epoch, done, total, loss, acc, ips)

    def run_finished(self, planned: PlannedRun, outcome: str, record: RunRecord | None) -> None:
        self.inner.run_finished(planned, outcome, record)

    def epoch(self, stats: dict[str, Any]) -> None:
        self.inner.epoch(stats)
        # After the epoch's checkpoint: the trial is RUNNING, its run half done.
        if faults.active("kill@trial", self.trial.number):
            faults.die()
        if faults.active("hang@trial", self.trial.number):
            faults.hang()
        epoch = int(stats["epoch"])
        self.trial.report(float(stats[self.metric]), step=epoch)
        # A trial that trained its last epoch has nothing left to save: it is completed, never pruned.
        if epoch < self.epochs and self.trial.should_prune():
            raise RunPruned(f"pruned after epoch {epoch}: {self.metric}={stats[self.metric]:.4f}")


class RunsReporter(TrialReporter):
    """The user's reporter for the protocol's runs: progress passes through; the first line (every trial
    and final run) was said once by the protocol. A trial's own reporter wraps this one where it trains."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def epoch(self, stats: dict[str, Any]) -> None:
        self.inner.epoch(stats)


@dataclass(frozen=True)
class TrialPruning:
    """The reporter of each trial run, built in the process that trains it: the trial is opened from the
    shared storage by its study and number (a tuning tag of the run), so its reports reach every process."""

    tune: TuneSpec
    storage: str  # the studies' file, absolute (workers do not share the driver's working directory)

    def __call__(self, planned: PlannedRun, inner: Reporter) -> Reporter:
        tags = planned.tune or {}
        if tags.get("role") != "trial":
            return inner
        trial = studies.trial_in_this_process(self.tune, self.storage, str(tags["study"]), int(tags["trial"]))
        return TrialReporter(inner, trial, self.tune.metric, planned.spec.train.epochs)
