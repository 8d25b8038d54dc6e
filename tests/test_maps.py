"""Land-cover maps (issue #6): raster patches, windowed prediction, map GeoTIFFs, scores, the `map` step.

Small GeoTIFFs are written by the tests with rasterio; band 0 of the synthetic scenes holds row*100+col,
so every patch says which pixel it is centred on. The North Carolina tests use the real scene in
../shared/data and skip with a reason when it is absent.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from archbench.config import DataSpec
from archbench.data import create_dataset
from archbench.data.raster import load_raster_patches, unpack_mask
from archbench.data.scene import UNLABELLED, SceneReader, open_scene
from archbench.stages.map.predict import assemble, predict_windows, write_map
from archbench.stages.map.score import scores_from_confusion
from archbench.store.record import read_record
from archbench.util.errors import ConfigError, DatasetError
from helpers import cli

REPO = Path(__file__).resolve().parents[1]
NC = Path(__file__).resolve().parents[2] / "shared" / "data" / "landsat7_north_carolina_landcover"
CRS = "EPSG:32119"
TRANSFORM = from_origin(630000.0, 230000.0, 30.0, 30.0)


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None, transform: Any = TRANSFORM) -> Path:
    arr = data[None] if data.ndim == 2 else data
    with rasterio.open(
        path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
        dtype=arr.dtype, crs=CRS, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(arr)
    return path


def coded(h: int, w: int, bands: int) -> np.ndarray:
    """Band b at (r, c) = b*10000 + r*100 + c: every value names its pixel."""
    r, c = np.mgrid[0:h, 0:w]
    return np.stack([b * 10000 + r * 100 + c for b in range(bands)]).astype(np.float32)


def write_scene(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def centre_of(patch: np.ndarray) -> tuple[int, int]:
    v = int(patch[0, patch.shape[1] // 2, patch.shape[2] // 2])
    return v // 100, v % 100


def raw_window(values: np.ndarray, valid: np.ndarray, r: int, c: int, p: int) -> np.ndarray:
    """The hand-computed patch: NaN off the grid and where the band is nodata."""
    h = p // 2
    out = np.full((values.shape[0], p, p), np.nan, dtype=np.float32)
    for i in range(p):
        for j in range(p):
            rr, cc = r - h + i, c - h + j
            if 0 <= rr < values.shape[1] and 0 <= cc < values.shape[2]:
                out[:, i, j] = np.where(valid[:, rr, cc], values[:, rr, cc], np.nan)
    return out


# --- patch extraction ----------------------------------------------------------------------------------


@pytest.fixture
def sparse_scene(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, dict[tuple[int, int], int]]:
    """Three single-band files (one with a nodata pixel) and a sparse uint8 label raster."""
    h, w = 12, 14
    values = coded(h, w, 3)
    valid = np.ones_like(values, dtype=bool)
    valid[1, 4, 6] = False  # band 1 nodata at (4, 6)
    for b in range(3):
        write_tif(tmp_path / f"b{b}.tif", np.where(valid[b], values[b], -9999).astype(np.float32), -9999)
    labels = {
        (0, 0): 1,
        (4, 5): 2,
        (4, 6): 1,
        (6, 7): 1,
        (11, 13): 2,
        (8, 2): 2,
        (2, 10): 1,
        (9, 9): 2,
        (5, 1): 1,
    }
    lab = np.zeros((h, w), np.uint8)
    for (r, c), v in labels.items():
        lab[r, c] = v
    write_tif(tmp_path / "labels.tif", lab, 0)
    scene = write_scene(
        tmp_path / "scene.yaml",
        {
            "name": "sparse",
            "bands": [{"file": f"b{b}.tif"} for b in range(3)],
            "labels": {"file": "labels.tif"},
            "classes": [{"value": 1, "name": "one", "color": "#ff0000"}, {"value": 2, "name": "two"}],
        },
    )
    return scene, values, valid, labels


def test_patches_equal_hand_computed_windows_with_nodata_and_sparse_labels(sparse_scene: Any) -> None:
    scene, values, valid, labels = sparse_scene
    spec = DataSpec(
        kind="raster_patches",
        test_fraction=0.25,
        options={"scene": str(scene), "patch_size": 3, "split": "random"},
    )
    raw = load_raster_patches(spec)
    assert raw.test_x is not None and raw.test_y is not None
    train = [centre_of(p) for p in raw.train_x]
    test = [centre_of(p) for p in raw.test_x]
    # (4, 6) is labelled but band 1 is nodata there: never a centre.
    assert sorted(train + test) == sorted(k for k in labels if k != (4, 6))
    assert len(test) == 2 and not set(train) & set(test)
    fill = np.asarray(raw.info["fill_values"], np.float32)
    pool = np.stack([raw_window(values, valid, r, c, 3) for r, c in train])
    assert np.allclose(fill, np.nanmean(pool, axis=(0, 2, 3)), rtol=1e-6)
    for x, y, centres in ((raw.train_x, raw.train_y, train), (raw.test_x, raw.test_y, test)):
        for patch, label, (r, c) in zip(x, y, centres, strict=True):
            want = raw_window(values, valid, r, c, 3)
            want = np.where(np.isnan(want), fill[:, None, None], want)
            np.testing.assert_array_equal(patch, want)
            assert label == labels[(r, c)] - 1
    # The nodata neighbour of (4, 5) and the off-grid corner of (0, 0) are filled, not raw nodata.
    by_centre = dict(zip(train + test, list(raw.train_x) + list(raw.test_x), strict=True))
    assert by_centre[(4, 5)][1, 1, 2] == fill[1] and by_centre[(0, 0)][0, 0, 0] == fill[0]
    mask = unpack_mask(raw.info["train_pixels"])
    assert sorted(zip(*np.nonzero(mask), strict=True)) == sorted(train)
    assert raw.info["split"] == "random" and "overlap" in raw.info["split_description"]


def test_block_split_keeps_training_patches_off_test_patches(tmp_path: Path) -> None:
    h = w = 48
    write_tif(tmp_path / "bands.tif", coded(h, w, 2), -1)
    r, c = np.mgrid[0:h, 0:w]
    write_tif(tmp_path / "labels.tif", ((r // 5 + c // 7) % 3 + 1).astype(np.uint8), 0)
    scene = write_scene(
        tmp_path / "scene.yaml",
        {
            "name": "blocks",
            "bands": {"file": "bands.tif"},
            "labels": {"file": "labels.tif"},
            "classes": [{"value": v, "name": f"c{v}"} for v in (1, 2, 3)],
        },
    )
    patch = 5
    spec = DataSpec(
        kind="raster_patches",
        test_fraction=0.25,
        options={"scene": str(scene), "patch_size": patch, "split": "block", "block_size": 12},
    )
    raw = load_raster_patches(spec)
    assert raw.test_x is not None
    train = np.array([centre_of(p) for p in raw.train_x])
    test = np.array([centre_of(p) for p in raw.test_x])
    assert len(train) > 100 and len(test) > 100
    # Two patches overlap iff their centres are within patch-1 pixels in both directions.
    cheb = np.abs(train[:, None, :] - test[None, :, :]).max(-1)
    assert cheb.min() > patch - 1
    assert sorted(map(tuple, np.argwhere(unpack_mask(raw.info["test_pixels"])))) == sorted(map(tuple, test))
    assert raw.info["split"] == "block" and raw.info["test_blocks"]
    # The record's leakage audit states what was achieved, recomputed here by brute force (30 m pixels).
    audit = raw.info["leakage_audit"]
    euclid = np.sqrt(((train[:, None, :] - test[None, :, :]) ** 2).sum(-1))
    assert audit["min_distance_px"] == pytest.approx(euclid.min()) and audit["min_distance_px"] > 2 * (
        patch // 2
    )
    assert (
        audit["min_distance_map_units"] == pytest.approx(30.0 * euclid.min())
        and audit["map_units"] == "metre"
    )
    assert audit["test_within_patch_radius"] == audit["test_patches_overlapping_training_patches"] == 0
    assert (audit["split"], audit["block_size"], audit["buffer_px"]) == ("block", 12, 4)
    # The same scene split at random: test centres sit next to training centres, and the audit counts them.
    spec = spec.model_copy(update={"options": {**spec.options, "split": "random"}})
    rand = load_raster_patches(spec)
    ra = rand.info["leakage_audit"]
    train = np.array([centre_of(p) for p in rand.train_x])
    test = np.array([centre_of(p) for p in rand.test_x])
    cheb = np.abs(train[:, None, :] - test[None, :, :]).max(-1).min(0)
    assert ra["test_within_patch_radius"] == int((cheb <= patch // 2).sum()) > 0 and ra["buffer_px"] == 0
    assert ra["min_distance_px"] == pytest.approx(1.0)


# --- windowed prediction and the map GeoTIFF -----------------------------------------------------------


def _fingerprint_classifier(x: np.ndarray) -> np.ndarray:
    """Exact function of every value in the patch (float64), so any seam or shifted pixel shows."""
    weights = np.arange(1, x[0].size + 1, dtype=np.float64).reshape(x.shape[1:])
    return np.asarray(np.floor((x.astype(np.float64) * weights).sum((1, 2, 3))) % 3, dtype=np.int64)


@pytest.fixture
def noisy_scene(tmp_path: Path) -> Path:
    return write_noisy_scene(tmp_path)


def write_noisy_scene(folder: Path) -> Path:
    """A 23×29 three-band scene of noise with a nodata hole, every pixel labelled with one of 3 classes."""
    rng = np.random.default_rng(0)
    h, w = 23, 29
    bands = rng.normal(100, 20, (3, h, w)).astype(np.float32)
    bands[1, 5:8, 10:13] = -9999  # a small nodata hole
    write_tif(folder / "bands.tif", bands, -9999)
    write_tif(folder / "labels.tif", rng.integers(1, 4, (h, w)).astype(np.uint8), 0)
    return write_scene(
        folder / "scene.yaml",
        {
            "name": "noisy",
            "bands": {"file": "bands.tif", "names": ["a", "b", "c"]},
            "labels": {"file": "labels.tif"},
            "classes": [
                {"value": 1, "name": "one", "color": "#ff0000"},
                {"value": 2, "name": "two", "color": "#00ff00"},
                {"value": 3, "name": "three", "color": "#0000ff"},
            ],
        },
    )


def test_windowed_prediction_equals_whole_scene_pixel_for_pixel(noisy_scene: Path) -> None:
    import torch

    from archbench.config import ModelSpec
    from archbench.models import create_model

    scene = open_scene(noisy_scene)
    patch, fill = 5, np.array([100.0, 100.0, 100.0], np.float32)
    torch.manual_seed(0)
    net = create_model(ModelSpec(name="tiny_cnn"), in_chans=3, num_classes=3).eval()

    def tiny(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy((x - 100.0) / 20.0)).argmax(1).numpy()

    with SceneReader(scene) as reader:
        values = reader.read_bands(0, 0, 23, 29)
        for classify in (_fingerprint_classifier, tiny):
            whole = assemble(
                predict_windows(reader, classify, patch, fill, window=64, batch_size=4096), scene.grid
            )
            tiled = assemble(
                predict_windows(reader, classify, patch, fill, window=7, batch_size=37), scene.grid
            )
            np.testing.assert_array_equal(tiled, whole)
        # And both equal patches cut by hand from the whole scene.
        valid = np.isfinite(values)
        rows, cols = np.nonzero(valid.all(0))
        by_hand = np.stack(
            [raw_window(values, valid, int(r), int(c), patch) for r, c in zip(rows, cols, strict=True)]
        )
        by_hand = np.where(np.isnan(by_hand), fill[None, :, None, None], by_hand)
        whole = assemble(predict_windows(reader, _fingerprint_classifier, patch, fill, window=64), scene.grid)
        np.testing.assert_array_equal(whole[rows, cols], _fingerprint_classifier(by_hand))
        assert (whole[5:8, 10:13] == UNLABELLED).all() and (whole[valid.all(0)] != UNLABELLED).all()


def test_map_geotiff_keeps_crs_transform_colours_and_tags(noisy_scene: Path, tmp_path: Path) -> None:
    scene = open_scene(noisy_scene)
    out = tmp_path / "map.tif"
    with SceneReader(scene) as reader:
        windows = predict_windows(reader, _fingerprint_classifier, 3, np.zeros(3, np.float32), window=8)
        n = write_map(
            out,
            scene.grid,
            windows,
            scene.class_values,
            scene.colors,
            {"run_id": "r1", "checkpoint_sha256": "ab"},
        )
    with rasterio.open(out) as m, rasterio.open(scene.labels.path) as lab:
        assert m.crs == lab.crs and m.transform == lab.transform and m.shape == lab.shape
        assert m.dtypes == ("uint8",) and m.nodata == 0
        cmap = m.colormap(1)
        assert cmap[1] == (255, 0, 0, 255) and cmap[3] == (0, 0, 255, 255)
        assert m.tags()["run_id"] == "r1" and m.tags()["checkpoint_sha256"] == "ab"
        # A Cloud-Optimized GeoTIFF: 512-px tiles, lossless compression, internal overviews.
        assert m.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and m.profile["tiled"]
        assert m.block_shapes == [(512, 512)] and m.compression.name.lower() == "deflate"
        assert m.overviews(1) == [2] and m.descriptions == ("land-cover class value",)
        a = m.read(1)
        assert set(np.unique(m.read(1, out_shape=(12, 15)))) <= {0, 1, 2, 3}  # overviews keep class values
    assert n == int((a != 0).sum()) == 23 * 29 - 9
    assert (a[5:8, 10:13] == 0).all() and set(np.unique(a[a != 0])) <= {1, 2, 3}
    from rio_cogeo.cogeo import cog_validate  # in the dev extra: the COG checker of record

    valid, errors, _ = cog_validate(str(out))
    assert valid, errors


def test_scores_match_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    p[:300] = y[:300]
    s = scores_from_confusion(confusion_matrix(y, p, labels=range(4)))
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=range(4), zero_division=0)
    assert s["overall_accuracy"] == pytest.approx((y == p).mean())
    assert s["kappa"] == pytest.approx(cohen_kappa_score(y, p))
    assert s["producers_accuracy"] == pytest.approx(list(rec)) and s["users_accuracy"] == pytest.approx(
        list(prec)
    )
    assert s["f1"] == pytest.approx(list(f1)) and s["n_pixels"] == 500


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.reliability
def test_nodata_block_is_masked_and_every_batch_is_finite(tmp_path: Path) -> None:
    import torch

    from archbench.config import AugmentSpec
    from archbench.engine.augment import BatchMaker, DeviceSplit

    h, w = 32, 32
    bands = coded(h, w, 3).astype(np.int16)
    bands[2, 8:16, 10:21] = -1  # a nodata block in band 2 of one multiband int16 file
    write_tif(tmp_path / "stack.tif", bands, -1)
    r, c = np.mgrid[0:h, 0:w]
    write_tif(tmp_path / "labels.tif", ((r // 4 + c // 4) % 2 + 1).astype(np.uint8), 0)
    scene = write_scene(
        tmp_path / "scene.yaml",
        {
            "name": "holes",
            "bands": {"file": "stack.tif"},
            "labels": {"file": "labels.tif"},
            "classes": [{"value": 1, "name": "a"}, {"value": 2, "name": "b"}],
        },
    )
    spec = DataSpec(kind="raster_patches", options={"scene": str(scene), "patch_size": 7, "split": "random"})
    bundle = create_dataset(spec)
    for split in (bundle.train, bundle.val, bundle.test):
        assert np.isfinite(split.x).all()
        for x in split.x:
            rr, cc = centre_of(x)
            assert not (8 <= rr < 16 and 10 <= cc < 21)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == h * w - 8 * 11
    maker = BatchMaker(bundle, torch.device("cpu"), None, AugmentSpec(crop_padding=2, hflip=True))
    dev = DeviceSplit(bundle.train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for start in range(0, len(dev), 256):
        assert torch.isfinite(maker.eval_batch(dev, start, start + 256)[0]).all()
        assert torch.isfinite(
            maker.train_batch(dev, torch.arange(start, min(start + 256, len(dev))), gen)[0]
        ).all()
    with SceneReader(open_scene(scene)) as reader:
        fill = np.asarray(bundle.info["fill_values"], np.float32)
        got = assemble(
            predict_windows(reader, _fingerprint_classifier, 7, fill, window=16), open_scene(scene).grid
        )
    assert (got[8:16, 10:21] == UNLABELLED).sum() == 88 and (got != UNLABELLED).sum() == h * w - 88


@pytest.mark.reliability
def test_truncated_geotiff_names_the_file(sparse_scene: Any) -> None:
    scene, *_ = sparse_scene
    big = scene.parent / "b1.tif"
    write_tif(big, coded(12, 14, 1), -9999)
    data = big.read_bytes()
    big.write_bytes(data[: len(data) // 2])
    spec = DataSpec(kind="raster_patches", options={"scene": str(scene), "patch_size": 3, "split": "random"})
    with pytest.raises(DatasetError, match="b1.tif"):
        create_dataset(spec)


@pytest.mark.reliability
def test_bad_options_and_band_count_are_config_errors(sparse_scene: Any) -> None:
    scene, *_ = sparse_scene
    with pytest.raises(ConfigError, match=r"in_chans=4 but scene .* has 3 band"):
        create_dataset(DataSpec(kind="raster_patches", options={"scene": str(scene), "in_chans": 4}))
    with pytest.raises(ConfigError, match=r"data.options.patch_sise: unknown option"):
        create_dataset(DataSpec(kind="raster_patches", options={"scene": str(scene), "patch_sise": 3}))
    with pytest.raises(ConfigError, match=r"data.options.patch_size: .*odd"):
        create_dataset(DataSpec(kind="raster_patches", options={"scene": str(scene), "patch_size": 4}))
    bad = write_scene(scene.parent / "bad.yaml", {**yaml.safe_load(scene.read_text()), "bandz": []})
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: bandz: unknown key"):
        open_scene(bad)


def test_scene_file_errors_carry_file_and_line(sparse_scene: Any) -> None:
    scene, *_ = sparse_scene
    text = (
        "name: s\n"
        "bands:\n"
        "  - {file: b0.tif}\n"
        "  - {file: b1.tif, bnd: 1}\n"  # line 4: misspelled key
        "labels: {file: labels.tif}\n"
        "classes: [{value: 1, name: one}, {value: 2, name: two}]\n"
    )
    (scene.parent / "typo.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"typo.yaml:4: bands\[1\].bnd: unknown key") as info:
        open_scene(scene.parent / "typo.yaml")
    assert "MultiBandSpec" not in str(info.value) and "list[" not in str(info.value)
    # A missing band file, and a multiband index out of range, name the scene file's line too.
    (scene.parent / "gone.yaml").write_text(text.replace("b1.tif, bnd: 1", "nope.tif"))
    with pytest.raises(DatasetError, match=r"gone.yaml:4: .*nope.tif: file not found"):
        open_scene(scene.parent / "gone.yaml")
    write_tif(scene.parent / "multi.tif", coded(12, 14, 3), -9999)
    multi = (
        "name: m\n"
        "bands:\n"
        "  file: multi.tif\n"
        "  indexes: [1, 2, 5]\n"  # line 4: the file has 3 bands
        "  names: [blue, green, red]\n"
        "  nodata: -9999\n"
        "labels: {file: labels.tif}\n"
        "classes: [{value: 1, name: one}, {value: 2, name: two}]\n"
    )
    (scene.parent / "multi.yaml").write_text(multi)
    with pytest.raises(ConfigError, match=r"multi.yaml:4: bands.indexes \[5\] not in 1..3"):
        open_scene(scene.parent / "multi.yaml")
    (scene.parent / "multi.yaml").write_text(multi.replace("[1, 2, 5]", "[1, 2, 3]"))
    assert [b.name for b in open_scene(scene.parent / "multi.yaml").bands] == ["blue", "green", "red"]


@pytest.mark.reliability
def test_wrong_band_count_fails_the_run_before_training(sparse_scene: Any, tmp_path: Path) -> None:
    scene, *_ = sparse_scene
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(f"""
        name: bands
        output_dir: {tmp_path / "results"}
        data:
          kind: raster_patches
          options: {{scene: {scene}, patch_size: 3, split: random, in_chans: 4}}
        train: {{epochs: 1, threads: 1}}
        """)
    )
    from archbench.execution.driver import run_sweep
    from archbench.sweep.expand import expand_sweep, load_sweep

    cfg = load_sweep(sweep)
    summary = run_sweep(cfg, expand_sweep(cfg))  # the runner's own path, in-process (no CLI start-up)
    (run_dir,) = list((tmp_path / "results" / "bands" / "runs").iterdir())
    rec = read_record(run_dir)
    assert summary.exit_code == 1 and rec is not None and rec.status == "failed"
    assert rec.failure_reason == "ConfigError" and rec.history == []
    assert "in_chans=4" in (rec.failure_detail or "") and "3 band" in (rec.failure_detail or "")
    assert not list(run_dir.rglob("*.pt"))  # nothing trained


@pytest.mark.reliability
def test_wrong_band_count_is_a_config_error_before_anything_exists(sparse_scene: Any, tmp_path: Path) -> None:
    """Planning reads the scene's headers: the CLI exits 2 and creates no folder (RELIABILITY.md case 14)."""
    scene, *_ = sparse_scene
    out = tmp_path / "results"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"name: bands\noutput_dir: {out}\ndata:\n  kind: raster_patches\n"
        f"  options: {{scene: {scene}, patch_size: 3, split: random, in_chans: 4}}\n"
    )
    res = cli("run", str(sweep))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "in_chans=4" in res.stderr and not out.exists()


# --- the map stage in a sweep and from the command line ------------------------------------------------

MAPPED_SWEEP = """
name: mapped
output_dir: {out}
data:
  kind: raster_patches
  options: {{scene: {scene}, patch_size: 3, split: random, per_class: 15, test_per_class: 15}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, batch_size: 64}}
grid:
  seed: [0, 1]
map: {{threads: 1}}
"""


@pytest.fixture(scope="module")
def mapped_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two tiny raster runs trained and mapped by one in-process sweep, the map stage on 1 thread while
    the runs train with the process's own thread count (train.threads unset)."""
    import torch

    from archbench.execution.driver import run_sweep
    from archbench.sweep.expand import expand_sweep, load_sweep

    tmp = tmp_path_factory.mktemp("mapped")
    scene = write_noisy_scene(tmp)
    sweep_file = tmp / "sweep.yaml"
    sweep_file.write_text(MAPPED_SWEEP.format(out=tmp / "results", scene=scene))
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the process's setting: distinct from the map stage's 1
    try:
        cfg = load_sweep(sweep_file)
        runs = expand_sweep(cfg)
        summary = run_sweep(cfg, runs)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    sweep = tmp / "results" / "mapped"
    records = [read_record(sweep / "runs" / r.run_id) for r in runs]
    return {"tmp": tmp, "scene": scene, "sweep": sweep, "exit": summary.exit_code, "records": records,
            "threads_after": after}  # fmt: skip


def test_a_map_stage_then_training_in_one_process_trains_with_the_configured_threads(
    mapped_sweep: dict[str, Any],
) -> None:
    assert mapped_sweep["exit"] == 0
    first, second = mapped_sweep["records"]
    assert first.stages["map"]["prediction"]["threads"] == 1  # the stage ran on its own setting...
    assert first.device["threads"] == 2
    assert second.device["threads"] == 2  # ...and the next run trained with the process's, not the map's
    assert mapped_sweep["threads_after"] == 2


def test_device_rule_stage_setting_then_caller_then_run(mapped_sweep: dict[str, Any]) -> None:
    import torch

    from archbench.config import MapSpec
    from archbench.stages.base import StageContext, stage_device
    from archbench.stages.map import MapSettings

    rec = mapped_sweep["records"][0]
    run_dir = mapped_sweep["sweep"] / "runs" / rec.run_id
    meta = torch.device("meta")  # stands for "a device the caller resolved", distinct from the CPU
    given = StageContext(run_dir, rec, MapSettings(MapSpec(device="cpu")), device=meta)
    assert stage_device(given) == torch.device("cpu")  # the stage's own setting wins
    assert stage_device(StageContext(run_dir, rec, MapSettings(), device=meta)) == meta
    assert stage_device(StageContext(run_dir, rec, MapSettings())).type == "cpu"  # train.device auto, here


def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from archbench.cli.app import app

    return CliRunner().invoke(app, list(args))


def _table_rows(output: str) -> list[str]:
    return [line.split("│")[1].strip() for line in output.splitlines() if line.count("│") > 2]


def test_rerun_of_map_rf_keeps_the_random_forest_row(mapped_sweep: dict[str, Any]) -> None:
    sweep = mapped_sweep["sweep"]
    first = _invoke("map", str(sweep), "--rf", "--rf-trees", "5")
    assert first.exit_code == 0, first.output
    again = _invoke("map", str(sweep), "--rf", "--rf-trees", "5")
    assert again.exit_code == 0, again.output
    assert [line.split()[0] for line in again.output.splitlines()[:2]] == ["skipped", "skipped"]  # up to date
    run_ids = sorted(r.run_id for r in mapped_sweep["records"])
    assert (
        sorted(_table_rows(first.output)) == sorted(_table_rows(again.output)) == [*run_ids, "random_forest"]
    )


def test_map_outputs_carry_intervals_paired_tests_and_areas(mapped_sweep: dict[str, Any]) -> None:
    """The sweep's map folder: bootstrap intervals, McNemar (Holm) against the forest in words, and
    error-adjusted areas; the paired counts recomputed here from the GeoTIFFs and the label raster."""
    import csv

    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    sweep = mapped_sweep["sweep"]
    assert _invoke("map", str(sweep), "--rf", "--rf-trees", "5").exit_code == 0
    out = sweep / "stages" / "map"
    index = json.loads((out / "index.json").read_text())
    block = index["assessment"]
    assert block["ci_method"] == "bootstrap" and block["resamples"] >= 200
    assert any(
        n.startswith("Against the Random Forest (random_forest) on never in training") for n in index["notes"]
    )
    assert {t["csv"] for t in index["tables"]} >= {"map_accuracy.csv", "map_pairwise.csv", "map_areas.csv"}
    every_row = list(csv.DictReader((out / "map_accuracy.csv").open()))
    # Each run's own test patches, scored from its predictions.npz beside the map's subsets.
    patches = [r for r in every_row if r["subset"] == "test_patches"]
    assert len(patches) == 2 and "random_forest" not in {r["model"] for r in patches}
    for r in patches:
        run_dir = sweep / "runs" / r["run_id"]
        rec, pred = read_record(run_dir), np.load(run_dir / "predictions.npz")
        assert rec is not None and float(r["overall_accuracy"]) == pytest.approx(rec.metrics.top1)
        assert float(r["balanced_accuracy"]) == pytest.approx(
            balanced_accuracy_score(pred["y_true"], pred["y_pred"])
        )
    rows = [r for r in every_row if r["subset"] != "test_patches"]
    assert {r["subset"] for r in rows} == {"all_labelled", "never_in_training"} and len(rows) == 6
    for r in rows:
        assert (
            float(r["overall_accuracy_low"])
            <= float(r["overall_accuracy"])
            <= float(r["overall_accuracy_high"])
        )
    # all_labelled: OA and the McNemar counts from the rasters themselves (every pixel is labelled).
    with rasterio.open(mapped_sweep["scene"].parent / "labels.tif") as src:
        ref = src.read(1).ravel()
    maps = {}
    for r in (r for r in rows if r["subset"] == "all_labelled"):
        with rasterio.open(
            out / ("random_forest.tif" if r["model"] == "random_forest" else f"{r['run_id']}.tif")
        ) as m:
            maps[r["model"]] = m.read(1).ravel()
        ok = maps[r["model"]] != 0
        assert float(r["overall_accuracy"]) == pytest.approx(accuracy_score(ref[ok], maps[r["model"]][ok]))
    pairs = block["pairwise"]["all_labelled"]
    assert len(pairs) == 3 and all(p["p_holm"] >= p["p_value"] for p in pairs)
    for p in pairs:
        a, b = maps[p["map_a"]], maps[p["map_b"]]
        both = (a != 0) & (b != 0)
        assert p["only_a_right"] == int((both & (a == ref) & (b != ref)).sum())
        assert p["only_b_right"] == int((both & (a != ref) & (b == ref)).sum())
    areas = list(csv.DictReader((out / "map_areas.csv").open()))
    for model in maps:
        mine = [r for r in areas if r["model"] == model]
        assert {r["unit"] for r in mine} == {"ha"}  # a projected CRS in metres, 30 m pixels: 0.09 ha
        total = sum(float(r["adjusted_area"]) for r in mine)
        assert total == pytest.approx(0.09 * int((maps[model] != 0).sum()))


def test_map_with_nothing_to_map_is_one_error_line_and_no_output_path(
    mapped_sweep: dict[str, Any], tmp_path: Path
) -> None:
    from archbench.execution.driver import run_sweep
    from archbench.sweep.expand import expand_sweep, load_sweep
    from conftest import tiny_sweep

    cfg = load_sweep(tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]"))  # one digits run: no raster
    assert run_sweep(cfg, expand_sweep(cfg)).exit_code == 0
    sweep = tmp_path / "results" / "tiny"
    res = _invoke("map", str(sweep), "--scene", str(mapped_sweep["scene"]))
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing to map" in lines[0], res.output
    assert "data.kind digits" in lines[0] and "stages/map" not in res.output
    assert not (sweep / "stages" / "map").exists()


# --- end to end on real scenes -------------------------------------------------------------------------


def _need_nc() -> None:
    if not NC.is_dir():
        pytest.skip(f"the North Carolina scene is absent ({NC}); CI provides ../shared/data")


@pytest.mark.slow
def test_north_carolina_end_to_end(tmp_path: Path) -> None:
    _need_nc()
    scene = REPO / "configs" / "scenes" / "nc_landsat7.yaml"
    res = cli(
        "run", str(REPO / "configs" / "landcover_nc.yaml"),
        "--set", f"output_dir={tmp_path / 'results'}",
        "--set", f"data.root={NC}",
        "--set", f"data.options.scene={scene}",
        "--set", "data.options.per_class=25",
        "--set", "data.options.test_per_class=25",
        "--set", "grid.model.name=[tiny_cnn]",
        "--set", "train.epochs=1",
        "--set", "map.rf=false",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    sweep = tmp_path / "results" / "landcover_nc"
    (run_dir,) = list((sweep / "runs").iterdir())
    trained = read_record(run_dir)  # the config's `map:` section mapped the run in the same command
    assert trained is not None and "error" not in trained.stages["map"], trained.stages.get("map")
    with rasterio.open(trained.stages["map"]["map_path"]) as m:
        from_run = m.read(1)
    res = cli(
        "map", str(sweep), "--scene", str(scene), "--rf", "--rf-trees", "30", "--window", "200", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(run_dir)
    assert rec is not None and rec.data is not None
    block = rec.stages["map"]
    out = sweep / "stages" / "map"
    with rasterio.open(block["map_path"]) as m, rasterio.open(NC / "strata.tif") as ref:
        assert m.crs == ref.crs and m.transform == ref.transform and m.shape == ref.shape
        assert m.tags()["run_id"] == rec.run_id and m.tags()["checkpoint_sha256"] == rec.checkpoint_sha256
        assert len(m.colormap(1)) >= 7
        values = m.read(1)
    np.testing.assert_array_equal(values, from_run)  # `archbench map` alone gives the same GeoTIFF
    for subset in ("all_labelled", "never_in_training", "test_blocks"):
        s = block["scores"][subset]
        assert 0 < s["overall_accuracy"] <= 1 and -1 <= s["kappa"] <= 1 and len(s["f1"]) == 7
        assert int(np.sum(s["confusion_matrix"])) == s["n_pixels"] > 1000
    assert block["scores"]["all_labelled"]["n_pixels"] == int((values != 0).sum())  # strata is full coverage
    assert block["checkpoint_sha256"] == rec.checkpoint_sha256 and block["split"] == "block"
    rf = block["baselines"]["random_forest"]
    assert 0 < rf["scores"]["never_in_training"]["overall_accuracy"] <= 1 and Path(rf["map_path"]).is_file()
    # The map predictor feeds patches exactly as evaluation did: same classes at the test pixels.
    info = rec.data["info"]
    rows, cols = np.nonzero(unpack_mask(info["test_pixels"]))
    y_pred = np.load(run_dir / "predictions.npz")["y_pred"]
    np.testing.assert_array_equal(values[rows, cols], np.asarray(info["class_values"])[y_pred])
    index = json.loads((out / "index.json").read_text())
    assert index["title"] == "Land-cover maps"
    for fig in index["figures"]:
        assert (out / fig["path"]).stat().st_size > 10_000
    csv_text = (out / "map_scores.csv").read_text()
    assert "random_forest" in csv_text and "tiny_cnn" in csv_text and "never_in_training" in csv_text
    # On the real scene (issue 26's acceptance): intervals, McNemar against the forest, areas, COGs, audit.
    assessment = index["assessment"]
    UNSEEN = "never_in_training"
    (pair,) = assessment["pairwise"][UNSEEN]
    assert {pair["map_a"], pair["map_b"]} == {"tiny_cnn", "random_forest"} and 0 <= pair["p_holm"] <= 1
    acc = [r for r in assessment["accuracy"] if (r["model"], r["subset"]) == ("tiny_cnn", UNSEEN)]
    assert acc[0]["overall_accuracy_low"] <= acc[0]["overall_accuracy"] <= acc[0]["overall_accuracy_high"]
    areas = [r for r in assessment["areas"]["rows"] if r["model"] == "tiny_cnn"]
    with rasterio.open(NC / "strata.tif") as ref:
        pixel_ha = abs(ref.transform.a * ref.transform.e) / 10_000
    assert len(areas) == 7 and assessment["areas"]["unit"] == "ha"
    assert sum(r["adjusted_area"] for r in areas) == pytest.approx(int((values != 0).sum()) * pixel_ha)
    from rio_cogeo.cogeo import cog_validate

    assert cog_validate(block["map_path"])[0] and cog_validate(rf["map_path"])[0]
    audit = info["leakage_audit"]
    assert audit["split"] == "block" and audit["test_within_patch_radius"] == 0
    assert audit["min_distance_px"] > 0
    res = cli("report", str(sweep), "--formats", "html", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    html = (sweep / "report" / "report.html").read_text()
    assert "Land-cover maps" in html and "McNemar" in html


@pytest.mark.slow
def test_another_real_scene_from_a_scene_file_alone(tmp_path: Path) -> None:
    """One multiband file (4 of the NC bands, cropped), sparse labels regrouped into 3 other class values."""
    _need_nc()
    from rasterio.windows import Window

    win = Window(60, 150, 240, 250)  # col, row, width, height
    stack = []
    for name in ("lsat7_2000_30", "lsat7_2000_40", "lsat7_2000_50", "lsat7_2000_70"):
        with rasterio.open(NC / f"{name}.tif") as src:
            a = src.read(1, window=win).astype(np.float32)
            stack.append(np.where(a == np.float32(src.nodata), -1.0, a).astype(np.float32))
            transform = src.window_transform(win)
    data = tmp_path / "data"
    data.mkdir()
    write_tif(data / "stack.tif", np.stack(stack), -1, transform)
    with rasterio.open(NC / "landsat96_labelled_pixels.tif") as src:
        lab = src.read(1, window=win)
    regroup = {1: 10, 3: 20, 4: 20, 5: 20, 6: 30}
    out = np.zeros(lab.shape, np.uint8)
    for k, v in regroup.items():
        out[lab == k] = v
    write_tif(data / "sparse_labels.tif", out, 0, transform)
    scene = write_scene(
        tmp_path / "crop.yaml",
        {
            "name": "nc_crop_multiband",
            "root": "data",
            "bands": {"file": "stack.tif", "names": ["red", "nir", "swir1", "swir2"]},
            "labels": {"file": "sparse_labels.tif"},
            "classes": [
                {"value": 10, "name": "developed", "color": "#e31a1c"},
                {"value": 20, "name": "vegetation", "color": "#1b7837"},
                {"value": 30, "name": "water", "color": "#1f78b4"},
            ],
        },
    )
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(f"""
        name: crop
        output_dir: results
        data:
          kind: raster_patches
          options: {{scene: {scene.name}, patch_size: 7, per_class: 60, split: block, block_size: 24}}
        model: {{name: tiny_cnn}}
        train: {{epochs: 1, threads: 2, optimizer: adam, lr: 0.003}}
        """)
    )
    res = cli("run", "sweep.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli("map", "results/crop", cwd=tmp_path)  # the run's own scene file, nothing else
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = list((tmp_path / "results" / "crop" / "runs").iterdir())
    rec = read_record(run_dir)
    assert rec is not None and rec.data is not None and rec.data["in_chans"] == 4
    block = rec.stages["map"]
    with rasterio.open(block["map_path"]) as m:
        assert m.crs.to_epsg() == 32119 and m.transform == transform and m.shape == (250, 240)
        assert set(np.unique(m.read(1))) <= {0, 10, 20, 30}
    from archbench.stages.map.stage import MapSettings, map_target

    again = map_target(tmp_path / "results" / "crop", MapSettings(), report=lambda o: None)
    assert [o.status for o in again.outcomes] == ["skipped"] and again.exit_code == 0  # already mapped
    s = block["scores"]["all_labelled"]
    assert len(s["confusion_matrix"]) == 3 and s["n_pixels"] == int((out > 0).sum()) - s["n_unmapped"]
    assert s["overall_accuracy"] is not None and s["kappa"] is not None
