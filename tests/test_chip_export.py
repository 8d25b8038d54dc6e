"""`archbench prepare SWEEP --chips OUT` (issue #28): a scene's labelled patches become a raster_folder of
GeoTIFF chips — the same centres and split a `raster_patches` run uses, the scene's dtype, band names in
the band descriptions, georeferenced — which `kind: raster_folder` then reads.

The scene is generated here: one 3-band uint16 GeoTIFF (nodata 0, a nodata pixel inside) and a label
raster of two classes, on a 40x40 grid.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.transform import Affine

from archbench.config import DataSpec
from archbench.data import create_dataset
from archbench.data.raster import load_raster_patches, unpack_mask
from helpers import cli

TRANSFORM = Affine(30.0, 0.0, 630000.0, 0.0, -30.0, 230000.0)
CRS = "EPSG:32119"
H = W = 40
PATCH = 5


def _write_tif(path: Path, data: np.ndarray, nodata: float | None) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
        dtype=data.dtype, crs=CRS, transform=TRANSFORM, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data)


def write_scene(folder: Path) -> tuple[Path, np.ndarray]:
    """A 3-band uint16 scene (band b at (r, c) = 1000·(b+1) + 20·r + c; nodata 0 at (10, 10)) whose left
    half is class 1 and right half class 2; returns the scene file and the band array."""
    folder.mkdir(parents=True, exist_ok=True)
    r, c = np.mgrid[0:H, 0:W]
    bands = np.stack([1000 * (b + 1) + 20 * r + c for b in range(3)]).astype(np.uint16)
    bands[1, 10, 10] = 0
    _write_tif(folder / "bands.tif", bands, 0)
    labels = np.where(c < W // 2, 1, 2).astype(np.uint8)[None]
    _write_tif(folder / "labels.tif", labels, 0)
    scene = {
        "name": "generated",
        "bands": {"file": "bands.tif", "names": ["blue", "green", "red"]},
        "labels": {"file": "labels.tif"},
        "classes": [{"value": 1, "name": "left"}, {"value": 2, "name": "right"}],
    }
    (folder / "scene.yaml").write_text(yaml.safe_dump(scene, sort_keys=False))
    return folder / "scene.yaml", bands


OPTIONS: dict[str, Any] = {"patch_size": PATCH, "split": "block", "block_size": 8, "per_class": 25}
SWEEP = """
name: scene
output_dir: {out}
data:
  kind: raster_patches
  options: {options}
model: {{name: tiny_cnn}}
train: {{epochs: 1}}
"""


def _sweep(tmp: Path, scene: Path) -> Path:
    path = tmp / "sweep.yaml"
    options = json.dumps({"scene": str(scene), **OPTIONS})
    path.write_text(textwrap.dedent(SWEEP.format(out=tmp / "results", options=options)))
    return path


def _centres(folder: Path) -> set[tuple[int, int]]:
    return {(int(p.stem[1:6]), int(p.stem[8:])) for p in folder.rglob("*.tif")}


def test_scene_chips_are_the_runs_patches_in_native_dtype_and_read_back_as_a_raster_folder(
    tmp_path: Path,
) -> None:
    scene, bands = write_scene(tmp_path / "scene")
    out = tmp_path / "chips"
    res = cli("prepare", str(_sweep(tmp_path, scene)), "--chips", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "kind: raster_folder" in res.stdout and "uint16" in res.stdout
    manifest = json.loads((out / "chips.json").read_text())
    assert (
        manifest["dtype"] == "uint16"
        and manifest["nodata"] == 0
        and manifest["band_names"] == ["blue", "green", "red"]
    )
    assert sorted(p.name for p in out.iterdir()) == ["chips.json", "test", "train"]
    # The same centres and split as a raster_patches run on the scene.
    raw = load_raster_patches(DataSpec(kind="raster_patches", options={"scene": str(scene), **OPTIONS}))
    for split in ("train", "test"):
        r, c = np.nonzero(unpack_mask(raw.info[f"{split}_pixels"]))
        assert _centres(out / split) == set(zip(r.tolist(), c.tolist(), strict=True))
    # Each chip: the scene's window in uint16 (nodata and off the grid as 0), named bands, georeferenced.
    h = PATCH // 2
    padded = np.zeros((3, H + 2 * h, W + 2 * h), np.uint16)
    padded[:, h:-h, h:-h] = bands
    for path in sorted(out.rglob("*.tif"))[::7]:
        row, col = int(path.stem[1:6]), int(path.stem[8:])
        with rasterio.open(path) as ds:
            assert ds.dtypes == ("uint16",) * 3 and ds.descriptions == ("blue", "green", "red")
            assert ds.nodata == 0 and ds.crs.to_string() == CRS
            assert ds.transform == TRANSFORM @ Affine.translation(col - h, row - h)
            assert np.array_equal(ds.read(), padded[:, row : row + PATCH, col : col + PATCH])
        assert path.parent.name == ("left" if col < W // 2 else "right")
    chips = create_dataset(DataSpec(kind="raster_folder", root=str(out)))
    assert chips.train.x.dtype == np.uint16 and chips.info["band_names"] == ["blue", "green", "red"]
    assert len(chips.train) + len(chips.val) == raw.train_y.size and len(chips.test) == raw.test_y.size
    assert chips.info["masked_pixels"][1] > 0 and chips.info["fill_values"] is not None


def test_chips_refuse_an_existing_folder_and_a_sweep_without_a_scene(tmp_path: Path) -> None:
    scene, _ = write_scene(tmp_path / "scene")
    out = tmp_path / "chips"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = cli("prepare", str(_sweep(tmp_path, scene)), "--chips", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "already exists and is not an empty folder" in res.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    digits = tmp_path / "digits.yaml"
    digits.write_text("name: d\noutput_dir: results\ndata: {kind: digits}\nmodel: {name: tiny_cnn}\n")
    res = cli("prepare", str(digits), "--chips", str(tmp_path / "new"), cwd=tmp_path)
    assert res.returncode == 2 and "raster_patches" in res.stderr and "digits" in res.stderr
    assert res.stderr.count("error:") == 1 and not (tmp_path / "new").exists()
