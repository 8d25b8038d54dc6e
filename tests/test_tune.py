"""Fair tuning (`tune:`): config checks, trials never touch the test split, pruning, kill-and-resume."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from archbench.config import RunSpec
from archbench.execution.driver import run_sweep
from archbench.execution.types import SilentReporter
from archbench.store.record import read_record
from archbench.sweep.expand import expand_sweep, load_sweep_text
from archbench.util.errors import ConfigError, DatasetError, RunPruned
from conftest import REPO, run_cli
from helpers import cli

TUNE_SWEEP = """
name: tuned
output_dir: {out}
data:
  kind: digits
  limit_per_class: 40
model:
  name: tiny_cnn
train:
  epochs: 2
  batch_size: 64
  threads: 1
grid:
  model.name: [tiny_cnn]
tune:
  space:
    train.lr: {{type: loguniform, low: 0.01, high: 0.2}}
    train.optimizer: {{type: categorical, choices: [sgd, adamw]}}
  trials: 3
  pruner: none
  seeds: [0, 1]
"""


def _cfg(tmp_path: Path, text: str = TUNE_SWEEP) -> Any:
    return load_sweep_text(textwrap.dedent(text.format(out=tmp_path / "results")), path="tune.yaml")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("train.lr: {type: loguniform, low: 0.0, high: 0.2}", "tune.yaml:17: tune.space.train.lr"),
        ("train.lr: {type: uniform, low: 0.3, high: 0.2}", "low must be below high"),
        ("train.lr: {type: loguniform, low: 0.01}", "takes `low` and `high`"),
        ("train.lrr: {type: uniform, low: 0.1, high: 0.2}", "tune.yaml:17: tune.space key 'train.lrr'"),
        ("train.lr: {type: categorical, choices: [-1.0]}", "tune.space.train.lr: Input should be greater"),
        ("model.name: {type: categorical, choices: [resnet18]}", "also a grid axis"),
        ("train.lr: {type: loguniform, low: 0.01, high: 0.2, step: 2}", "unknown key"),
    ],
)
def test_bad_tune_space_is_a_config_error_with_line(tmp_path: Path, edit: str, expected: str) -> None:
    text = TUNE_SWEEP.replace(
        "train.lr: {{type: loguniform, low: 0.01, high: 0.2}}", edit.replace("{", "{{").replace("}", "}}")
    )
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, text)
    assert expected in str(err.value)


def test_grid_axes_must_be_compared_and_seeds_come_from_tune(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grid axis 'train.batch_size' is not compared"):
        _cfg(
            tmp_path,
            TUNE_SWEEP.replace(
                "  model.name: [tiny_cnn]", "  model.name: [tiny_cnn]\n  train.batch_size: [32, 64]"
            ),
        )
    with pytest.raises(ConfigError, match="grid axis 'seed' with tune"):
        _cfg(
            tmp_path,
            TUNE_SWEEP.replace("  model.name: [tiny_cnn]", "  model.name: [tiny_cnn]\n  seed: [0, 1]"),
        )
    with pytest.raises(ConfigError, match="tune.compare\\[0\\] 'train.lr' is not a grid axis"):
        _cfg(tmp_path, TUNE_SWEEP.replace("  trials: 3", "  trials: 3\n  compare: [train.lr]"))
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        _cfg(tmp_path, TUNE_SWEEP.replace("seeds: [0, 1]", "seeds: [1, 1]"))


def test_bad_tune_section_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(TUNE_SWEEP.format(out=tmp_path / "results")).replace("trials: 3", "trials: 0")
    )
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 2
    assert "sweep.yaml:" in res.stderr and "tune.trials" in res.stderr
    assert not (tmp_path / "results").exists()


def test_withheld_test_split_cannot_be_read() -> None:
    from archbench.data import create_dataset

    bundle = create_dataset(RunSpec().data).without_test()
    assert len(bundle.train) > 0 and len(bundle.val) > 0
    for touch in (lambda: bundle.test.x, lambda: bundle.test.y, lambda: len(bundle.test)):
        with pytest.raises(DatasetError, match="withheld during tuning"):
            touch()


def test_tuned_sweep_trials_never_evaluate_on_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrument the one door to test-split evaluation: during tuning it is never called."""
    import archbench.engine.evaluate as evaluate
    from archbench.report import build_report
    from archbench.tune import run_tuned

    calls: list[str] = []
    real = evaluate.evaluate_run

    def counting(model: Any, spec: Any, bundle: Any, run_dir: Path, device: Any) -> Any:
        calls.append(run_dir.name)
        return real(model, spec, bundle, run_dir, device)

    monkeypatch.setattr(evaluate, "evaluate_run", counting)
    cfg = _cfg(tmp_path)
    out = run_tuned(cfg, expand_sweep(cfg), reporter=SilentReporter())
    assert out.exit_code == 0
    root = tmp_path / "results" / "tuned"
    trials = [read_record(p) for p in sorted((root / "runs").glob("trial-*"))]
    finals = [read_record(p) for p in sorted((root / "runs").iterdir()) if not p.name.startswith("trial-")]
    assert len(trials) == 3 and len(finals) == 2
    for rec in trials:
        assert rec is not None and rec.status == "completed" and rec.tune and rec.tune["role"] == "trial"
        assert rec.metrics is None and rec.history and rec.best
        assert not (root / "runs" / rec.run_id / "predictions.npz").exists()
    assert sorted(calls) == sorted(r.run_id for r in finals if r is not None)
    summary = json.loads((root / "tune" / "summary.json").read_text())
    (cell,) = summary["cells"]
    assert cell["spent"]["trials"] == 3 and summary["equal_budget"]
    assert cell["spent"]["epochs"] == sum(len(r.history) for r in trials if r is not None)
    best = max(trials, key=lambda r: max(h.val_acc for h in r.history))
    assert cell["best"]["run_id"] == best.run_id
    for rec in finals:
        assert rec is not None and rec.metrics is not None and rec.tune["role"] == "final"
        assert rec.spec.train.lr == best.spec.train.lr and rec.tune["best_trial"] == best.tune["trial"]
    # Rerun: nothing trains again.
    again = run_tuned(cfg, expand_sweep(cfg), reporter=SilentReporter())
    assert set(again.trials.values()) <= {"skipped"} and set(again.finals.values()) == {"skipped"}
    # The report compares final runs only and states the protocol.
    result = build_report(root, formats="md")
    md = (result.out_dir / "report.md").read_text()
    assert result.runs == 2 and "Protocol: each of the 1 compared" in md and "## Tuning" in md


class _PruneAtEpoch(SilentReporter):
    def epoch(self, stats: dict[str, Any]) -> None:
        if stats["epoch"] == 1:
            raise RunPruned("pruned after epoch 1 (test)")


def test_pruned_trial_is_recorded_as_pruned_not_failed(tmp_path: Path) -> None:
    from archbench.tune import plan

    cfg = _cfg(tmp_path)
    (cell,) = expand_sweep(cfg)
    trial = plan.trial_run(cell, {"train.lr": 0.05, "train.optimizer": "sgd"}, "s", 0)
    summary = run_sweep(cfg, [trial], reporter=_PruneAtEpoch())
    assert summary.outcomes == {trial.run_id: "pruned"} and summary.exit_code == 0
    rec = read_record(tmp_path / "results" / "tuned" / "runs" / trial.run_id)
    assert rec is not None and rec.status == "pruned" and rec.failure_reason is None
    assert len(rec.history) == 1 and rec.metrics is None
    assert rec.best is not None and rec.best["epoch"] == 1 and rec.best["value"] == rec.history[0].val_acc
    # A pruned trial is finished: running it again changes nothing.
    assert run_sweep(cfg, [trial]).outcomes == {trial.run_id: "skipped"}


@pytest.mark.slow
@pytest.mark.reliability
def test_tune_digits_killed_mid_tuning_resumes_without_repeating_trials(tmp_path: Path) -> None:
    cfg = REPO / "configs" / "tune_digits.yaml"
    args = ("run", str(cfg), "--set", f"output_dir={tmp_path}")
    first = run_cli(*args, env={"ARCHBENCH_FAULT": "kill@trial:3"})
    assert first.returncode == -signal.SIGKILL, first.stdout[-2000:] + first.stderr[-2000:]
    runs = tmp_path / "tune_digits" / "runs"
    finished = {}
    for d in runs.iterdir():
        rec = read_record(d)
        if rec is not None and rec.status in ("completed", "pruned"):
            finished[d.name] = (d / "record.json").read_bytes()
    assert len(finished) == 3  # trials 0-2 of the first cell; trial 3 died after its first epoch
    second = cli(*args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "1 requeued from a dead process" in second.stdout
    for name, before in finished.items():  # finished trials are not repeated
        assert (runs / name / "record.json").read_bytes() == before
    records = [read_record(d) for d in runs.iterdir()]
    assert all(r is not None for r in records)
    trials = [r for r in records if r and r.tune and r.tune["role"] == "trial"]
    finals = [r for r in records if r and r.tune and r.tune["role"] == "final"]
    assert len(finals) == 6 and all(r.metrics is not None for r in finals)
    assert all(r.metrics is None and r.status in ("completed", "pruned") for r in trials)
    resumed = [r for r in trials if r.resumes]
    assert len(resumed) == 1
    assert all(sum(e["event"] == "started" for e in r.events) == 1 + r.resumes for r in trials)
    summary = json.loads((tmp_path / "tune_digits" / "tune" / "summary.json").read_text())
    assert [c["spent"]["trials"] for c in summary["cells"]] == [6, 6] and summary["equal_budget"]
    assert summary["cells"][0]["spent"]["abandoned_and_requeued"] == 1
    report = cli("report", str(tmp_path / "tune_digits"))
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "tune_digits" / "report" / "report.md").read_text()
    assert "## Tuning" in md and "Protocol: each of the 2 compared configurations" in md
    assert (tmp_path / "tune_digits" / "report" / "figures" / "stage_0_tune_figure_0.png").is_file()
    configs = (tmp_path / "tune_digits" / "report" / "tables" / "configurations.csv").read_text()
    assert configs.count("\n") == 3  # header + tiny_cnn + simple_cnn, each from its 3 final runs


class _CountingReporter(SilentReporter):
    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []

    def sweep_started(self, total: int, todo: int) -> None:
        self.started.append((total, todo))


def test_tuned_sweep_first_line_counts_trials_and_final_runs_done(tmp_path: Path) -> None:
    from archbench.tune import run_tuned

    cfg = _cfg(tmp_path, TUNE_SWEEP.replace("trials: 3", "trials: 2").replace("seeds: [0, 1]", "seeds: [0]"))
    first, again = _CountingReporter(), _CountingReporter()
    assert run_tuned(cfg, expand_sweep(cfg), reporter=first).exit_code == 0
    assert first.started == [(3, 3)]  # an empty folder: 2 trials + 1 final run, none done
    run_tuned(cfg, expand_sweep(cfg), reporter=again)
    assert again.started == [(3, 0)]  # every trial and the final run done


def test_trial_pruned_before_its_last_epoch_but_completed_at_it(tmp_path: Path) -> None:
    import optuna

    from archbench.tune import plan
    from archbench.tune.trials import TrialReporter as _TrialReporter

    # A real pruner that prunes at every step it is asked about (val_acc is never above 2).
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    for epochs, status in ((2, "pruned"), (1, "completed")):
        cfg = _cfg(tmp_path, TUNE_SWEEP.replace("epochs: 2", f"epochs: {epochs}"))
        (cell,) = expand_sweep(cfg)
        trial = study.ask()
        planned = plan.trial_run(cell, {"train.lr": 0.05, "train.optimizer": "sgd"}, "s", trial.number)
        rep = _TrialReporter(SilentReporter(), trial, "val_acc", epochs)
        summary = run_sweep(cfg, [planned], reporter=rep)
        rec = read_record(tmp_path / "results" / "tuned" / "runs" / planned.run_id)
        assert rec is not None and rec.status == status, (epochs, summary.outcomes)
        assert len(rec.history) == 1  # epoch 1: pruned when a second epoch was to come, else completed


def test_median_pruner_prunes_nothing_before_epoch_3(tmp_path: Path) -> None:
    from archbench.tune import study as studies

    cfg = _cfg(tmp_path, TUNE_SWEEP.replace("pruner: none", "pruner: median"))
    st = studies.open_study(cfg.tune, tmp_path / "optuna.db", "cell", 0)
    for _ in range(2):  # the startup trials: always finish
        t = st.ask()
        for epoch in range(1, 5):
            t.report(0.9, step=epoch)
        st.tell(t, 0.9)
    worse = st.ask()
    decisions = []
    for epoch in range(1, 5):
        worse.report(0.1, step=epoch)
        decisions.append(worse.should_prune())
    assert decisions == [False, False, True, True]  # epochs 1 and 2 never pruned, as the docs say
    guide = (REPO / "docs" / "guide" / "fair-comparisons-tune-every-architecture.md").read_text()
    assert "nothing is pruned before epoch 3" in guide


def test_tune_parallel_changes_no_run_id_or_spec_hash(tmp_path: Path) -> None:
    """`tune.parallel` is how trials are scheduled, not what they train: cells, trial and final runs keep
    their ids and spec hashes."""
    from archbench.tune import plan

    def ids(text: str) -> list[tuple[str, str]]:
        cfg = _cfg(tmp_path, text)
        (cell,) = expand_sweep(cfg)
        trial = plan.trial_run(cell, {"train.lr": 0.05, "train.optimizer": "sgd"}, "s", 0)
        finals = plan.final_runs(cfg, cell, dict(trial.tune["params"]), "s", 0)  # type: ignore[index]
        return [(r.run_id, r.spec_hash) for r in [cell, trial, *finals]]

    parallel = TUNE_SWEEP.replace("  trials: 3", "  trials: 3\n  parallel: 4")
    assert _cfg(tmp_path, parallel).tune.parallel == 4
    assert ids(parallel) == ids(TUNE_SWEEP)
    with pytest.raises(ConfigError, match="tune.parallel"):
        _cfg(tmp_path, TUNE_SWEEP.replace("  trials: 3", "  trials: 3\n  parallel: 0"))


TWO_CELLS = TUNE_SWEEP.replace("model.name: [tiny_cnn]", "model.name: [tiny_cnn, simple_cnn]")


def _tune_in_steps(cfg: Any, parallel: int) -> dict[str, Any]:
    """run_tuned's steps with `parallel` trials asked ahead (the local executor still trains one at a
    time): the protocol's bookkeeping of trials in flight, without a cluster. Returns summary.json."""
    from archbench.tune.protocol import _Protocol
    from archbench.tune.summary import write_summary

    cells = expand_sweep(cfg)
    p = _Protocol(cfg, cells, None, SilentReporter(), lambda: False)
    p.parallel = parallel
    p.tune_cells()
    finals = p.run_finals()
    assert p.out.exit_code == 0 and not p.asked
    return write_summary(cfg, p.root, cells, p.names, p.opened, finals)


def test_trials_in_flight_spend_the_same_budget_per_cell_whatever_parallel(tmp_path: Path) -> None:
    """Same trials and epochs per compared cell with 1 or 3 trials in flight; running trials count against
    the trial budget and reserve their most epochs against the epoch cap."""
    spent = {}
    for n in (1, 3):
        cfg = _cfg(tmp_path / f"p{n}", TWO_CELLS)
        summary = _tune_in_steps(cfg, n)
        spent[n] = [(c["spent"]["trials"], c["spent"]["epochs"]) for c in summary["cells"]]
        assert summary["equal_budget"]
    assert spent[1] == spent[3] == [(3, 6), (3, 6)]  # 3 trials × 2 epochs each (pruner none)

    from archbench.tune.protocol import _Protocol

    capped = TWO_CELLS.replace("  trials: 3", "  trials: 3\n  epochs: 5")
    cfg = _cfg(tmp_path / "cap", capped)
    p = _Protocol(cfg, expand_sweep(cfg), None, SilentReporter(), lambda: False)
    p.parallel = 8
    asked = p._ask_more()  # nothing trained yet: only what the budgets allow while every trial runs
    per_cell = [sum(1 for r in asked if r.spec.model.name == m) for m in ("tiny_cnn", "simple_cnn")]
    assert per_cell == [2, 2]  # 2 + 2 epochs reserved; a third could make 6 > 5


PRUNING_IN_A_WORKER = """
import json, sys
from archbench.config import TuneSpec
from archbench.tune.study import trial_in_this_process
tune = TuneSpec.model_validate(json.loads(sys.argv[1]))
trial = trial_in_this_process(tune, sys.argv[2], "cell", int(sys.argv[3]))
decisions = []
for epoch in range(1, 5):
    trial.report(0.1, step=epoch)
    decisions.append(bool(trial.should_prune()))
print(json.dumps(decisions))
"""


@pytest.mark.parametrize("storage", ["optuna.db", "studies.journal"])
def test_a_trial_trained_in_another_process_reports_to_the_shared_storage(
    tmp_path: Path, storage: str
) -> None:
    """The process that trains a trial (a Ray worker) opens it from the storage: its epochs reach the
    driver's study, and its pruner reads the other trials' values from the same file."""
    import sqlite3
    import subprocess
    import sys

    from archbench.tune import study as studies

    cfg = _cfg(tmp_path, TUNE_SWEEP.replace("pruner: none", "pruner: median"))
    path = tmp_path / storage
    st = studies.open_study(cfg.tune, path, "cell", 0, concurrent=True)
    for _ in range(2):  # the median pruner's startup trials, finished by the driver
        t = st.ask()
        for epoch in range(1, 5):
            t.report(0.9, step=epoch)
        st.tell(t, 0.9)
    worse = st.ask()
    env = {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    args = [cfg.tune.model_dump_json(), str(path), str(worse.number)]
    r = subprocess.run(
        [sys.executable, "-c", PRUNING_IN_A_WORKER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [False, False, True, True]  # pruned from epoch 3, on the driver's trials
    (frozen,) = [t for t in st.get_trials(deepcopy=False) if t.number == worse.number]
    assert frozen.intermediate_values == {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.1}
    if path.suffix == ".db":
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_dry_run_says_how_many_trials_run_at_once(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    text = textwrap.dedent(TUNE_SWEEP.format(out=tmp_path / "results"))
    sweep.write_text(text.replace("  trials: 3", "  trials: 3\n  parallel: 2"))
    local = cli("run", str(sweep), "--dry-run")
    ray = cli("run", str(sweep), "--dry-run", "--executor", "ray")
    assert local.returncode == ray.returncode == 0, local.stderr + ray.stderr
    assert "one at a time (tune.parallel needs ray)" in local.stdout
    assert "up to 2 at once" in ray.stdout
    assert not (tmp_path / "results").exists()
