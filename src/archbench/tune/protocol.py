"""The tuning protocol's loop: owns phase 1 (tune each compared cell) and phase 2 (repeat each best).

Side effects live here: it opens the studies, trains every trial and final run through the ordinary
`run_sweep` path — trials one at a time on the local executor (the pruner hears each epoch in this
process), final runs on the sweep's configured executor — and writes the tuning summary.
A trial's pruning decision comes from the trainer's per-epoch callback (validation metric of that epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archbench.config import SweepConfig
from archbench.execution.driver import run_done, run_sweep
from archbench.execution.local import LocalExecutor
from archbench.execution.types import Reporter, SilentReporter, SweepSummary
from archbench.store.layout import SweepLayout
from archbench.store.record import RunRecord, read_record
from archbench.sweep.expand import PlannedRun, sweep_dir
from archbench.tune import plan
from archbench.tune import study as studies
from archbench.util import faults
from archbench.util.errors import RunPruned


@dataclass
class TuneOutcome:
    """What one `archbench run` of a tuned sweep did (the CLI turns it into lines and an exit code)."""

    summary: SweepSummary  # outcomes of every run touched, trials and final runs
    trials: dict[str, str] = field(default_factory=dict)  # trial run id -> outcome
    finals: dict[str, str] = field(default_factory=dict)  # final run id -> outcome
    requeued: int = 0
    cells_without_best: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.summary.stopped:
            return 130
        return 1 if any(v == "failed" for v in self.finals.values()) or self.cells_without_best else 0


class _TrialReporter:
    """Passes progress through to the user's reporter; reports each epoch's validation metric to Optuna
    and stops the run (RunPruned) when the pruner says so, before its last epoch."""

    def __init__(self, inner: Reporter, trial: Any, metric: str, epochs: int) -> None:
        self.inner, self.trial, self.metric, self.epochs = inner, trial, metric, epochs

    def sweep_started(self, total: int, todo: int) -> None:
        pass  # announced once for the whole protocol

    def run_started(self, planned: PlannedRun, index: int, total: int, epochs: int) -> None:
        self.inner.run_started(planned, index, total, epochs)

    def run_resumed(self, planned: PlannedRun, epoch: int, step: int) -> None:
        self.inner.run_resumed(planned, epoch, step)

    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        self.inner.batch(epoch, done, total, loss, acc, ips)

    def run_finished(self, planned: PlannedRun, outcome: str, record: RunRecord | None) -> None:
        self.inner.run_finished(planned, outcome, record)

    def epoch(self, stats: dict[str, Any]) -> None:
        self.inner.epoch(stats)
        if faults.active("kill@trial", self.trial.number):
            faults.die()  # after the epoch's checkpoint: the trial is RUNNING, its run half done
        epoch = int(stats["epoch"])
        self.trial.report(float(stats[self.metric]), step=epoch)
        # A trial that trained its last epoch has nothing left to save: it is completed, never pruned.
        if epoch < self.epochs and self.trial.should_prune():
            raise RunPruned(f"pruned after epoch {epoch}: {self.metric}={stats[self.metric]:.4f}")


def trial_value(record: RunRecord, metric: str) -> float | None:
    """The trial's objective: the best validation value over its epochs (never a test number)."""
    values = [float(getattr(h, metric)) for h in record.history]
    if not values:
        return None
    return max(values) if metric == "val_acc" else min(values)


def run_tuned(
    cfg: SweepConfig,
    cells: list[PlannedRun],
    *,
    source_text: str | None = None,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TuneOutcome:
    """Phase 1 then phase 2 for every cell; resumable: finished trials and runs are never repeated."""
    from archbench.tune.summary import write_summary

    p = _Protocol(cfg, cells, source_text, reporter or SilentReporter(), should_stop)
    p.announce()
    for cell, name, st in p.cells():  # phase 1: the same budget for every cell, on the validation split only
        p.tune_cell(cell, name, st)
    finals = p.run_finals() if not p.out.summary.stopped else []
    write_summary(cfg, p.root, cells, p.names, p.opened, finals)
    return p.out


class _Protocol:
    """One `archbench run` of a tuned sweep: the studies it opened, and what it has run so far."""

    def __init__(
        self,
        cfg: SweepConfig,
        cells: list[PlannedRun],
        source_text: str | None,
        rep: Reporter,
        should_stop: Callable[[], bool],
    ) -> None:
        assert cfg.tune is not None
        self.cfg, self.tune, self.source_text = cfg, cfg.tune, source_text
        self.rep, self.should_stop = rep, should_stop
        self.root = sweep_dir(cfg)
        self.out = TuneOutcome(summary=SweepSummary(sweep_dir=self.root))
        self._cells = cells
        self.names = [plan.study_name(c) for c in cells]
        db = studies.storage_path(cfg, self.root)
        self.opened = [studies.open_study(self.tune, db, name, cfg.seed) for name in self.names]

    def cells(self) -> list[tuple[PlannedRun, str, Any]]:
        """(cell, study name, study) for every compared cell."""
        return list(zip(self._cells, self.names, self.opened, strict=True))

    def known_trials(self) -> list[PlannedRun]:
        runs: dict[str, PlannedRun] = {}
        for cell, name, st in self.cells():
            for t in st.get_trials(deepcopy=False):
                if t.params and len(t.params) == len(self.tune.space):
                    r = plan.trial_run(cell, dict(t.params), name, t.number)
                    runs.setdefault(r.run_id, r)
        return list(runs.values())

    def announce(self) -> None:
        """The first line: every trial and final run of the protocol, and how many are already done."""
        from optuna.trial import TrialState

        n_trials = self.tune.trials
        done_trials = sum(
            min(n_trials, len([t for t in studies.spent_trials(st) if t.state != TrialState.RUNNING]))
            for st in self.opened
        )
        finals, _ = self.best_finals()  # final runs are known (and may be done) once a cell is tuned
        done_finals = sum(1 for r in finals if run_done(self.root, r))
        total = (n_trials + len(self.tune.seeds)) * len(self._cells)
        self.rep.sweep_started(total, total - done_trials - done_finals)

    def _absorb(self, s: SweepSummary, into: dict[str, str]) -> None:
        self.out.summary.outcomes.update(s.outcomes)
        self.out.summary.reasons.update(s.reasons)
        into.update(s.outcomes)
        self.out.summary.stopped = self.out.summary.stopped or s.stopped

    # ------------------------------------------------------------------------------------ phase 1

    def tune_cell(self, cell: PlannedRun, name: str, st: Any) -> None:
        """Trials of one cell until its budget is spent, a stop is asked, or another sweep holds it."""
        self.out.requeued += len(studies.requeue_stale(st, SweepLayout(self.root)))
        while not self.out.summary.stopped and self._budget_left(cell, st):
            if self.should_stop():
                self.out.summary.stopped = True
                return
            if not self._run_trial(cell, name, st):
                return  # another live sweep is tuning this cell

    def _budget_left(self, cell: PlannedRun, st: Any) -> bool:
        spent = studies.spent_trials(st)
        if len(spent) >= self.tune.trials:
            return False
        if self.tune.epochs is None:
            return True
        used = sum(int(t.user_attrs.get("epochs", 0)) for t in spent)
        return used + plan.max_trial_epochs(self.cfg, cell) <= self.tune.epochs  # the next could overrun it

    def _run_trial(self, cell: PlannedRun, name: str, st: Any) -> bool:
        """Ask for a trial, train it as an ordinary run, tell the study; False: another sweep holds it."""
        trial = st.ask()
        params = studies.sample(trial, self.tune)
        planned = plan.trial_run(cell, params, name, trial.number)
        trial.set_user_attr("run_id", planned.run_id)
        s = run_sweep(
            self.cfg,
            [planned],
            source_text=self.source_text,
            reporter=_TrialReporter(self.rep, trial, self.tune.metric, planned.spec.train.epochs),
            should_stop=self.should_stop,
            executor=LocalExecutor(),  # the pruner hears each epoch here, in the study's process
            plan_runs=self.known_trials(),
        )
        self._absorb(s, self.out.trials)
        outcome = s.outcomes.get(planned.run_id, "failed")
        rec = read_record(SweepLayout(self.root).run_dir(planned.run_id))
        if rec is not None:
            trial.set_user_attr("epochs", len(rec.history))
        return _tell(st, trial, params, outcome, rec, self.tune.metric)

    # ------------------------------------------------------------------------------------ phase 2

    def best_finals(self) -> tuple[list[PlannedRun], list[str]]:
        """The final runs of every cell whose tuning is finished, and the labels of those without a best."""
        finals: list[PlannedRun] = []
        without_best: list[str] = []
        for cell, name, st in self.cells():
            if len(studies.spent_trials(st)) < self.tune.trials and self.tune.epochs is None:
                continue  # tuning of this cell is not finished (another sweep holds a trial)
            best = studies.best_trial(st)
            if best is None:
                without_best.append(plan.cell_label(cell))
                continue
            finals += plan.final_runs(self.cfg, cell, dict(best.params), name, best.number)
        return finals, without_best

    def run_finals(self) -> list[PlannedRun]:
        """Phase 2: each cell's best configuration over the seeds, evaluated once on the test split."""
        finals, self.out.cells_without_best = self.best_finals()
        if finals:
            s = run_sweep(
                self.cfg,
                finals,
                source_text=self.source_text,
                reporter=_FinalReporter(self.rep),
                should_stop=self.should_stop,
                plan_runs=self.known_trials() + finals,
            )
            self._absorb(s, self.out.finals)
        return finals


def _tell(
    st: Any, trial: Any, params: dict[str, Any], outcome: str, rec: RunRecord | None, metric: str
) -> bool:
    """Tell the study how the trial's run ended; False when another live sweep is training it (busy)."""
    from optuna.trial import TrialState

    if outcome in ("killed", "busy"):
        # Not this trial's fault: give it back (same params, same run) for the next sweep.
        st.set_user_attr(studies.ABANDONED, sorted(studies.abandoned(st) | {trial.number}))
        st.tell(trial, state=TrialState.FAIL)
        st.enqueue_trial(params, user_attrs={"requeued_from": trial.number})
        return outcome != "busy"
    if rec is not None and rec.status == "pruned":
        st.tell(trial, state=TrialState.PRUNED)
        return True
    value = trial_value(rec, metric) if rec is not None and rec.status == "completed" else None
    if value is None:
        trial.set_user_attr("failure", (rec.failure_reason if rec else None) or outcome)
        st.tell(trial, state=TrialState.FAIL)
    else:
        st.tell(trial, value)
    return True


class _FinalReporter(_TrialReporter):
    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def epoch(self, stats: dict[str, Any]) -> None:
        self.inner.epoch(stats)


__all__ = ["TuneOutcome", "run_tuned", "trial_value"]
