"""Prediction on new inputs with a loaded run: owns `archbench predict`'s work; never trains, never writes
into the run folder.

* An image folder (searched recursively, hidden entries skipped, imagefolder's extensions) → a CSV with
  one row per image: its path relative to the folder, the predicted class and its probability, the next
  classes with `top_k`, and the probability of every class. Images go through the run's evaluation
  preprocessing in batches of `eval.batch_size`, with evaluation's precision and memory format, so the
  run's own test folder gets exactly the predictions recorded in predictions.npz.
* A scene (a scene YAML file, or one GeoTIFF whose bands are the run's bands in order) → a class-value
  map GeoTIFF through the map stage's windowed predictor and writer, with the run's classes and colours.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.ship.load import Run
from archbench.util.errors import ArchbenchError, DatasetError

DECODE_CHUNK = 1024  # images decoded at a time: memory stays bounded on a large folder
SCENE_SUFFIXES = (".yaml", ".yml")
GEOTIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class PredictResult:
    out: Path
    count: int  # images in the CSV, or pixels mapped
    what: str  # "images" or "pixels"


def _runtime(run: Run, device: Any) -> tuple[Any, bool, bool]:
    """The device, and evaluation's autocast and channels_last choices for it."""
    import torch

    from archbench.engine.runtime import amp_enabled, channels_last_enabled

    dev = torch.device(device)
    return dev, amp_enabled(run.record.spec.train, dev), channels_last_enabled(run.record.spec.train, dev)


def probabilities(run: Run, raw: np.ndarray, device: Any = "cpu") -> np.ndarray:
    """Class probabilities (N×K float32) of raw rows, computed as evaluation computed them: batches of
    `eval.batch_size`, the same autocast and memory format, softmax over float32 logits."""
    import torch

    from archbench.engine.runtime import autocast

    dev, amp, cl = _runtime(run, device)
    model = run.model.to(dev).eval()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    step = run.record.spec.eval.batch_size
    chunks = []
    with torch.no_grad():
        for start in range(0, raw.shape[0], step):
            xb = run.transform.to_batch(raw[start : start + step], dev, channels_last=cl)
            with autocast(dev, amp):
                logits = model(xb)
            chunks.append(logits.float().cpu())
    if not chunks:
        return np.zeros((0, len(run.classes)), np.float32)
    return torch.softmax(torch.cat(chunks), dim=1).numpy().astype(np.float32)


def list_images(folder: Path) -> list[Path]:
    from archbench.data.imagefolder import IMAGE_EXTENSIONS, image_files

    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of images or a scene file (.yaml, .tif)")
    paths = image_files(folder)
    if not paths:
        raise DatasetError(
            f"{folder}: no image files found (searched recursively for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}; hidden files and folders are skipped)"
        )
    return paths


def _rows(run: Run, folder: Path, top_k: int, device: Any) -> Iterator[list[Any]]:
    from archbench.store.results import neutralise_csv_cell

    classes = run.classes
    paths = list_images(folder)
    for start in range(0, len(paths), DECODE_CHUNK):
        raw, kept = run.transform.read_images(paths[start : start + DECODE_CHUNK])
        probs = probabilities(run, raw, device)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        for path, p, best in zip(kept, probs, order, strict=True):
            ranked = [cell for k in best for cell in (classes[k], f"{p[k]:.6g}")]
            yield [
                neutralise_csv_cell(path.relative_to(folder).as_posix()),
                *map(neutralise_csv_cell, ranked),
            ] + [f"{v:.6g}" for v in p]


def predict_folder(run: Run, folder: Path, out: Path, top_k: int = 1, device: Any = "cpu") -> PredictResult:
    """Every image under `folder` → `out` (CSV); see the module docstring for the columns."""
    from archbench.store.results import neutralise_csv_cell

    if run.transform.kind == "chips":
        raise ArchbenchError(
            f"run {run.run_id} classifies multispectral chips: predicting on a folder of chip files is not "
            "supported yet; use archbench.load_run(...).transform on raw rows"
        )
    if run.transform.kind != "image":
        raise ArchbenchError(
            f"run {run.run_id} classifies patches of a scene: give a scene file (.yaml) or a GeoTIFF, "
            "not a folder"
        )
    if top_k < 1:
        raise ArchbenchError(f"--top-k {top_k}: expected 1 or more")
    top_k = min(top_k, len(run.classes))
    header = ["path", "predicted", "probability"]
    header += [f"{name}{k}" for k in range(2, top_k + 1) for name in ("top", "probability")]
    header += [neutralise_csv_cell(f"p_{c}") for c in run.classes]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for row in _rows(run, folder, top_k, device):
                w.writerow(row)
                count += 1
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return PredictResult(out, count, "images")


def _geotiff_scene(path: Path, band_names: list[str]) -> Any:
    """One GeoTIFF as a scene to predict on: all its bands in order (no labels needed)."""
    import rasterio
    from rasterio.errors import RasterioError

    from archbench.data.scene import BandSource, Grid, LabelSource, Scene

    try:
        with rasterio.open(path) as ds:
            grid = Grid(int(ds.height), int(ds.width), ds.transform, ds.crs)
            nodata = list(ds.nodatavals)
    except RasterioError as exc:
        raise DatasetError(f"{path}: cannot read this GeoTIFF ({exc})") from None
    names = band_names if len(band_names) == len(nodata) else [f"band{i + 1}" for i in range(len(nodata))]
    bands = tuple(
        BandSource(path, i + 1, None if nd is None else float(nd), names[i]) for i, nd in enumerate(nodata)
    )
    unused = LabelSource(path, 1, None, ())  # the map writer reads bands only
    return Scene(path.stem, path, bands, unused, unused, (), (), (), grid)


def _open_input_scene(run: Run, path: Path) -> Any:
    from archbench.data.scene import open_scene

    info = (run.record.data or {})["info"]
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        scene = _geotiff_scene(path, list(info["band_names"]))
    else:
        scene = open_scene(path)
    if scene.num_bands != run.transform.channels:
        raise DatasetError(
            f"{path}: {scene.num_bands} band(s) but run {run.run_id} was trained on {run.transform.channels} "
            f"({', '.join(run.transform.channel_order)}); give a scene with the same bands in the same order"
        )
    return scene


def predict_scene(
    run: Run, path: Path, out: Path, device: Any = "cpu", window: int = 256, batch_size: int = 2048
) -> PredictResult:
    """A scene → `out`, a uint8 map GeoTIFF of the run's class values (nodata where a band is nodata)."""
    from archbench.data.scene import SceneReader
    from archbench.stages.map.predict import net_classifier, predict_windows, run_tags, write_map

    if run.transform.kind != "raster":
        raise ArchbenchError(f"run {run.run_id} classifies images: give a folder of images, not a scene")
    scene = _open_input_scene(run, path)
    info = (run.record.data or {})["info"]
    classes = info["scene"]["classes"]  # the training scene's values, names and colours, in class order
    values = [int(c["value"]) for c in classes]
    colors = [str(c["color"]) for c in classes]
    classify = net_classifier(run.run_dir, run.record, _runtime(run, device)[0])
    patch, fill = int(info["patch_size"]), np.asarray(info["fill_values"], np.float32)
    with SceneReader(scene) as reader:
        windows = predict_windows(reader, classify, patch, fill, window, batch_size)
        n = write_map(out, scene.grid, windows, values, colors, run_tags(run.record, scene.name))
    return PredictResult(out, n, "pixels")


def predict_input(
    run: Run, target: Path, out: Path | None, top_k: int = 1, device: Any = "cpu"
) -> PredictResult:
    """`archbench predict RUN_DIR INPUT`: a folder → CSV, a scene file or GeoTIFF → map GeoTIFF. The default
    output is `<INPUT name>.<run_id>.csv|tif` in the current folder."""
    if target.is_file() and target.suffix.lower() in SCENE_SUFFIXES + GEOTIFF_SUFFIXES:
        return predict_scene(run, target, out or Path(f"{target.stem}.{run.run_id}.tif"), device)
    if not target.exists():
        raise DatasetError(f"{target}: no such folder or file")
    return predict_folder(
        run, target, out or Path(f"{target.resolve().name}.{run.run_id}.csv"), top_k, device
    )
