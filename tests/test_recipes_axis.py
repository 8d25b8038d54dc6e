"""Named recipes (issue 27): presets a sweep names or varies as a grid axis."""

from __future__ import annotations

from pathlib import Path

from archbench.config.recipe import recipe_names
from archbench.store.record import read_record
from archbench.sweep.expand import expand_sweep, load_sweep_text
from helpers import cli
from test_recipes_train import only_run, recipe_sweep

GRID = """
name: g
data: {kind: digits, augment: {crop_padding: 2}}
train: {epochs: 1, ema: {decay: 0.5}}
grid: {recipe: [basic, strong], train.label_smoothing: [0.2]}
"""


def test_recipe_axis_sets_augment_and_train_keys_then_other_axes_apply() -> None:
    assert {"basic", "strong"} <= set(recipe_names())
    basic, strong = expand_sweep(load_sweep_text(GRID))
    assert basic.axes["recipe"] == "basic" and basic.spec.recipe == "basic"
    assert basic.spec.data.augment.crop_padding == 4 and basic.spec.data.augment.hflip  # replaced whole
    assert basic.spec.train.ema is not None and basic.spec.train.ema.decay == 0.5  # basic leaves train
    aug = strong.spec.data.augment
    assert aug.trivial_augment and aug.mixup > 0 and aug.crop_padding == 0
    assert strong.spec.train.ema is not None and strong.spec.train.ema.decay == 0.999
    assert strong.spec.train.label_smoothing == 0.2  # the grid's own axis wins over the recipe
    assert basic.run_id != strong.run_id and "basic" in basic.run_id


def test_unknown_recipe_is_one_line_exit_2(tmp_path: Path) -> None:
    sweep = recipe_sweep(tmp_path, "", extra="recipe: fancy\n")
    res = cli("run", str(sweep), "--dry-run", cwd=tmp_path)
    assert res.returncode == 2 and "unknown recipe 'fancy' (known: basic, strong)" in res.stderr


def test_strong_recipe_trains_on_digits(tmp_path: Path) -> None:
    sweep = recipe_sweep(tmp_path, "", epochs=1, extra="recipe: strong\n")
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(only_run(tmp_path))
    assert rec is not None and rec.status == "completed" and rec.spec.recipe == "strong"
    assert "ema_val_acc" in (rec.history[0].model_extra or {})
