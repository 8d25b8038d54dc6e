"""Map prediction speed and memory: prints one JSON object.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/map_speed.py [--threads 2] [--memory-side 3072]

Speed: pixels/s of the whole map path (windowed read with halo, nodata fill, patch extraction, the
trainer's BatchMaker normalisation, forward pass, GeoTIFF write) for tiny_cnn and resnet18 (cifar stem,
6 bands, 7 classes, 9x9 patches, untrained: speed does not depend on the weights) on a crop of the North
Carolina scene (../shared/data) or, when it is absent, a synthetic 6-band scene of the same size.
Memory: peak RSS of a fresh subprocess mapping a synthetic 6-band scene (memory-side^2 pixels) with
windows of 256 px vs the whole scene read as one window. The subprocess uses a no-network classifier
(argmax of the centre pixel's bands) so that what differs is the raster pipeline, not the model, and it
imports no torch; `above_baseline_mb` subtracts the RSS the subprocess had before mapping. Both
subprocesses run with GDAL_CACHEMAX=64 (MB; GDAL's block cache, else up to 5% of RAM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NC = REPO.parent / "shared" / "data" / "landsat7_north_carolina_landcover"
NC_BANDS = [
    "lsat7_2000_10",
    "lsat7_2000_20",
    "lsat7_2000_30",
    "lsat7_2000_40",
    "lsat7_2000_50",
    "lsat7_2000_70",
]
SETTINGS = {"patch_size": 9, "window": 256, "batch_size": 2048, "classes": 7}
# GDAL keeps read blocks in a cache of up to 5% of RAM by default; cap it the same for both modes so the
# difference is the window, not how much of the file GDAL chose to keep.
GDAL_CACHEMAX_MB = os.environ.get("GDAL_CACHEMAX", "64")
SPEED_PIXELS = {"tiny_cnn": 256 * 256, "resnet18": 64 * 96}  # crop sizes: a few tens of seconds each


def _write_scene(folder: Path, bands: np.ndarray, transform: Any = None, crs: str = "EPSG:32119") -> Path:
    import rasterio
    import yaml
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    c, h, w = bands.shape
    profile = {
        "driver": "GTiff", "height": h, "width": w, "count": c, "dtype": bands.dtype, "crs": crs,
        "transform": transform or from_origin(0.0, float(h), 1.0, 1.0), "nodata": -1,
        "tiled": True, "blockxsize": 256, "blockysize": 256,
    }  # fmt: skip
    with rasterio.open(folder / "bands.tif", "w", **profile) as dst:
        dst.write(bands)
    labels = {**profile, "count": 1, "dtype": "uint8", "nodata": 0}
    with rasterio.open(folder / "labels.tif", "w", **labels) as dst:
        dst.write(np.ones((1, h, w), np.uint8))
    scene = {
        "name": folder.name,
        "bands": {"file": "bands.tif"},
        "labels": {"file": "labels.tif"},
        "classes": [{"value": v, "name": f"class{v}"} for v in range(1, SETTINGS["classes"] + 1)],
    }
    (folder / "scene.yaml").write_text(yaml.safe_dump(scene))
    return folder / "scene.yaml"


def _speed_scene(folder: Path, pixels: int) -> tuple[Path, str]:
    """A crop of the NC scene's valid interior (or synthetic bands) with about `pixels` pixels."""
    w = 256 if pixels >= 256 * 256 else 96
    h = max(1, pixels // w)
    if NC.is_dir():
        import rasterio
        from rasterio.windows import Window

        win = Window(100, 100, w, h)
        stack = []
        for name in NC_BANDS:
            with rasterio.open(NC / f"{name}.tif") as src:
                a = src.read(1, window=win)
                stack.append(np.where(a == src.nodata, -1, a).astype(np.float32))
                transform, crs = src.window_transform(win), src.crs
        return _write_scene(folder, np.stack(stack), transform, crs), f"NC crop {h}x{w} at (100, 100)"
    rng = np.random.default_rng(0)
    return _write_scene(folder, rng.uniform(0, 255, (6, h, w)).astype(np.float32)), f"synthetic {h}x{w}"


def measure_speed(name: str, tmp: Path) -> dict[str, Any]:
    import torch

    from archbench.config import ModelSpec
    from archbench.data.scene import SceneReader, open_scene
    from archbench.models import create_model
    from archbench.stages.map.predict import model_classifier, predict_windows, write_map

    scene_file, what = _speed_scene(tmp / f"speed_{name}", SPEED_PIXELS[name])
    scene = open_scene(scene_file)
    torch.manual_seed(0)
    model = create_model(ModelSpec(name=name, stem="cifar"), in_chans=6, num_classes=SETTINGS["classes"])
    p = SETTINGS["patch_size"]
    classify = model_classifier(model, [80.0] * 6, [25.0] * 6, p)
    classify(np.zeros((8, 6, p, p), np.float32))  # warm-up
    fill = np.full(6, 80.0, np.float32)
    with SceneReader(scene) as reader:
        t0 = time.perf_counter()
        windows = predict_windows(reader, classify, p, fill, SETTINGS["window"], SETTINGS["batch_size"])
        n = write_map(tmp / f"{name}.tif", scene.grid, windows, scene.class_values, scene.colors, {})
        seconds = time.perf_counter() - t0
    return {
        "model": name,
        "scene": what,
        "pixels": n,
        "seconds": round(seconds, 3),
        "pixels_per_s": n / seconds,
    }


def _rss_mb() -> float:
    """Peak RSS of this process image (VmHWM: unlike ru_maxrss it does not inherit the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(scene_file: str, window: int) -> None:
    """Runs in a fresh process: map the scene with `window`, print peak RSS (no torch imported)."""
    from archbench.data.scene import SceneReader, open_scene
    from archbench.stages.map.predict import predict_windows, write_map

    scene = open_scene(scene_file)
    baseline = _rss_mb()

    def centre_argmax(x: np.ndarray) -> np.ndarray:
        c = x.shape[2] // 2
        return np.asarray(x[:, :, c, c].argmax(1), dtype=np.int64)

    p = SETTINGS["patch_size"]
    with SceneReader(scene) as reader:
        t0 = time.perf_counter()
        windows = predict_windows(
            reader, centre_argmax, p, np.zeros(6, np.float32), window, SETTINGS["batch_size"]
        )
        out = Path(scene_file).parent / f"map_{window}.tif"
        n = write_map(out, scene.grid, windows, scene.class_values, scene.colors, {})
        seconds = time.perf_counter() - t0
    peak = _rss_mb()
    result = {
        "window": window,
        "pixels": n,
        "seconds": round(seconds, 2),
        "baseline_rss_mb": round(baseline, 1),
    }
    result |= {"peak_rss_mb": round(peak, 1), "above_baseline_mb": round(peak - baseline, 1)}
    print(json.dumps(result))


def measure_memory(tmp: Path, side: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    folder = tmp / "memory"
    bands = rng.integers(0, 255, (6, side, side), dtype=np.int16)
    scene_file = _write_scene(folder, bands)
    del bands
    runs = {}
    for mode, window in (("tiled", SETTINGS["window"]), ("whole", side)):
        res = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(scene_file), "--window", str(window)],
            capture_output=True, text=True, check=True, env={**os.environ, "GDAL_CACHEMAX": GDAL_CACHEMAX_MB},
        )  # fmt: skip
        runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    return {
        "scene": f"synthetic {side}x{side} px, 6 int16 bands ({side * side * 24 / 2**20:.0f} MiB as float32)",
        "classifier": "centre-pixel argmax (no network, no torch): isolates the raster pipeline",
        "gdal_cachemax_mb": GDAL_CACHEMAX_MB,
        **runs,
        "ratio_peak_whole_over_tiled": round(runs["whole"]["peak_rss_mb"] / runs["tiled"]["peak_rss_mb"], 2),
        "ratio_above_baseline_whole_over_tiled": round(
            runs["whole"]["above_baseline_mb"] / max(runs["tiled"]["above_baseline_mb"], 0.1), 1
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-side", type=int, default=3072)
    ap.add_argument("--memory-child")
    ap.add_argument("--window", type=int, default=256)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.window)
        return
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        speed = [measure_speed(name, tmp) for name in SPEED_PIXELS]
        memory = measure_memory(tmp, args.memory_side)
    by = {s["model"]: s["pixels_per_s"] for s in speed}
    result = {
        "benchmark": "map_speed",
        "host": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },  # fmt: skip
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": SETTINGS,
        "speed": speed,
        "ratio_tiny_cnn_over_resnet18": round(by["tiny_cnn"] / by["resnet18"], 1),
        "memory": memory,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
