"""Spatial k-fold cross-validation (`data.options.split: block_kfold`): the folds' test sets partition the
labelled blocks, training keeps the block split's buffer from the fold's test blocks, the assignment is a
function of split_seed, bad settings stop at planning, and the report aggregates the folds."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archbench.config import DataSpec
from archbench.data.raster import block_mask, load_raster_patches
from archbench.stages.map.score import subset_masks
from archbench.store.record import read_record
from helpers import cli
from test_maps import centre_of, coded, write_scene, write_tif

H = W = 48
BLOCK, PATCH, FOLDS = 12, 5, 4


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48×48 coded bands (every value names its pixel) and three classes in stripes; a corner unlabelled."""
    tmp = tmp_path_factory.mktemp("kfold_scene")
    write_tif(tmp / "bands.tif", coded(H, W, 2), -1)
    r, c = np.mgrid[0:H, 0:W]
    labels = ((r // 5 + c // 7) % 3 + 1).astype(np.uint8)
    labels[:12, :12] = 0  # one block without labelled pixels: never dealt to a fold
    write_tif(tmp / "labels.tif", labels, 0)
    return write_scene(
        tmp / "scene.yaml",
        {
            "name": "kfold",
            "bands": {"file": "bands.tif"},
            "labels": {"file": "labels.tif"},
            "classes": [{"value": v, "name": f"c{v}"} for v in (1, 2, 3)],
        },
    )


def _fold(scene: Path, fold: int, split_seed: int = 0) -> Any:
    opts = {"scene": str(scene), "patch_size": PATCH, "split": "block_kfold", "block_size": BLOCK}
    spec = DataSpec(
        kind="raster_patches", split_seed=split_seed, options={**opts, "folds": FOLDS, "fold": fold}
    )
    return load_raster_patches(spec)


def test_folds_partition_the_labelled_blocks_and_keep_the_buffer(scene: Path) -> None:
    raws = [_fold(scene, i) for i in range(FOLDS)]
    blocks = [set(raw.info["test_blocks"]) for raw in raws]
    assert all(blocks) and sum(map(len, blocks)) == len(set().union(*blocks)) == 15  # disjoint, 16 - 1 empty
    tests = [{centre_of(p) for p in raw.test_x} for raw in raws]
    assert sum(map(len, tests)) == len(set().union(*tests)) == H * W - 12 * 12  # every labelled pixel once
    pixels = raws[0].info["fold_pixels"]
    assert sum(pixels) == H * W - 12 * 12 and max(pixels) - min(pixels) <= BLOCK * BLOCK  # greedy balance
    halo = PATCH // 2
    for i, raw in enumerate(raws):
        assert raw.info["fold_pixels"] == pixels and (raw.info["fold"], raw.info["folds"]) == (i, FOLDS)
        train = np.array([centre_of(p) for p in raw.train_x])
        test = np.array(sorted(tests[i]))
        # Recomputed from the patch centres: every training centre is > 2·halo from every test-block pixel.
        area = np.argwhere(block_mask((H, W), BLOCK, raw.info["test_blocks"]))
        assert np.abs(train[:, None, :] - area[None, :, :]).max(-1).min() > 2 * halo
        audit = raw.info["leakage_audit"]
        euclid = np.sqrt(((train[:, None, :] - test[None, :, :]) ** 2).sum(-1))
        assert audit["min_distance_px"] == pytest.approx(euclid.min()) and audit["min_distance_px"] > 2 * halo
        assert audit["test_within_patch_radius"] == audit["test_patches_overlapping_training_patches"] == 0
        assert (audit["split"], audit["block_size"], audit["buffer_px"]) == ("block_kfold", BLOCK, 2 * halo)
        assert (audit["folds"], audit["fold"]) == (FOLDS, i)
        assert raw.info["split_description"].startswith(f"block_kfold: fold {i} of {FOLDS}")
        # The map scores' test-block subset is this fold's blocks.
        masks = subset_masks(raw.info, same=True)
        assert np.array_equal(masks["test_blocks"], block_mask((H, W), BLOCK, raw.info["test_blocks"]))


def test_fold_assignment_is_a_function_of_split_seed(scene: Path) -> None:
    again = _fold(scene, 1)
    assert again.info["test_blocks"] == _fold(scene, 1).info["test_blocks"]
    assert np.array_equal(again.train_x, _fold(scene, 1).train_x)
    other = [_fold(scene, i, split_seed=7).info["test_blocks"] for i in range(FOLDS)]
    assert sorted(b for f in other for b in f) == sorted(
        b for i in range(FOLDS) for b in _fold(scene, i).info["test_blocks"]
    )
    assert other != [_fold(scene, i).info["test_blocks"] for i in range(FOLDS)]


SWEEP = """
name: kfold
output_dir: {out}
data:
  kind: raster_patches
  options: {{scene: {scene}, patch_size: 5, split: block_kfold, block_size: 12, folds: 3,
             per_class: 12, test_per_class: 8}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, batch_size: 64, threads: 1}}
grid:
  model.name: [tiny_cnn, simple_cnn]
  data.options.fold: [0, 1, 2]
  seed: [0, 1]
"""


def test_report_aggregates_folds_and_seeds_into_one_row_per_model(scene: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.format(out=tmp_path / "results", scene=scene))
    res = cli("run", str(sweep))
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "report"
    res = cli("report", str(tmp_path / "results" / "kfold"), "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    with (out / "tables" / "configurations.csv").open(newline="", encoding="utf-8") as f:
        rows = {r["configuration"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"tiny_cnn", "simple_cnn"}
    for row in rows.values():
        recs = [read_record(tmp_path / "results" / "kfold" / "runs" / rid) for rid in row["runs"].split()]
        assert int(row["n"]) == len(recs) == 3 * 2
        folds = sorted((r.spec.data.options["fold"], r.seed) for r in recs if r is not None)
        assert folds == [(f, s) for f in range(3) for s in range(2)]
        top1 = [100 * r.metrics.top1 for r in recs if r is not None and r.metrics is not None]
        assert float(row["top-1 mean (%)"]) == pytest.approx(np.mean(top1), abs=1e-9)
    assert "k-fold spatial CV: 3 folds" in (out / "report.md").read_text(encoding="utf-8")
    # The two models are compared run by run on the same fold and seed (the same test patches).
    with (out / "tables" / "mcnemar_per_seed.csv").open(newline="", encoding="utf-8") as f:
        pairs = [(r["run A"], r["run B"]) for r in csv.DictReader(f)]
    runs = tmp_path / "results" / "kfold" / "runs"
    replicate = {rid: _fold_and_seed(runs / rid) for row in rows.values() for rid in row["runs"].split()}
    assert len(pairs) == 6 and all(replicate[a] == replicate[b] for a, b in pairs)
    with (out / "tables" / "comparisons.csv").open(newline="", encoding="utf-8") as f:
        (comparison,) = list(csv.DictReader(f))
    folds, seeds = comparison["paired folds"].split(), comparison["paired seeds"].split()
    assert sorted(zip(folds, seeds, strict=True)) == [(str(f), str(s)) for f in range(3) for s in range(2)]


def _fold_and_seed(run_dir: Path) -> tuple[int, int]:
    rec = read_record(run_dir)
    assert rec is not None
    return rec.spec.data.options["fold"], rec.seed


BAD = """
name: bad
output_dir: {out}
data:
  kind: raster_patches
  options: {{scene: {scene}, patch_size: 3, {options}}}
model: {{name: tiny_cnn}}
"""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("split: block_kfold, folds: 1, fold: 0", "data.options.folds"),
        ("split: block_kfold, folds: 3, fold: 3", "data.options.fold: 3 is not a fold of folds: 3"),
        ("split: block, fold: 0", "data.options.fold: only used with split: block_kfold"),
        ("split: random, folds: 3", "data.options.folds: only used with split: block_kfold"),
        ("split: block_kfold", "add the grid axis data.options.fold: [0, 1, 2, 3, 4]"),
    ],
)
def test_bad_fold_settings_stop_at_planning(scene: Path, tmp_path: Path, options: str, message: str) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(BAD.format(out=tmp_path / "results", scene=scene, options=options))
    res = cli("run", str(sweep))
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "results").exists()
