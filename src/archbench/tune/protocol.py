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
from archbench.execution.driver import run_sweep
from archbench.execution.local import LocalExecutor
from archbench.execution.runner import Reporter, SilentReporter, SweepSummary
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
    and stops the run (RunPruned) when the pruner says so."""

    def __init__(self, inner: Reporter, trial: Any, metric: str) -> None:
        self.inner, self.trial, self.metric = inner, trial, metric

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
        self.trial.report(float(stats[self.metric]), step=int(stats["epoch"]))
        if self.trial.should_prune():
            raise RunPruned(f"pruned after epoch {stats['epoch']}: {self.metric}={stats[self.metric]:.4f}")


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
    from optuna.trial import TrialState

    from archbench.tune.summary import write_summary

    assert cfg.tune is not None
    tune = cfg.tune
    rep = reporter or SilentReporter()
    root = sweep_dir(cfg)
    out = TuneOutcome(summary=SweepSummary(sweep_dir=root))
    names = [plan.study_name(c) for c in cells]
    db = studies.storage_path(cfg, root)
    opened = [studies.open_study(tune, db, name, cfg.seed) for name in names]

    def known_trials() -> list[PlannedRun]:
        runs: dict[str, PlannedRun] = {}
        for cell, name, st in zip(cells, names, opened, strict=True):
            for t in st.get_trials(deepcopy=False):
                if t.params and len(t.params) == len(tune.space):
                    r = plan.trial_run(cell, dict(t.params), name, t.number)
                    runs.setdefault(r.run_id, r)
        return list(runs.values())

    def absorb(s: SweepSummary, into: dict[str, str]) -> None:
        out.summary.outcomes.update(s.outcomes)
        out.summary.reasons.update(s.reasons)
        into.update(s.outcomes)
        out.summary.stopped = out.summary.stopped or s.stopped

    total_trials = tune.trials * len(cells)
    done_trials = sum(
        min(tune.trials, len([t for t in studies.spent_trials(st) if t.state != TrialState.RUNNING]))
        for st in opened
    )
    rep.sweep_started(total_trials + len(tune.seeds) * len(cells), total_trials - done_trials)

    # Phase 1: the same budget for every cell, on the validation split only.
    for cell, name, st in zip(cells, names, opened, strict=True):
        out.requeued += len(studies.requeue_stale(st, SweepLayout(root)))
        epochs_cap = tune.epochs
        while not out.summary.stopped:
            spent = studies.spent_trials(st)
            if len(spent) >= tune.trials:
                break
            if epochs_cap is not None:
                used = sum(int(t.user_attrs.get("epochs", 0)) for t in spent)
                if used + plan.max_trial_epochs(cfg, cell) > epochs_cap:
                    break  # the next trial could overrun the cell's epoch budget
            if should_stop():
                out.summary.stopped = True
                break
            trial = st.ask()
            params = studies.sample(trial, tune)
            planned = plan.trial_run(cell, params, name, trial.number)
            trial.set_user_attr("run_id", planned.run_id)
            s = run_sweep(
                cfg,
                [planned],
                source_text=source_text,
                reporter=_TrialReporter(rep, trial, tune.metric),
                should_stop=should_stop,
                executor=LocalExecutor(),  # the pruner hears each epoch here, in the study's process
                plan_runs=known_trials(),
            )
            absorb(s, out.trials)
            outcome = s.outcomes.get(planned.run_id, "failed")
            rec = read_record(SweepLayout(root).run_dir(planned.run_id))
            if rec is not None:
                trial.set_user_attr("epochs", len(rec.history))
            if outcome in ("killed", "busy"):
                # Not this trial's fault: give it back (same params, same run) for the next sweep.
                st.set_user_attr(studies.ABANDONED, sorted(studies.abandoned(st) | {trial.number}))
                st.tell(trial, state=TrialState.FAIL)
                st.enqueue_trial(params, user_attrs={"requeued_from": trial.number})
                if outcome == "busy":
                    break  # another live sweep is tuning this cell
                continue
            if rec is not None and rec.status == "pruned":
                st.tell(trial, state=TrialState.PRUNED)
                continue
            value = trial_value(rec, tune.metric) if rec is not None and rec.status == "completed" else None
            if value is None:
                trial.set_user_attr("failure", (rec.failure_reason if rec else None) or outcome)
                st.tell(trial, state=TrialState.FAIL)
            else:
                st.tell(trial, value)

    # Phase 2: each cell's best configuration over the seeds, evaluated once on the test split.
    finals: list[PlannedRun] = []
    if not out.summary.stopped:
        for cell, name, st in zip(cells, names, opened, strict=True):
            if len(studies.spent_trials(st)) < tune.trials and tune.epochs is None:
                continue  # tuning of this cell is not finished (another sweep holds a trial)
            best = studies.best_trial(st)
            if best is None:
                out.cells_without_best.append(plan.cell_label(cell))
                continue
            finals += plan.final_runs(cfg, cell, dict(best.params), name, best.number)
        if finals:
            s = run_sweep(
                cfg,
                finals,
                source_text=source_text,
                reporter=_FinalReporter(rep),
                should_stop=should_stop,
                plan_runs=known_trials() + finals,
            )
            absorb(s, out.finals)
    write_summary(cfg, root, cells, names, opened, finals)
    return out


class _FinalReporter(_TrialReporter):
    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def epoch(self, stats: dict[str, Any]) -> None:
        self.inner.epoch(stats)


__all__ = ["TuneOutcome", "run_tuned", "trial_value"]
