"""Optuna studies of a tuned sweep: owns storage, sampler, pruner, sampling, stale trials and the budget.

One study per compared cell, all in one file (default `<sweep>/tune/optuna.db`), opened with
`load_if_exists=True` so a rerun continues where the last process stopped. Trials are driven by
ask/tell: the caller trains each one as an ordinary archbench run, possibly in another process (a Ray
worker) that reports the trial's epochs into the same file. Optuna is imported lazily.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from archbench.config import SweepConfig, TuneSpec
from archbench.store.layout import SweepLayout
from archbench.store.lock import RunClaim

ABANDONED = "abandoned_trials"  # study user attr: trial numbers whose process died (requeued, not counted)


def storage_path(cfg: SweepConfig, root: Path) -> Path:
    assert cfg.tune is not None
    return Path(cfg.tune.storage) if cfg.tune.storage else SweepLayout(root).optuna_db


def open_storage(path: Path | str) -> Any:
    """The studies' storage, shared by every process that trains a trial of them.

    A `.journal` file is Optuna's JournalStorage (its own file lock works on a network filesystem: for a
    cluster whose nodes share only that). Anything else is SQLite in WAL mode, so the processes reporting
    epochs and the one asking for trials do not wait for each other's reads; WAL needs every process on one
    host (a local Ray, or a cluster whose trials all run on the head's filesystem)."""
    import optuna

    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".journal":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    import sqlite3

    con = sqlite3.connect(path, timeout=_SQLITE_BUSY_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # kept by the file: every later connection uses it
    finally:
        con.close()
    return optuna.storages.RDBStorage(
        f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": _SQLITE_BUSY_S}}
    )


_SQLITE_BUSY_S = 60  # a writer waits this long for another process's write before it fails


def make_pruner(tune: TuneSpec) -> Any:
    """The pruner of `tune.pruner`; the same in the driver and in every process that trains a trial."""
    import optuna

    if tune.pruner == "median":
        # The first two trials always finish; steps are epochs (1, 2, ...) and Optuna prunes from step
        # n_warmup_steps on (not after it): none is pruned before epoch 3.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3)
    if tune.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def open_study(tune: TuneSpec, storage: Path, name: str, seed: int, concurrent: bool = False) -> Any:
    """The study of one cell. `concurrent`: trials will run at once, so the sampler treats a running
    trial as a poor result (TPE's constant liar) instead of proposing its parameters again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=open_storage(storage),
        study_name=name,
        direction="maximize" if tune.metric == "val_acc" else "minimize",
        pruner=make_pruner(tune),
        load_if_exists=True,
    )
    # A seeded sampler per study, so one sweep file proposes the same trials. The seed also counts the
    # trials already in the study: a resumed study must not propose its first trials all over again.
    done = len(study.get_trials(deepcopy=False))
    study_seed = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16) + done
    study.sampler = optuna.samplers.TPESampler(
        seed=study_seed, n_startup_trials=max(2, min(10, tune.trials // 2)), constant_liar=concurrent
    )
    return study


def trial_in_this_process(tune: TuneSpec, storage: Path | str, name: str, number: int) -> Any:
    """Trial `number` of study `name`, opened from the storage in this process (a worker training it): its
    reports go to the storage and its pruner reads the other trials' values from there."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage)
    trial_id = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(name), number)
    study = optuna.load_study(study_name=name, storage=store, pruner=make_pruner(tune))
    return optuna.trial.Trial(study, trial_id)


def sample(trial: Any, tune: TuneSpec) -> dict[str, Any]:
    """The trial's values for every key of the space (an enqueued trial gets its fixed values back)."""
    out: dict[str, Any] = {}
    for key, p in tune.space.items():
        if p.type == "categorical":
            out[key] = trial.suggest_categorical(key, list(p.choices or []))
        elif p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low or 0), int(p.high or 0))
        else:
            out[key] = trial.suggest_float(
                key, float(p.low or 0), float(p.high or 0), log=p.type == "loguniform"
            )
    return out


def abandoned(study: Any) -> set[int]:
    return {int(n) for n in study.user_attrs.get(ABANDONED, [])}


def requeue_stale(study: Any, sweep: SweepLayout) -> list[int]:
    """Trials left RUNNING by a dead process: fail them and enqueue the same parameters again.

    A trial's process is dead when its run's claim (flock) is free; a RUNNING trial whose run is claimed
    belongs to a live sweep and is left alone. The requeued trial has the same params, hence the same run
    id, so its run resumes from `last.pt` instead of starting over.
    """
    from optuna.trial import TrialState

    gone: list[int] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_id = t.user_attrs.get("run_id")
        if isinstance(run_id, str) and sweep.run_dir(run_id).is_dir():
            claim = RunClaim(sweep.run_dir(run_id))
            if not claim.try_acquire():
                continue  # a live process is training it
            claim.release()
        gone.append(t.number)
        study.set_user_attr(ABANDONED, sorted(abandoned(study) | {t.number}))
        study.tell(t.number, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(dict(t.params), user_attrs={"requeued_from": t.number})
    return gone


def spent_trials(study: Any) -> list[Any]:
    """Trials that count against the budget: finished (complete, pruned, failed) or running now.

    Trials abandoned by a dead process do not count (their requeued copy does); enqueued ones not yet
    started do not count either.
    """
    from optuna.trial import TrialState

    skip = abandoned(study)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.number not in skip]


def best_trial(study: Any) -> Any | None:
    """The best completed trial, or None when no trial completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial
