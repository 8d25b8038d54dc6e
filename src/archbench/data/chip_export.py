"""Exporting a scene's labelled patches (`raster_patches`) as a `raster_folder` of GeoTIFF chips: owns the
chip dataset's layout on disk and its manifest; decides nothing about splits (`raster.sample_centres` does,
so the chips are exactly the patches a run on the scene trains and tests on).

    <out>/train/<class>/r<row>_c<col>.tif    the training pool (a run carves validation from it)
    <out>/test/<class>/r<row>_c<col>.tif     the test split (block or random, as data.options.split)
    <out>/chips.json                         scene provenance, options, split, dtype, nodata, counts

Each chip is georeferenced (the scene's CRS, the patch's transform) and names its bands in its band
descriptions. Values keep the scene bands' dtype when they share one of uint8, uint16, int16, float32 and
(for the integer ones) a nodata value that dtype holds: pixels that are nodata or off the grid are written
as it, the chip's nodata. Otherwise chips are float32 (exact for those integer dtypes) with NaN as
nodata. Writes into `<out>.partial-…`, renamed into place at the end; an existing non-empty `<out>` is
refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.data.chips import CHIP_DTYPES, write_chip
from archbench.util.errors import ConfigError

MANIFEST = "chips.json"
_BATCH = 4096  # patches gathered at a time (bounds memory)


def _folder_name(name: str) -> str:
    """A class name as a folder name (no separators, not hidden)."""
    safe = name.replace(os.sep, "_").replace("/", "_").strip() or "class"
    return "_" + safe[1:] if safe.startswith(".") else safe


def chip_dtype(scene: Any) -> tuple[str, float | None]:
    """(the chips' dtype, their nodata value; NaN for float32): the scene bands' shared dtype when it is a
    chip dtype and, for an integer one, their shared nodata value fits it; else float32."""
    import rasterio

    dtypes = set()
    for b in scene.bands:
        with rasterio.open(b.path) as ds:
            dtypes.add(ds.dtypes[b.index - 1])
    nodatas = {b.nodata for b in scene.bands}
    dtype = dtypes.pop() if len(dtypes) == 1 else "mixed"
    if dtype not in CHIP_DTYPES or dtype == "float32":
        return "float32", float("nan")
    nodata = nodatas.pop() if len(nodatas) == 1 else None
    if nodata is None or not np.isfinite(nodata) or float(np.asarray(nodata).astype(dtype)) != nodata:
        return "float32", float("nan")
    return dtype, nodata


def _as_chip(patch: np.ndarray, dtype: str, nodata: float) -> np.ndarray:
    """One float32 patch (NaN: nodata or off the grid) in the chips' dtype, NaN written as `nodata`."""
    if dtype == "float32":
        return patch
    return np.where(np.isnan(patch), np.float32(nodata), patch).astype(dtype)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--chips {out}: already exists and is not an empty folder; give a new folder")


def _write_split(tmp: Path, split: str, idx: np.ndarray, ctx: dict[str, Any], reader: Any) -> dict[str, int]:
    """Write one split's chips; returns the number of chips per class."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    from archbench.data.scene import gather_patches

    scene, labels, patch = ctx["scene"], ctx["labels"], ctx["patch"]
    halo, w = patch // 2, scene.grid.width
    counts: dict[str, int] = {}
    for start in range(0, idx.size, _BATCH):
        part = idx[start : start + _BATCH]
        rows, cols = part // w, part % w
        patches = gather_patches(reader, rows, cols, patch, ctx["window"])
        for k in range(part.size):
            r, c = int(rows[k]), int(cols[k])
            name = scene.class_names[int(labels[r, c])]
            folder = tmp / split / _folder_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            georef = {
                "crs": scene.grid.crs,
                "transform": window_transform(Window(c - halo, r - halo, patch, patch), scene.grid.transform),
            }
            chip = _as_chip(patches[k], ctx["dtype"], ctx["nodata"])
            write_chip(folder / f"r{r:05d}_c{c:05d}.tif", chip, ctx["band_names"], ctx["nodata"], georef)
            counts[name] = counts.get(name, 0) + 1
    return counts


def export_chips(spec: DataSpec, out: Path) -> dict[str, Any]:
    """Write the labelled patches of the `raster_patches` spec as a raster_folder under `out`; returns
    the manifest (also written to `out/chips.json`)."""
    from archbench.data.raster import preflight, sample_centres
    from archbench.data.scene import SceneReader

    if spec.kind != "raster_patches":
        raise ConfigError(f"--chips exports raster_patches datasets, not data.kind={spec.kind}")
    _check_out(out)
    opts, scene = preflight(spec)
    dtype, nodata = chip_dtype(scene)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}-{secrets.token_hex(3)}")
    tmp.mkdir(parents=True)
    try:
        with SceneReader(scene) as reader:
            labels, train_idx, test_idx, split_info = sample_centres(spec, opts, scene, reader)
            ctx = {
                "scene": scene,
                "labels": labels,
                "patch": opts.patch_size,
                "window": opts.window,
                "dtype": dtype,
                "nodata": nodata,
                "band_names": [b.name for b in scene.bands],
            }
            counts = {
                s: _write_split(tmp, s, i, ctx, reader) for s, i in (("train", train_idx), ("test", test_idx))
            }
        manifest = {
            "source": "archbench prepare --chips",
            "scene": scene.provenance(),
            "options": opts.model_dump(mode="json"),
            "split_seed": spec.split_seed,
            "test_fraction": spec.test_fraction,
            **split_info,
            "dtype": dtype,
            "nodata": "nan" if dtype == "float32" else nodata,
            "band_names": ctx["band_names"],
            "class_names": list(scene.class_names),
            "counts": counts,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
        if out.exists():
            out.rmdir()  # the empty folder _check_out allowed
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
