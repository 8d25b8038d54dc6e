"""benchmarks/map_speed.py's timed map pass (issue #26): the breakdown it reports comes from wrapping the
map path's own calls, so it must leave the map unchanged and the wrapped functions restored."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("map_speed", REPO / "benchmarks" / "map_speed.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_timed_map_pass_writes_the_same_map_and_restores_what_it_wraps(tmp_path: Path) -> None:
    import torch

    from archbench.config import ModelSpec
    from archbench.data.scene import SceneReader, open_scene
    from archbench.models import create_model
    from archbench.stages.map import predict

    bench = _bench()
    rng = np.random.default_rng(0)
    bands = rng.uniform(0, 255, (6, 40, 300)).astype(np.float32)
    bands[:, :5] = -1  # nodata rows: not classified
    scene = open_scene(bench._write_scene(tmp_path / "s", bands))
    torch.manual_seed(0)
    model = create_model(ModelSpec(name="tiny_cnn", stem="cifar"), in_chans=6, num_classes=7)
    classify = predict.model_classifier(model, [80.0] * 6, [25.0] * 6, 9)
    extract, read = predict.extract_patches, SceneReader.read_bands

    seconds, n = bench._map_pass(scene, classify, tmp_path / "plain.tif")
    parts = bench._timed_pass(scene, model, classify, tmp_path / "timed.tif")

    assert n == 35 * 300 and seconds > 0
    assert predict.extract_patches is extract and SceneReader.read_bands is read
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "timed.tif") as b:
        assert np.array_equal(a.read(), b.read())
    names = ["read", "patch_extraction", "forward", "to_tensor_normalise_argmax", "write_cog", "other"]
    assert all(parts[k] > 0 for k in names[:5])
    assert abs(sum(parts[k] for k in names) - parts["total_s"]) < 1e-3
    assert abs(sum(parts[f"{k}_share"] for k in names) - 1.0) < 0.01
