"""`kind: raster_folder` (issue #28): folders of multispectral chips at their native dtype, through the
prepared-data cache and the trainer's batches, nodata filled from training chips only, one end-to-end run.

Chips are tiny GeoTIFFs written here with rasterio: 13 uint16 bands named B01..B13 in their band
descriptions. Classes differ only above value 255 (a reader clipping at uint8 would see one class), and
band 13 holds values above 32767 (the top bit of uint16).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rasterio.transform import Affine

from archbench.config import AugmentSpec, DataSpec
from archbench.data import create_dataset, dataset_kinds
from archbench.data.chips import write_chip
from archbench.data.registry import data_problems, training_pool
from archbench.engine.augment import BatchMaker, DeviceSplit
from archbench.engine.sources import HostSplit
from archbench.util.errors import ConfigError, DatasetError
from conftest import run_one
from helpers import cli

BANDS = [f"B{i:02d}" for i in range(1, 14)]
CLASSES = ("crop", "forest", "water")
GEOREF = {"crs": "EPSG:32632", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)}


def chip_values(cls: int, rng: np.random.Generator, size: int = 8, bands: int = 13) -> np.ndarray:
    """A class's chip: every band near 1000 + 150·class (noise 0..40); the last band near 40000 + …."""
    chip = 1000 + 150 * cls + rng.integers(0, 40, (bands, size, size))
    chip[-1] += 39000
    return chip.astype(np.uint16)


def write_folder(
    root: Path,
    splits: dict[str, int],
    size: int = 8,
    seed: int = 0,
    nodata: float | None = None,
    names: list[str] | None = BANDS,
) -> Path:
    """`splits`: folder ("" for the one-folder layout) → chips per class."""
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        for c, cls in enumerate(CLASSES):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                write_chip(
                    folder / f"{cls}_{i:03d}.tif",
                    chip_values(c, rng, size, len(names or BANDS)),
                    names or [],
                    nodata,
                    GEOREF,
                )
    return root


def test_datasets_lists_the_chip_kinds() -> None:
    assert {"raster_folder", "torchgeo"} <= set(dataset_kinds())


def test_uint16_chips_keep_dtype_band_names_and_train_statistics_through_the_cache(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"train": 6, "test": 2})
    spec = DataSpec(kind="raster_folder", root=str(root), cache_dir=str(tmp_path / "cache"))
    built = create_dataset(spec)
    assert built.loading["cache_hit"] is False
    assert built.train.x.dtype == np.uint16 and built.in_chans == 13 and built.native_size == (8, 8)
    assert built.info["dtype"] == "uint16" and built.info["band_names"] == BANDS
    assert built.info["band_names_from"] == "band descriptions" and built.info["fill_values"] is None
    assert int(np.asarray(built.train.x).max()) > 32767
    # Statistics: per band, of the training split only, in the chips' own units.
    train = np.asarray(built.train.x, dtype=np.float64)
    assert built.mean == pytest.approx(train.mean(axis=(0, 2, 3)).tolist())
    assert built.std == pytest.approx(train.std(axis=(0, 2, 3)).tolist())
    assert (len(built.train), len(built.val), len(built.test)) == (15, 3, 6)
    mapped = create_dataset(spec)
    assert mapped.loading["cache_hit"] is True and isinstance(mapped.train.x, np.memmap)
    for a, b in ((built.train, mapped.train), (built.val, mapped.val), (built.test, mapped.test)):
        assert a.x.dtype == b.x.dtype == np.uint16 and np.array_equal(np.asarray(a.x), np.asarray(b.x))
    assert mapped.fingerprint == built.fingerprint and mapped.test_ids is not None
    assert mapped.test_ids.labels()[0] == "test/crop/crop_000.tif"


def test_band_names_option_subset_and_order(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"": 4}, names=None)
    plain = create_dataset(DataSpec(kind="raster_folder", root=str(root)))
    assert plain.info["band_names"] == [f"band{i}" for i in range(1, 14)]
    named = [f"S{i}" for i in range(13)]
    spec = DataSpec(
        kind="raster_folder", root=str(root), options={"bands": named, "select_bands": ["S3", "S2", "S1"]}
    )
    picked = create_dataset(spec)
    assert picked.in_chans == 3 and picked.info["band_names"] == ["S3", "S2", "S1"]
    assert picked.info["file_band_names"] == named
    assert np.array_equal(np.asarray(picked.train.x), np.asarray(plain.train.x)[:, [3, 2, 1]])
    with pytest.raises(ConfigError, match=r"select_bands: \['B04'\] not among"):
        create_dataset(DataSpec(kind="raster_folder", root=str(root), options={"select_bands": ["B04"]}))
    with pytest.raises(ConfigError, match="unknown option.*image_size.*known: bands, nodata"):
        create_dataset(DataSpec(kind="raster_folder", root=str(root), options={"image_size": 8}))
    with pytest.raises(ConfigError, match="names 2 band"):
        create_dataset(DataSpec(kind="raster_folder", root=str(root), options={"bands": ["a", "b"]}))


def test_nodata_is_filled_with_the_training_pool_mean_and_recorded(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"": 10}, nodata=0)
    rng = np.random.default_rng(1)
    files = sorted(root.glob("*/*.tif"))
    import rasterio

    for path in files[::3]:  # nodata pixels in band 1 of every third chip
        with rasterio.open(path, "r+") as ds:
            band = ds.read(1)
            band[rng.integers(0, 8, 5), rng.integers(0, 8, 5)] = 0
            ds.write(band, 1)
    spec = DataSpec(kind="raster_folder", root=str(root), test_fraction=0.3, split_seed=4)
    bundle = create_dataset(spec)
    # By hand: band 1's mean over the valid pixels of the chips the test split does not take.
    y = np.repeat(np.arange(3), 10)
    pool = training_pool(y, spec)
    stack = []
    for i in pool:
        with rasterio.open(files[i]) as ds:
            stack.append(ds.read(1).astype(np.float64))
    values = np.stack(stack)
    expected = round(float(values[values != 0].mean()))
    masked = 0
    for path in files:
        with rasterio.open(path) as ds:
            masked += int((ds.read(1) == 0).sum())
    assert masked > 0
    assert bundle.info["fill_values"][0] == expected and bundle.info["masked_pixels"][0] == masked
    assert bundle.info["masked_pixels"][1:] == [0] * 12 and bundle.info["nodata"] == [0.0] * 13
    assert all(int(np.asarray(s.x)[:, 0].min()) > 0 for s in (bundle.train, bundle.val, bundle.test))
    # The rows the fill learned from are exactly those the common path kept out of the test split.
    assert bundle.test_ids is not None
    held = sorted(files[i].relative_to(root).as_posix() for i in range(30) if i not in set(pool.tolist()))
    assert sorted(bundle.test_ids.labels()) == held


def test_npy_float32_chips_with_nan_and_an_official_val_split(tmp_path: Path) -> None:
    root = tmp_path / "npy"
    rng = np.random.default_rng(2)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                shift = 0 if split == "train" else 100  # a fill learned beyond train/ would show it
                chip = (shift + c + rng.random((4, 5, 5))).astype(np.float32)
                chip[2, 0, 0] = np.nan
                np.save(root / split / cls / f"{i}.npy", chip)
    bundle = create_dataset(DataSpec(kind="raster_folder", root=str(root)))
    assert bundle.train.x.dtype == np.float32 and bundle.in_chans == 4
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (12, 6, 6)
    assert bundle.info["val_split"] == "official" and bundle.info["masked_pixels"] == [0, 0, 24, 0]
    assert all(np.isfinite(np.asarray(s.x)).all() for s in (bundle.train, bundle.val, bundle.test))
    assert bundle.info["fill_values"][2] == pytest.approx(1.5, abs=0.1)  # mean over train/ only


@pytest.mark.parametrize("odd", ["size", "bands"])
def test_a_chip_of_another_size_or_band_count_is_one_line_naming_it(tmp_path: Path, odd: str) -> None:
    root = write_folder(tmp_path / "chips", {"train": 3, "test": 1})
    bad = root / "train" / "forest" / "forest_001.tif"
    rng = np.random.default_rng(0)
    chip = chip_values(1, rng, size=10) if odd == "size" else chip_values(1, rng, bands=12)
    write_chip(bad, chip, BANDS[: chip.shape[0]], None, GEOREF)
    problems = data_problems(DataSpec(kind="raster_folder", root=str(root)))
    assert len(problems) == 1 and str(bad) in problems[0] and "same size, band count and dtype" in problems[0]
    with pytest.raises(DatasetError, match="forest_001.tif: chip is"):
        create_dataset(DataSpec(kind="raster_folder", root=str(root)))


def test_bad_layouts_are_planning_problems(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"train": 2})
    problems = data_problems(DataSpec(kind="raster_folder", root=str(root)))
    assert len(problems) == 1 and "found train/ but not its partner" in problems[0]
    (root / "test" / "crop").mkdir(parents=True)
    problems = data_problems(DataSpec(kind="raster_folder", root=str(root)))
    assert any("only in train/: ['forest', 'water']" in p for p in problems)
    assert any("without chips" in p and "crop" in p for p in problems)
    missing = data_problems(DataSpec(kind="raster_folder", root=str(tmp_path / "nope")))
    assert len(missing) == 1 and "does not exist" in missing[0] and "expected layout" in missing[0]


def test_uint16_batches_are_standardised_exactly_on_every_source(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"": 6})
    bundle = create_dataset(DataSpec(kind="raster_folder", root=str(root), cache_dir=str(tmp_path / "c")))
    assert isinstance(bundle.train.x, np.memmap)
    cpu = torch.device("cpu")
    maker = BatchMaker(bundle, cpu, None, AugmentSpec(crop_padding=0, hflip=False))
    raw = np.asarray(bundle.train.x, dtype=np.float64)
    mean, std = np.asarray(bundle.mean)[None, :, None, None], np.asarray(bundle.std)[None, :, None, None]
    expected = ((raw - mean) / std).astype(np.float32)
    n = len(bundle.train)
    sources = [DeviceSplit(bundle.train, cpu), HostSplit(bundle.train, cpu, streamed=True)]
    for src in sources:
        x, _ = maker.eval_batch(src, 0, n)
        assert x.dtype == torch.float32 and np.allclose(x.numpy(), expected, atol=1e-4)
        idx = torch.tensor([3, 0, n - 1])
        xb, _ = maker.train_batch(src, idx, {})
        assert np.allclose(xb.numpy(), expected[[3, 0, n - 1]], atol=1e-4)
    sources[1].close()
    # uint8 datasets keep the 1/255 scale (statistics of the scaled pixels)
    digits = create_dataset(DataSpec())
    assert BatchMaker(digits, cpu, None, AugmentSpec()).scale == 1.0 / 255.0


CHIP_SWEEP = """
name: chips
output_dir: {out}
data:
  kind: raster_folder
  root: {root}
  val_fraction: 0.2
model: {{name: tiny_cnn}}
train: {{epochs: 6, batch_size: 16, optimizer: adam, lr: 0.01, threads: 1}}
seed: 0
"""


def test_a_13_band_uint16_folder_trains_to_high_accuracy_and_records_its_bands(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"train": 20, "test": 6})
    run_dir, rec = run_one(tmp_path, CHIP_SWEEP.format(out=tmp_path / "results", root=root))
    assert rec.metrics.top1 >= 0.9  # chance is 1/3
    data: dict[str, Any] = rec.data or {}
    assert data["in_chans"] == 13 and data["info"]["dtype"] == "uint16"
    assert data["info"]["band_names"] == BANDS and len(data["mean"]) == len(data["std"]) == 13
    assert json.loads((run_dir / "record.json").read_text())["data"]["info"]["dtype"] == "uint16"
    # A loaded run preprocesses its test rows as evaluation did: uint16 kept, standardised per band.
    from archbench import load_run

    run = load_run(run_dir)
    assert run.transform.kind == "chips" and run.transform.dtype == "uint16" and run.transform.scale == 1.0
    assert list(run.transform.channel_order) == BANDS
    test = create_dataset(rec.spec.data).test
    raw = np.asarray(test.x[:4], dtype=np.float64)
    mean, std = np.asarray(data["mean"])[None, :, None, None], np.asarray(data["std"])[None, :, None, None]
    assert np.allclose(run.test_inputs(limit=4).numpy(), (raw - mean) / std, atol=1e-4)


def test_mixed_chip_sizes_stop_the_run_at_planning_with_exit_2(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"train": 3, "test": 1})
    bad = root / "test" / "water" / "water_000.tif"
    write_chip(bad, chip_values(2, np.random.default_rng(0), size=6), BANDS, None, GEOREF)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent(CHIP_SWEEP.format(out=tmp_path / "results", root=root)))
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(bad) in lines[0] and "6x6" in lines[0]
    assert not (tmp_path / "results").exists()


def test_an_unreadable_chip_fails_naming_it_or_is_skipped_and_recorded(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "chips", {"": 4})
    bad = root / "water" / "water_002.tif"
    bad.write_bytes(b"II*\x00 truncated")
    (problem,) = data_problems(DataSpec(kind="raster_folder", root=str(root)))
    assert str(bad) in problem and "cannot read this chip" in problem and "on_bad_file: skip" in problem
    bundle = create_dataset(DataSpec(kind="raster_folder", root=str(root), on_bad_file="skip"))
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 11
    assert [b["path"] for b in bundle.info["skipped_files"]] == ["water/water_002.tif"]
