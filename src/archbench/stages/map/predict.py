"""Windowed map prediction and map GeoTIFFs: owns classifying every valid pixel and writing the result.

Each window is read with a halo of the patch radius, so every pixel's patch is complete whatever window it
falls in: the map is the same pixel for pixel whatever the window size (no seams), and memory is bounded
by the window and the batch. A pixel is classified only where every band is valid; nodata and off-grid
pixels inside its patch get the run's recorded fill values, exactly as the training patches did.
Networks see their patches through the trainer's own `BatchMaker`, so scaling, resizing and
standardisation are the ones the run was trained and tested with.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.scene import UNLABELLED, Grid, SceneReader, extract_patches, iter_windows

Classifier = Callable[[np.ndarray], np.ndarray]
"""Patches n×C×P×P (float32, finite) → class indices (n,)."""

MapWindow = tuple[int, int, int, int, np.ndarray]
"""(row0, col0, height, width, class indices uint8 with UNLABELLED where not classified)."""


def predict_windows(
    reader: SceneReader,
    classify: Classifier,
    patch: int,
    fill: np.ndarray,
    window: int = 256,
    batch_size: int = 1024,
) -> Iterator[MapWindow]:
    """Classify every pixel whose bands are all valid, one window (plus halo) at a time."""
    halo = patch // 2
    fill = np.asarray(fill, dtype=np.float32)[:, None, None]
    g = reader.scene.grid
    for r0, c0, h, w in iter_windows(g.height, g.width, window):
        block = reader.read_bands(r0 - halo, c0 - halo, h + 2 * halo, w + 2 * halo)
        valid = np.isfinite(block[:, halo : halo + h, halo : halo + w]).all(0)
        block = np.where(np.isnan(block), fill, block)
        out = np.full((h, w), UNLABELLED, dtype=np.uint8)
        rows, cols = np.nonzero(valid)
        for s in range(0, rows.size, batch_size):
            rb, cb = rows[s : s + batch_size], cols[s : s + batch_size]
            out[rb, cb] = classify(extract_patches(block, rb, cb, patch)).astype(np.uint8)
        yield r0, c0, h, w, out


def map_nodata(class_values: tuple[int, ...] | list[int]) -> int:
    """The map's nodata value: 0 unless 0 is a class value, then 255."""
    return 255 if 0 in class_values else 0


def _rgba(color: str, alpha: int = 255) -> tuple[int, int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16), alpha


COG_BLOCK = 512  # COG tile side; overviews halve down to a coarsest side of at most OVERVIEW_MIN_SIDE
OVERVIEW_MIN_SIDE = 256


def _overview_count(height: int, width: int) -> int:
    """Overview levels so the coarsest side is at most OVERVIEW_MIN_SIDE (at least one level)."""
    return max(1, math.ceil(math.log2(max(height, width, 1) / OVERVIEW_MIN_SIDE)))


def write_map(
    path: Path,
    grid: Grid,
    windows: Iterator[MapWindow],
    class_values: tuple[int, ...] | list[int],
    colors: tuple[str, ...] | list[str],
    tags: dict[str, str],
) -> int:
    """Write a uint8 class-value Cloud-Optimized GeoTIFF; returns pixels mapped.

    Window by window into a temporary GeoTIFF, then copied by GDAL's COG driver (512-px tiles, DEFLATE,
    internal overviews by nearest neighbour, so they stay class values) and renamed into place. Same CRS
    and transform as `grid`; nodata where nothing was classified; one colour-table entry per class; the
    tags and the colour table survive the copy.
    """
    import rasterio
    import rasterio.shutil

    nodata = map_nodata(class_values)
    lut = np.full(256, nodata, dtype=np.uint8)
    lut[: len(class_values)] = np.asarray(class_values, dtype=np.uint8)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": grid.height,
        "width": grid.width,
        "count": 1,
        "dtype": "uint8",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "deflate",
    }
    if grid.height >= 256 and grid.width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.tif")
    cog = path.with_name(f".{path.stem}.cog-{os.getpid()}.tif")
    mapped = 0
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            from rasterio.windows import Window

            for r0, c0, h, w, idx in windows:
                mapped += int((idx != UNLABELLED).sum())
                dst.write(lut[idx], 1, window=Window(c0, r0, w, h))
            cmap = {int(v): _rgba(c) for v, c in zip(class_values, colors, strict=True)}
            cmap[nodata] = (0, 0, 0, 0)
            dst.write_colormap(1, cmap)
            dst.update_tags(**tags)
            dst.set_band_description(1, "land-cover class value")
        rasterio.shutil.copy(
            tmp, cog, driver="COG", BLOCKSIZE=COG_BLOCK, COMPRESS="DEFLATE", OVERVIEWS="IGNORE_EXISTING",
            OVERVIEW_RESAMPLING="NEAREST", OVERVIEW_COUNT=_overview_count(grid.height, grid.width),
        )  # fmt: skip
        os.replace(cog, path)
    finally:
        tmp.unlink(missing_ok=True)
        cog.unlink(missing_ok=True)
    return mapped


def assemble(windows: Iterator[MapWindow], grid: Grid) -> np.ndarray:
    """All windows as one class-index array (for tests and small scenes)."""
    out = np.full((grid.height, grid.width), UNLABELLED, dtype=np.uint8)
    for r0, c0, h, w, idx in windows:
        out[r0 : r0 + h, c0 : c0 + w] = idx
    return out


def run_tags(rec: Any, scene_name: str, **extra: str) -> dict[str, str]:
    from archbench import __version__

    return {
        "archbench_version": __version__,
        "run_id": rec.run_id,
        "sweep": rec.sweep,
        "model": rec.spec.model.name,
        "checkpoint": rec.spec.eval.checkpoint,
        "checkpoint_sha256": rec.checkpoint_sha256 or "",
        "scene": scene_name,
        "classes": json.dumps(dict(zip(rec.data["info"]["class_values"], rec.class_names, strict=True))),
        **extra,
    }


def model_classifier(
    model: Any,
    mean: list[float],
    std: list[float],
    patch: int,
    resolution: int | None = None,
    device: Any = "cpu",
    channels_last: bool = False,
    amp: bool = False,
) -> Classifier:
    """A network as a Classifier, fed through the trainer's BatchMaker (scale, resize, standardise)."""
    import torch

    from archbench.config import AugmentSpec
    from archbench.data.registry import DatasetBundle, Split
    from archbench.engine.augment import BatchMaker, DeviceSplit
    from archbench.engine.runtime import autocast

    dev = torch.device(device)
    # Raster patches are float32, so BatchMaker scales by 1 (uint8 families would scale by 1/255).
    empty = Split(np.zeros((0, len(mean), patch, patch), np.float32), np.zeros(0, np.int64))
    stats = DatasetBundle("raster_patches", [], empty, empty, empty, list(mean), list(std), fingerprint="")
    maker = BatchMaker(stats, dev, resolution, AugmentSpec(), channels_last=channels_last)
    model = model.to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def classify(x: np.ndarray) -> np.ndarray:
        split = DeviceSplit(Split(x, np.zeros(x.shape[0], np.int64)), dev)
        xb, _ = maker.eval_batch(split, 0, len(split))
        with autocast(dev, amp):
            logits = model(xb)
        return np.asarray(logits.float().argmax(1).cpu().numpy())

    return classify


def net_classifier(run_dir: Path, rec: Any, device: Any = "cpu") -> Classifier:
    """The run's evaluated network as a Classifier, with the run's statistics, resolution, precision."""
    import torch

    from archbench.engine.artifacts import load_model
    from archbench.engine.runtime import amp_enabled, channels_last_enabled

    dev = torch.device(device)
    return model_classifier(
        load_model(run_dir, rec, dev),
        mean=list(rec.data["mean"]),
        std=list(rec.data["std"]),
        patch=int(rec.data["info"]["patch_size"]),
        resolution=rec.spec.data.resolution,
        device=dev,
        channels_last=channels_last_enabled(rec.spec.train, dev),
        amp=amp_enabled(rec.spec.train, dev),
    )
