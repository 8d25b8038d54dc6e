"""The strong recipe's batched augmentations (issue 27): determinism, what each does, the raster refusal,
a full digits run with all of them and exact resume with them on."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from archbench.config import AugmentSpec, DataSpec
from archbench.data.factory import create_dataset
from archbench.engine.augment import BatchMaker, DeviceSplit
from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli
from helpers import cli
from test_recipes_train import only_run, recipe_sweep, refused_at_planning

REPO = Path(__file__).resolve().parents[1]
STRONG = (
    "{crop_padding: 1, hflip: true, vflip: true, rot90: true, random_resized_crop: {scale: [0.5, 1.0]}, "
    "trivial_augment: true, randaugment: {num_ops: 2, magnitude: 9}, mixup: 0.8, cutmix: 1.0, "
    "random_erasing: 0.25}"
)


def _batch(aug: AugmentSpec, seed: int = 0, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    bundle = create_dataset(DataSpec(kind="digits"))
    maker = BatchMaker(bundle, torch.device("cpu"), 16, aug, label_smoothing=smoothing)
    split = DeviceSplit(bundle.train, "cpu")
    draws = maker.draw(len(split), torch.Generator().manual_seed(seed), 32)
    return maker.train_batch(split, torch.arange(32), {k: v[..., :32] for k, v in draws.items()})


def test_every_op_is_deterministic_from_the_generator() -> None:
    aug = AugmentSpec.model_validate(__import__("yaml").safe_load(STRONG))
    x1, y1 = _batch(aug)
    x2, y2 = _batch(aug)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (32, 1, 16, 16) and torch.isfinite(x1).all()
    assert not torch.equal(x1, _batch(aug, seed=1)[0])


def test_mixup_targets_fold_label_smoothing_like_timm() -> None:
    """Soft targets sum to one; with smoothing 0.1 over 10 classes no entry is below 0.01 (off value)."""
    _, y = _batch(AugmentSpec(mixup=1.0), smoothing=0.1)
    assert y.shape == (32, 10) and torch.allclose(y.sum(1), torch.ones(32))
    assert float(y.min()) >= 0.01 - 1e-6 and float(y.max()) <= 0.91 + 1e-6
    _, y_cut = _batch(AugmentSpec(cutmix=1.0))
    assert torch.allclose(y_cut.sum(1), torch.ones(32))


def test_random_erasing_sets_a_rectangle_to_the_mean() -> None:
    plain, _ = _batch(AugmentSpec(vflip=True))  # same draws before erasing's own
    erased, _ = _batch(AugmentSpec(vflip=True, random_erasing=1.0))
    changed = (plain != erased).flatten(1).any(1)
    assert changed.float().mean() > 0.5 and (erased[plain != erased] == 0).all()


def test_colour_op_on_a_raster_is_refused_at_planning(tmp_path: Path) -> None:
    key = "data.augment.trivial_augment"
    lines = refused_at_planning(tmp_path, "landcover_nc.yaml", key, f"{key}=true")
    assert len(lines) == 1 and "multispectral" in lines[0]


def test_strong_digits_run_records_every_setting(tmp_path: Path) -> None:
    sweep = recipe_sweep(tmp_path, "label_smoothing: 0.1, ema: {decay: 0.9}", augment=STRONG, epochs=2)
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(only_run(tmp_path))
    assert rec is not None and rec.status == "completed" and rec.metrics is not None
    aug = rec.spec.data.augment
    assert aug.trivial_augment and aug.mixup == 0.8 and aug.cutmix == 1.0 and aug.random_erasing == 0.25
    assert aug.random_resized_crop is not None and aug.random_resized_crop.scale == (0.5, 1.0)


@pytest.mark.reliability
def test_sigkill_mid_epoch_with_strong_augment_resumes_bitwise(tmp_path: Path) -> None:
    digests = []
    for name, fault in (("ref", None), ("killed", "kill@step:30")):
        tmp = tmp_path / name
        tmp.mkdir()
        sweep = recipe_sweep(tmp, "ema: {decay: 0.9}", augment=STRONG, epochs=2)
        if fault:
            res = run_cli("run", str(sweep), cwd=tmp, env={"ARCHBENCH_FAULT": fault})
            assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
        # The resume after a SIGKILL in a process of its own; the reference in this one.
        assert (run_cli if fault else cli)("run", str(sweep), cwd=tmp).returncode == 0
        digests.append(state_digest(load_checkpoint(only_run(tmp) / "checkpoints" / "last.pt")["model"]))
    assert digests[0] == digests[1]
