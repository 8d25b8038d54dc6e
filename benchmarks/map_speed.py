"""Map prediction speed against the model's own inference, and map memory: prints one JSON object.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/map_speed.py [--threads 1] [--pairs 3] [--memory-side 0]

Speed, per model (tiny_cnn, resnet18; cifar stem, 6 bands, 7 classes, 9x9 patches, fp32, random weights:
speed does not depend on them), interleaved pairs in this one process:
  A = the map path `archbench map` runs (stage.py's compute): `predict_windows` (windowed read with halo,
      nodata fill, patch extraction, the trainer's BatchMaker normalisation, forward, argmax) into
      `write_map` (GeoTIFF, then the COG copy);
  B = the same model's batched forward + argmax on the same patches, extracted beforehand as one
      standardised tensor, in batches of the same size.
`ratio_map_over_inference` = B / A seconds (1.0: the map path costs nothing beyond the network; the goal
is >= 0.7). `breakdown_one_map_pass` times one more A pass from inside (read, patch extraction, forward,
tensor conversion + normalisation + argmax, COG write, other). The scene is the North Carolina scene
read through its own files (configs/scenes/nc_landsat7.yaml; ResNet-18 on its first rows only), or a
synthetic 6-band scene of its size when ../shared/data is absent. load_before/after: os.getloadavg().
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, interleaved, loadavg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"patch_size": 9, "window": 256, "batch_size": 2048, "classes": 7}
# GDAL keeps read blocks in a cache of up to 5% of RAM by default; cap it the same for both modes so the
# difference is the window, not how much of the file GDAL chose to keep.
GDAL_CACHEMAX_MB = os.environ.get("GDAL_CACHEMAX", "64")
NC_SCENE = REPO / "configs" / "scenes" / "nc_landsat7.yaml"
# Rows of the scene mapped per model (None: all 443; rows 0-49 are nodata): ResNet-18 maps rows 40-59,
# about 6,000 pixels, so a pair stays within ~30 s on 1 thread.
SPEED_ROWS: dict[str, int | None] = {"tiny_cnn": None, "resnet18": 60}


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


def _speed_scene(tmp: Path, rows: int | None) -> tuple[Any, str]:
    """The NC scene through its own files (configs/scenes/nc_landsat7.yaml), its grid cut to the first
    `rows` rows (None: whole), so reading is the real files' cost; without ../shared/data, a synthetic
    6-band scene of the same size."""
    from dataclasses import replace

    from archbench.data.scene import Grid, open_scene
    from archbench.util.errors import ArchbenchError

    try:
        scene, what = open_scene(NC_SCENE), "NC scene (configs/scenes/nc_landsat7.yaml)"
    except (ArchbenchError, OSError):  # no ../shared/data here
        rng = np.random.default_rng(0)
        scene = open_scene(
            _write_scene(tmp / "synthetic", rng.uniform(0, 255, (6, 443, 489)).astype(np.float32))
        )
        what = "synthetic 6-band scene"
    g = scene.grid
    h = g.height if rows is None else min(rows, g.height)
    scene = replace(scene, grid=Grid(h, g.width, g.transform, g.crs))
    return scene, f"{what}, rows 0-{h - 1} ({h}x{g.width} px)"


class _Timers:
    """Seconds spent in each part of one map pass, gathered by wrapping the calls the map path makes."""

    def __init__(self) -> None:
        self.t: dict[str, float] = dict.fromkeys(("read", "patches", "classify", "forward", "predict"), 0.0)

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.t[key] += time.perf_counter() - t0

        return timed

    def windows(self, it: Iterator[Any]) -> Iterator[Any]:
        """The window stream with the time spent producing each window (read → predict) counted."""
        while True:
            t0 = time.perf_counter()
            try:
                w = next(it)
            except StopIteration:
                return
            finally:
                self.t["predict"] += time.perf_counter() - t0
            yield w


def _map_pass(scene: Any, classify: Any, out: Path, timers: _Timers | None = None) -> tuple[float, int]:
    """A: the map path `archbench map` runs (stage.py's compute): predict_windows into write_map."""
    from archbench.data.scene import SceneReader
    from archbench.stages.map import predict

    p, fill = SETTINGS["patch_size"], np.full(6, 80.0, np.float32)
    with SceneReader(scene) as reader:
        t0 = time.perf_counter()
        windows = predict.predict_windows(
            reader, classify, p, fill, SETTINGS["window"], SETTINGS["batch_size"]
        )
        if timers is not None:
            windows = timers.windows(windows)
        n = predict.write_map(out, scene.grid, windows, scene.class_values, scene.colors, {})
        return time.perf_counter() - t0, n


def _timed_pass(scene: Any, model: Any, classify: Any, out: Path) -> dict[str, float]:
    """One A pass with timers around reading, patch extraction, classify and the model's forward."""
    from archbench.stages.map import predict

    timers = _Timers()
    starts: list[float] = []
    pre = model.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    post = model.register_forward_hook(
        lambda *_: timers.t.__setitem__("forward", timers.t["forward"] + time.perf_counter() - starts.pop())
    )
    real_extract, real_read = predict.extract_patches, predict.SceneReader.read_bands
    predict.extract_patches = timers.wrap("patches", real_extract)  # type: ignore[assignment]
    predict.SceneReader.read_bands = timers.wrap("read", real_read)  # type: ignore[method-assign]
    try:
        total, _ = _map_pass(scene, timers.wrap("classify", classify), out, timers)
    finally:
        predict.extract_patches, predict.SceneReader.read_bands = real_extract, real_read  # type: ignore[method-assign]
        pre.remove()
        post.remove()
    t = timers.t
    parts = {
        "read": t["read"],
        "patch_extraction": t["patches"],
        "forward": t["forward"],
        "to_tensor_normalise_argmax": t["classify"] - t["forward"],
        "write_cog": total - t["predict"],
    }
    parts["other"] = total - sum(parts.values())
    return (
        {"total_s": round(total, 4)}
        | {k: round(v, 4) for k, v in parts.items()}
        | {f"{k}_share": round(v / total, 3) for k, v in parts.items()}
    )


def measure_speed(name: str, tmp: Path, pairs: int) -> dict[str, Any]:
    """A (the map path) vs B (the model's batched forward on the same patches, one tensor), interleaved."""
    import torch

    from archbench.config import ModelSpec
    from archbench.data.scene import SceneReader
    from archbench.models import create_model
    from archbench.stages.map.predict import model_classifier, predict_windows

    scene, what = _speed_scene(tmp, SPEED_ROWS[name])
    torch.manual_seed(0)
    model = create_model(ModelSpec(name=name, stem="cifar"), in_chans=6, num_classes=SETTINGS["classes"])
    p, bs, mean, std = SETTINGS["patch_size"], SETTINGS["batch_size"], [80.0] * 6, [25.0] * 6
    classify = model_classifier(model, mean, std, p)
    got: list[np.ndarray] = []

    def collect(x: np.ndarray) -> np.ndarray:
        got.append(x.copy())
        return np.zeros(len(x), np.int64)

    with SceneReader(scene) as reader:  # the patches A classifies, extracted once for B
        for _ in predict_windows(reader, collect, p, np.full(6, 80.0, np.float32), SETTINGS["window"], bs):
            pass
    x = torch.from_numpy(np.concatenate(got))
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    model.eval()

    @torch.no_grad()
    def infer() -> float:
        t0 = time.perf_counter()
        for s in range(0, len(x), bs):
            model(x[s : s + bs]).argmax(1)
        return time.perf_counter() - t0

    out = tmp / f"{name}.tif"
    classify(np.zeros((8, 6, p, p), np.float32))  # warm-up
    infer()
    pair = interleaved(lambda: _map_pass(scene, classify, out)[0], infer, pairs)
    n = len(x)
    return {
        "model": name,
        "scene": what,
        "pixels_mapped": n,
        "a_map_path": "predict_windows + write_map (COG), the calls archbench map's stage makes",
        "b_inference": f"model(x[s:s+{bs}]).argmax(1) over the same {n} patches as one standardised tensor",
        **pair,
        "ratio_map_over_inference": pair["ratio_b_over_a_median"],
        "map_px_per_s": round(n / pair["a_seconds_median"], 1),
        "inference_px_per_s": round(n / pair["b_seconds_median"], 1),
        "breakdown_one_map_pass": _timed_pass(scene, model, classify, out),
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
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=3, help="interleaved A/B pairs per model")
    ap.add_argument(
        "--models", default=",".join(SPEED_ROWS), help="comma-separated, from " + ",".join(SPEED_ROWS)
    )
    ap.add_argument("--memory-side", type=int, default=3072, help="0: skip the memory measurement")
    ap.add_argument("--memory-child")
    ap.add_argument("--window", type=int, default=256)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.window)
        return
    import torch

    torch.set_num_threads(args.threads)
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        speed = [measure_speed(name, tmp, args.pairs) for name in args.models.split(",")]
        load_after = loadavg()
        memory = measure_memory(tmp, args.memory_side) if args.memory_side else None
    emit({
        "benchmark": "map_speed",
        "goal": "ratio_map_over_inference >= 0.7 (map path within 30% of the model's own batched inference)",
        "cpu": platform.processor() or platform.machine(),
        "load_before": load_before,
        "load_after": load_after,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": SETTINGS,
        "speed": speed,
        "memory": memory,
    })  # fmt: skip


if __name__ == "__main__":
    main()
