"""The Python API (issue 25): `archbench.run`, `plan`, `load_run`, and their typed errors.

Real sweeps on a generated image folder (tiny_cnn, one epoch, in-process); no component is mocked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import archbench
from archbench.api import ExecutorUnavailable, NotARunError, RunsFailed, SweepIncomplete, exit_code
from archbench.sweep.checks import PlanningError
from archbench.util.errors import ArchbenchError, ConfigError
from shipping import image_sweep, make_images, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sweep file, run folder) of one trained run."""
    tmp = tmp_path_factory.mktemp("api")
    sweep = image_sweep(tmp)
    return sweep, train(sweep)


def test_run_trains_and_returns_rows_then_skips(trained: tuple[Path, Path]) -> None:
    sweep, run_dir = trained
    rec = json.loads((run_dir / "record.json").read_text())
    again = archbench.run(sweep)  # the same sweep again: nothing to train
    assert list(again["outcome"]) == ["skipped"] and list(again["status"]) == ["completed"]
    row = again.iloc[0]
    assert row["run_id"] == rec["run_id"] == run_dir.name and Path(row["run_dir"]) == run_dir
    assert row["top1"] == rec["metrics"]["top1"] and row["model"] == "tiny_cnn"
    planned = archbench.plan(sweep)
    assert list(planned["done"]) == [True] and list(planned["spec_hash"]) == [rec["spec_hash"]]


def test_plan_lists_runs_with_axes_and_creates_nothing(tmp_path: Path) -> None:
    sweep = image_sweep(tmp_path)
    frame = archbench.plan(sweep, {"grid.train.lr": [0.01, 0.02]})
    assert list(frame.columns[:2]) == ["run_id", "train.lr"] and list(frame["train.lr"]) == [0.01, 0.02]
    assert list(frame["done"]) == [False, False] and all(len(h) == 64 for h in frame["spec_hash"])
    assert frame.attrs["problems"] == [] and not (tmp_path / "results").exists()
    dry = archbench.run(sweep, overrides=["grid.train.lr=[0.01, 0.02]"], dry_run=True)
    assert list(dry["run_id"]) == list(frame["run_id"]) and not (tmp_path / "results").exists()


def test_planning_problems_raise_before_anything_exists(tmp_path: Path) -> None:
    sweep = image_sweep(tmp_path, root=tmp_path / "absent")
    with pytest.raises(PlanningError) as info:
        archbench.run(sweep)
    assert any("absent" in line for line in info.value.problems) and exit_code(info.value) == 2
    assert not (tmp_path / "results").exists()
    with pytest.warns(UserWarning, match="absent"):
        frame = archbench.plan(sweep)  # as --dry-run: listed, with the problem
    assert len(frame) == 1 and frame.attrs["problems"]


def test_bad_override_and_executor_are_config_errors(tmp_path: Path) -> None:
    sweep = image_sweep(tmp_path)
    with pytest.raises(ConfigError, match="train.nope"):
        archbench.run(sweep, overrides=["train.nope=1"])
    with pytest.raises(ConfigError, match="executor= 'slurm': expected local or ray"):
        archbench.run(sweep, executor="slurm")
    assert issubclass(ExecutorUnavailable, ConfigError) and not (tmp_path / "results").exists()


def test_failed_run_raises_runs_failed_with_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = image_sweep(tmp_path, root=make_images(tmp_path / "images", seed=1))
    monkeypatch.setenv("ARCHBENCH_FAULT", "nan@step:1")  # the loss turns non-finite: the run fails
    with pytest.raises(RunsFailed) as info:
        archbench.run(sweep)
    exc = info.value
    assert isinstance(exc, SweepIncomplete) and exit_code(exc) == exc.exit_code == 1
    assert list(exc.results["status"]) == ["failed"] and list(exc.outcomes.values()) == ["failed"]
    assert exc.results["failure_reason"].iloc[0] in str(exc)


def test_load_run_gives_the_verified_model_and_the_evaluation_preprocessing(
    trained: tuple[Path, Path],
) -> None:
    _, run_dir = trained
    run = archbench.load_run(run_dir)
    assert isinstance(run, archbench.Run) and isinstance(run.model, torch.nn.Module)
    assert not run.model.training and run.classes == ["cat", "dog", "owl"]
    assert list(run.history["epoch"]) == [1] and "val_acc" in run.history
    preds = run.predictions
    assert len(preds["test_ids"]) == 12 and preds["probs"].shape == (12, 3)
    assert run.transform.input_shape == (3, 16, 16) and run.transform.channel_order == ("R", "G", "B")
    # The transform of the raw files reproduces evaluation: the same probabilities for every test image.
    root = Path(run.record.spec.data.root or "")
    x = run.transform([root / name for name in preds["test_ids"]])
    assert x.shape == (12, 3, 16, 16) and x.dtype == torch.float32
    with torch.no_grad():
        probs = torch.softmax(run.model(x), 1).numpy()
    np.testing.assert_array_equal(probs.argmax(1), preds["y_pred"])
    np.testing.assert_allclose(probs, preds["probs"], atol=1e-6)
    np.testing.assert_allclose(run.test_inputs().numpy(), x.numpy(), atol=1e-6)  # the stored test rows
    from PIL import Image

    one = run.transform(Image.open(root / str(preds["test_ids"][0])))
    np.testing.assert_array_equal(one.numpy(), x[:1].numpy())


def test_load_run_refuses_what_is_not_a_usable_run(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = trained
    with pytest.raises(NotARunError, match="no such folder"):
        archbench.load_run(tmp_path / "nowhere")
    with pytest.raises(NotARunError, match="not a run folder"):
        archbench.load_run(run_dir.parent.parent)  # the sweep folder
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    ckpt = copy / "checkpoints" / "best.pt"
    shutil.copyfile(copy / "checkpoints" / "last.pt", ckpt)  # swapped weights
    with pytest.raises(ArchbenchError, match="sha256"):
        archbench.load_run(copy)
    (copy / "record.json").write_text("{}")
    with pytest.raises(NotARunError, match="not a valid run record"):
        archbench.load_run(copy)
