"""`kind: torchgeo` (issue #28): one adapter for torchgeo's classification datasets, read from their
on-disk layout with their official splits, never downloading.

Each dataset's layout is generated here, tiny: EuroSAT (13-band uint16 GeoTIFFs in the nested folder torchgeo
expects, and its three split files), EuroSAT100 (the same layout, other split files) and UCMerced (RGB
TIFFs read with PIL).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import Affine

from archbench.config import DataSpec
from archbench.data import create_dataset
from archbench.data.chips import write_chip
from archbench.data.registry import data_problems
from archbench.util.errors import ConfigError
from conftest import run_one

pytest.importorskip("torchgeo", reason="torchgeo is the optional extra archbench[geo] (in dev)")

EUROSAT_DIR = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
EUROSAT_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
GEOREF = {"crs": "EPSG:32632", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)}
SPLIT_OF = ("train", "train", "train", "train", "val", "test", "test")  # chip i of each class → split


def write_eurosat(root: Path, split_files: str = "eurosat-{}.txt", size: int = 8) -> Path:
    """EuroSAT's layout: class folders of 13-band uint16 GeoTIFFs (classes differ above 255) and the
    split files naming them (as .jpg, as the real ones do)."""
    rng = np.random.default_rng(0)
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, cls in enumerate(("AnnualCrop", "Forest", "SeaLake")):
        folder = root / EUROSAT_DIR / cls
        folder.mkdir(parents=True)
        for i, split in enumerate(SPLIT_OF):
            chip = (1000 + 200 * c + rng.integers(0, 40, (13, size, size))).astype(np.uint16)
            write_chip(folder / f"{cls}_{i + 1}.tif", chip, [], None, GEOREF)
            names[split].append(f"{cls}_{i + 1}.jpg")
    for split, files in names.items():
        (root / split_files.format(split)).write_text("\n".join(files) + "\n")
    return root


def write_ucmerced(root: Path) -> Path:
    """UCMerced's layout: UCMerced_LandUse/Images/<class>/<class>NN.tif RGB 256x256, and its split files."""
    from PIL import Image

    rng = np.random.default_rng(1)
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, cls in enumerate(("beach", "forest")):
        folder = root / "UCMerced_LandUse" / "Images" / cls
        folder.mkdir(parents=True)
        for i, split in enumerate(SPLIT_OF):
            rgb = (60 * c + rng.integers(0, 50, (256, 256, 3))).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{cls}{i:02d}.tif")
            names[split].append(f"{cls}{i:02d}.tif")
    for split, files in names.items():
        (root / f"uc_merced-{split}.txt").write_text("\n".join(files) + "\n")
    return root


@pytest.mark.parametrize("name", ["EuroSAT", "EuroSAT100"])
def test_eurosat_layouts_load_with_official_splits_native_dtype_and_band_names(
    tmp_path: Path, name: str
) -> None:
    files = "eurosat-{}.txt" if name == "EuroSAT" else "eurosat-100-{}.txt"
    root = write_eurosat(tmp_path / name, files)
    spec = DataSpec(kind="torchgeo", root=str(root), options={"name": name})
    assert data_problems(spec) == []
    bundle = create_dataset(spec)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (12, 3, 6)  # the split files' counts
    assert bundle.train.x.dtype == np.uint16 and bundle.in_chans == 13
    assert bundle.info["band_names"] == EUROSAT_BANDS and bundle.info["dtype"] == "uint16"
    assert bundle.info["val_split"] == "official" and bundle.info["test_split"] == f"official ({name} test)"
    assert bundle.class_names == ["AnnualCrop", "Forest", "SeaLake"]
    assert (
        bundle.test_ids is not None
        and bundle.test_ids.labels()[0] == f"{EUROSAT_DIR}/AnnualCrop/AnnualCrop_6.tif"
    )
    import rasterio

    with rasterio.open(root / EUROSAT_DIR / "AnnualCrop" / "AnnualCrop_6.tif") as ds:
        assert np.array_equal(np.asarray(bundle.test.x[0]), ds.read())  # lossless, band order as the file
    rgb = create_dataset(
        DataSpec(
            kind="torchgeo", root=str(root), options={"name": name, "select_bands": ["B04", "B03", "B02"]}
        )
    )
    assert rgb.in_chans == 3 and rgb.info["band_names"] == ["B04", "B03", "B02"]
    assert np.array_equal(np.asarray(rgb.test.x[0]), np.asarray(bundle.test.x[0])[[3, 2, 1]])


def test_ucmerced_rgb_layout_loads_as_uint8(tmp_path: Path) -> None:
    root = write_ucmerced(tmp_path / "ucm")
    bundle = create_dataset(DataSpec(kind="torchgeo", root=str(root), options={"name": "UCMerced"}))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (8, 2, 4)
    assert bundle.in_chans == 3 and bundle.native_size == (256, 256)
    assert bundle.info["dtype"] == "uint8" and bundle.info["band_names"] == ["R", "G", "B"]


def test_a_missing_dataset_says_which_files_to_put_where_and_never_downloads(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (problem,) = data_problems(DataSpec(kind="torchgeo", root=str(empty), options={"name": "EuroSAT"}))
    assert (
        "not found under" in problem and "EuroSATallBands.zip" in problem and "eurosat-train.txt" in problem
    )
    assert "https://" in problem and "never downloads" in problem and str(empty) in problem
    assert list(empty.iterdir()) == []  # nothing fetched, nothing written
    (problem,) = data_problems(
        DataSpec(kind="torchgeo", root=str(tmp_path / "nope"), options={"name": "EuroSAT"})
    )
    assert "does not exist" in problem and "EuroSATallBands.zip" in problem
    with pytest.raises(ConfigError, match="did you mean EuroSAT"):
        create_dataset(DataSpec(kind="torchgeo", root=str(empty), options={"name": "EuroSet"}))
    with pytest.raises(ConfigError, match="data.options.name: give torchgeo's dataset class"):
        create_dataset(DataSpec(kind="torchgeo", root=str(empty)))


def test_without_torchgeo_the_error_is_one_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "torchgeo" or m.startswith("torchgeo.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "torchgeo", None)  # as if not installed: `import torchgeo` fails
    spec = DataSpec(kind="torchgeo", root="/nowhere", options={"name": "EuroSAT"})
    assert data_problems(spec) == ["data.kind=torchgeo needs torchgeo: pip install 'archbench[geo]'"]
    with pytest.raises(ConfigError, match=r"pip install 'archbench\[geo\]'"):
        create_dataset(spec)


GEO_SWEEP = """
name: geo
output_dir: {out}
data:
  kind: torchgeo
  root: {root}
  options: {{name: EuroSAT}}
model: {{name: tiny_cnn}}
train: {{epochs: 8, batch_size: 8, optimizer: adam, lr: 0.01, threads: 1}}
seed: 0
"""


def test_a_generated_eurosat_trains_through_kind_torchgeo_with_its_official_split(tmp_path: Path) -> None:
    root = write_eurosat(tmp_path / "eurosat")
    _, rec = run_one(tmp_path, GEO_SWEEP.format(out=tmp_path / "results", root=root))
    assert rec.metrics.n_test == 6 and rec.metrics.top1 >= 0.8  # chance is 1/3
    data = rec.data or {}
    assert data["in_chans"] == 13 and data["info"]["dtype"] == "uint16"
    assert data["info"]["band_names"] == EUROSAT_BANDS and data["sizes"] == {"train": 12, "val": 3, "test": 6}
