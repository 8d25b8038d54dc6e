"""What a finished run records, end to end on real data (a 2-run digits sweep; an image folder): every
number recomputable from the saved predictions, the tested samples named, the class map; a re-run skips
what is done and retrains exactly what changed; `ls` lists the runs and writes results.csv."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from archbench.engine.evaluate import metrics_from_predictions
from archbench.store.record import SCHEMA_VERSION, read_record
from archbench.store.results import load_results
from conftest import imagefolder_sweep, tiny_sweep
from helpers import cli, only_run
from test_data import make_class_tree


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    sweep = tiny_sweep(tmp, epochs=3)
    res = cli("run", str(sweep), cwd=tmp)
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
    res = cli("run", str(finished_sweep / "sweep.yaml"), cwd=finished_sweep)
    assert res.returncode == 0, res.stderr
    assert "2 skipped" in res.stdout and "trained" not in res.stdout.split("sweep tiny")[-1]
    assert not list(runs_dir.glob("*/record.json.untrusted-*"))  # nothing set aside, nothing retrained
    assert {p: p.read_bytes() for p in runs_dir.rglob("record.json")} == before


@pytest.mark.reliability
def test_changing_one_setting_retrains_exactly_one_run(finished_sweep: Path) -> None:
    sweep = finished_sweep / "sweep.yaml"
    res = cli("run", str(sweep), "--set", "grid.train.optimizer=[sgd, adamw]", cwd=finished_sweep)
    assert res.returncode == 0, res.stderr
    assert "1 trained, 1 skipped" in res.stdout


def test_ls_prints_runs_and_writes_results_csv(finished_sweep: Path) -> None:
    sweep_dir = finished_sweep / "results" / "tiny"
    res = cli("ls", str(sweep_dir))
    assert res.returncode == 0, res.stderr
    assert "completed" in res.stdout
    csv_text = (sweep_dir / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("run_id,sweep,status")
    df = load_results(sweep_dir)
    assert set(df["status"]) == {"completed"} and df["top1"].between(0, 1).all()


@pytest.mark.reliability
def test_predictions_name_the_test_samples(finished_sweep: Path) -> None:
    """predictions.npz says which source rows were tested (the plan's, not an RNG replay) and their names."""
    from archbench.config import DataSpec
    from archbench.data.registry import plan_dataset

    run = next((finished_sweep / "results" / "tiny" / "runs").iterdir())
    rec = json.loads((run / "record.json").read_text())
    pred = np.load(run / "predictions.npz")
    planned = plan_dataset(DataSpec.model_validate(rec["spec"]["data"])).splits["test"]
    assert str(pred["test_source"]) == planned.prefix
    assert np.array_equal(pred["test_index"], planned.index)
    assert np.array_equal(pred["y_true"], planned.y)
    assert list(pred["test_ids"]) == [f"{planned.prefix}:{i}" for i in planned.index]
    assert str(pred["data_fingerprint"]) == rec["data_fingerprint"]
    assert pred["logits"].shape == pred["probs"].shape


@pytest.mark.reliability
def test_imagefolder_sweep_end_to_end_records_class_map(tmp_path: Path) -> None:
    """RELIABILITY.md case 17: hidden folders never become classes; the class map is in the record."""
    make_class_tree(tmp_path / "imgs" / "train", ["cat", "dog", "eel"], 12, size=(12, 12))
    make_class_tree(tmp_path / "imgs" / "test", ["cat", "dog", "eel"], 4, size=(12, 12))
    (tmp_path / "imgs" / "train" / ".ipynb_checkpoints").mkdir()
    res = cli("run", str(imagefolder_sweep(tmp_path, tmp_path / "imgs")), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(only_run(tmp_path / "results"))
    assert rec is not None and rec.data is not None
    assert rec.class_names == ["cat", "dog", "eel"]
    assert rec.data["info"]["class_to_idx"] == {"cat": 0, "dog": 1, "eel": 2}
    assert rec.metrics is not None and rec.metrics.n_test == 12
