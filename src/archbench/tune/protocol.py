"""The tuning protocol's loop: owns phase 1 (tune each compared cell) and phase 2 (repeat each best).

Side effects live here: it opens the studies, trains every trial and final run through the ordinary
`run_sweep` path on the sweep's configured executor — up to `tune.parallel` trials at once on Ray (one at
a time on the local executor), each next trial asked as soon as one ends — and writes the tuning summary.
The driver asks and tells every trial; the process that trains a trial reports its epochs to the study
through the shared storage and asks the pruner there (trials.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archbench.config import SweepConfig
from archbench.execution.driver import create_executor, run_done, run_sweep, write_plan
from archbench.execution.types import Reporter, RunOutcome, SilentReporter, SweepSummary
from archbench.store.layout import SweepLayout
from archbench.store.record import RunRecord, read_record
from archbench.sweep.expand import PlannedRun, sweep_dir
from archbench.tune import plan
from archbench.tune import study as studies
from archbench.tune.trials import RunsReporter, TrialPruning


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
    with p.executor.session():  # one Ray (and its warm workers) for both phases
        p.tune_cells()  # phase 1: the same budget for every cell, on the validation split only
        finals = p.run_finals() if not p.out.summary.stopped else []
    write_summary(cfg, p.root, cells, p.names, p.opened, finals)
    return p.out


@dataclass
class _AskedTrial:
    """A trial the driver asked for and has not told yet, with the run that trains it."""

    cell: int
    trial: Any
    params: dict[str, Any]
    planned: PlannedRun


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
        # The local executor trains one run at a time: asking for more trials ahead would only let the
        # sampler propose them knowing less.
        self.parallel = self.tune.parallel if cfg.executor.kind == "ray" else 1
        self.executor = create_executor(cfg.executor)
        self.storage = studies.storage_path(cfg, self.root).resolve()
        self.opened = [
            studies.open_study(self.tune, self.storage, name, cfg.seed, concurrent=self.parallel > 1)
            for name in self.names
        ]
        self.asked: dict[str, list[_AskedTrial]] = {}  # run id -> trials waiting for that run
        self.held: set[int] = set()  # cells whose trial another live sweep is training

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

    def _run(self, runs: list[PlannedRun], plan_runs: list[PlannedRun], **hooks: Any) -> SweepSummary:
        """The protocol's runs through the ordinary sweep path, on its executor (`hooks`: run_sweep's
        reporter_for and refill)."""
        return run_sweep(
            self.cfg,
            runs,
            source_text=self.source_text,
            reporter=RunsReporter(self.rep),
            should_stop=self.should_stop,
            executor=self.executor,
            plan_runs=plan_runs,
            **hooks,
        )

    def _absorb(self, s: SweepSummary, into: dict[str, str]) -> None:
        self.out.summary.outcomes.update(s.outcomes)
        self.out.summary.reasons.update(s.reasons)
        into.update(s.outcomes)
        self.out.summary.stopped = self.out.summary.stopped or s.stopped

    # ------------------------------------------------------------------------------------ phase 1

    def tune_cells(self) -> None:
        """Trials of every cell, up to `parallel` at once, each next one asked as soon as one ends, until
        every cell's budget is spent, a stop is asked, or another sweep holds the cells left."""
        for st in self.opened:
            self.out.requeued += len(studies.requeue_stale(st, SweepLayout(self.root)))
        first = self._ask_more()
        if not first:
            return
        s = self._run(
            first,
            self.known_trials(),
            reporter_for=TrialPruning(self.tune, str(self.storage)),
            refill=self._refill,
        )
        self._absorb(s, self.out.trials)
        for run_id in list(self.asked):  # stopped before their runs ended (or began)
            self._settle(run_id, s.outcomes.get(run_id, "killed"))

    def _ask_more(self) -> list[PlannedRun]:
        """New trial runs while fewer than `parallel` runs are in flight: each from the first cell whose
        budget allows one more (so with one at a time, cell after cell as always)."""
        runs: list[PlannedRun] = []
        while len(self.asked) < self.parallel and not self.out.summary.stopped:
            if self.should_stop():
                self.out.summary.stopped = True
                break
            todo = [
                i
                for i, (c, _, st) in enumerate(self.cells())
                if i not in self.held and self._budget_left(c, st)
            ]
            if not todo:
                break
            planned = self._ask(todo[0])
            if planned is not None:
                runs.append(planned)
        return runs

    def _budget_left(self, cell: PlannedRun, st: Any) -> bool:
        """Room for one more trial: under `trials`, and under `epochs` even if every running trial (and
        the next) trains its most epochs."""
        from optuna.trial import TrialState

        spent = studies.spent_trials(st)
        if len(spent) >= self.tune.trials:
            return False
        if self.tune.epochs is None:
            return True
        most = plan.max_trial_epochs(self.cfg, cell)
        used = sum(
            int(t.user_attrs.get("epochs", most if t.state == TrialState.RUNNING else 0)) for t in spent
        )
        return used + most <= self.tune.epochs  # the next could overrun it

    def _ask(self, i: int) -> PlannedRun | None:
        """Ask cell i's study for a trial; its run, or None when a trial with the same parameters (the same
        run) is already in flight: this one is told that run's result when it ends."""
        cell, name, st = self.cells()[i]
        trial = st.ask()
        params = studies.sample(trial, self.tune)
        planned = plan.trial_run(cell, params, name, trial.number)
        trial.set_user_attr("run_id", planned.run_id)
        waiting = self.asked.setdefault(planned.run_id, [])
        waiting.append(_AskedTrial(i, trial, params, planned))
        return planned if len(waiting) == 1 else None

    def _refill(self, out: RunOutcome) -> list[PlannedRun]:
        """A run ended (the executor tells it in this process): tell its trials, ask for the next ones."""
        self._settle(out.run_id, out.outcome)
        more = self._ask_more()
        if more:
            write_plan(self.cfg, self.known_trials(), self.source_text)
        return more

    def _settle(self, run_id: str, outcome: str) -> None:
        """Tell the study how the run of these trials ended; a cell whose run another sweep holds is left."""
        rec = read_record(SweepLayout(self.root).run_dir(run_id))
        for a in self.asked.pop(run_id, []):
            if rec is not None:
                a.trial.set_user_attr("epochs", len(rec.history))
            if not _tell(self.opened[a.cell], a.trial, a.params, outcome, rec, self.tune.metric):
                self.held.add(a.cell)  # another live sweep is tuning this cell

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
            s = self._run(finals, self.known_trials() + finals)
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


__all__ = ["TuneOutcome", "run_tuned", "trial_value"]
