"""The spine end to end on real data: a 2-run digits sweep, records, skip on re-run, ls, resume."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from archbench.engine.evaluate import metrics_from_predictions
from archbench.store.record import SCHEMA_VERSION, read_record
from archbench.store.results import load_results
from conftest import run_cli, tiny_sweep


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    sweep = tiny_sweep(tmp, epochs=3)
    res = run_cli("run", str(sweep), cwd=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp


def test_two_run_sweep_writes_valid_records(finished_sweep: Path) -> None:
    runs = sorted((finished_sweep / "results" / "tiny" / "runs").iterdir())
    assert len(runs) == 2
    for run_dir in runs:
        rec = read_record(run_dir)
        assert rec is not None and rec.status == "completed"
        assert rec.schema_version == SCHEMA_VERSION and rec.run_id == run_dir.name
        assert len(rec.history) == 3 and [h.epoch for h in rec.history] == [1, 2, 3]
        assert rec.metrics is not None and 0.5 < rec.metrics.top1 <= 1.0
        assert rec.class_names == [str(i) for i in range(10)]
        assert rec.data_fingerprint and len(rec.data_fingerprint) == 64
        assert rec.libraries["torch"] == version("torch")  # what ran, not a pinned number
        assert rec.device["type"] == "cpu" and rec.device["amp"] == "off"
        assert rec.checkpoint_sha256 and (run_dir / "checkpoints" / "best.pt").exists()
        assert (run_dir / "history.csv").read_text().startswith("epoch,step,train_loss")
        # Every number in the record can be recomputed from the saved predictions.
        pred = np.load(run_dir / "predictions.npz")
        again = metrics_from_predictions(pred["y_true"], pred["probs"], 10)
        assert again["top1"] == pytest.approx(rec.metrics.top1)
        assert again["f1_macro"] == pytest.approx(rec.metrics.f1_macro)
        assert again["confusion_matrix"] == rec.metrics.confusion_matrix
        assert int(np.sum(rec.metrics.confusion_matrix)) == rec.metrics.n_test == len(pred["y_true"])
    a, b = (read_record(r) for r in runs)
    assert a is not None and b is not None and a.data_fingerprint == b.data_fingerprint


@pytest.mark.reliability
def test_rerun_skips_completed_runs_and_changes_nothing(finished_sweep: Path) -> None:
    runs_dir = finished_sweep / "results" / "tiny" / "runs"
    before = {p: p.read_bytes() for p in runs_dir.rglob("record.json")}
    res = run_cli("run", str(finished_sweep / "sweep.yaml"), cwd=finished_sweep)
    assert res.returncode == 0, res.stderr
    assert "2 skipped" in res.stdout and "trained" not in res.stdout.split("sweep tiny")[-1]
    assert not list(runs_dir.glob("*/record.json.untrusted-*"))  # nothing set aside, nothing retrained
    assert {p: p.read_bytes() for p in runs_dir.rglob("record.json")} == before


@pytest.mark.reliability
def test_changing_one_setting_retrains_exactly_one_run(finished_sweep: Path) -> None:
    sweep = finished_sweep / "sweep.yaml"
    res = run_cli("run", str(sweep), "--set", "grid.train.optimizer=[sgd, adamw]", cwd=finished_sweep)
    assert res.returncode == 0, res.stderr
    assert "1 trained, 1 skipped" in res.stdout


def test_ls_prints_runs_and_writes_results_csv(finished_sweep: Path) -> None:
    sweep_dir = finished_sweep / "results" / "tiny"
    res = run_cli("ls", str(sweep_dir))
    assert res.returncode == 0, res.stderr
    assert "completed" in res.stdout
    csv_text = (sweep_dir / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("run_id,sweep,status")
    df = load_results(sweep_dir)
    assert set(df["status"]) == {"completed"} and df["top1"].between(0, 1).all()


@pytest.mark.reliability
def test_planted_record_with_wrong_hash_is_not_trusted(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    assert run_cli("run", str(sweep), cwd=tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "results" / "tiny" / "runs").iterdir()
    data = json.loads((run_dir / "record.json").read_text())
    data["spec_hash"] = "0" * 64
    data["metrics"]["top1"] = 0.999
    (run_dir / "record.json").write_text(json.dumps(data))
    assert read_record(run_dir) is None
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0 and "1 trained" in res.stdout
    rec = read_record(run_dir)
    assert rec is not None and rec.metrics is not None and rec.metrics.top1 != 0.999
    assert (run_dir / "record.json.untrusted-0").exists()


@pytest.mark.reliability
def test_non_finite_loss_fails_run_and_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1)
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "nan@step:3#adam"})
    assert res.returncode == 1, res.stdout + res.stderr
    recs = [read_record(p) for p in (tmp_path / "results" / "tiny" / "runs").iterdir()]
    by_opt = {r.spec.train.optimizer: r for r in recs if r is not None}
    assert by_opt["adam"].status == "failed" and by_opt["adam"].failure_reason == "non_finite_loss@3"
    assert by_opt["sgd"].status == "completed"
    assert "1 failed" in res.stdout
