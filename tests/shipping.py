"""Tiny generated data and one-epoch runs for the tests of the Python API, predict and export (issue 25).

Images and scenes are written here (never downloaded): an image folder of three colour-coded classes with
a few odd sizes, a grayscale file and a nested folder (so decoding resizes, converts and recurses), and a
small GeoTIFF scene with a nodata pixel. Runs train in-process through `archbench.api.run` (tiny_cnn, one
epoch, one thread).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from test_maps import write_scene, write_tif  # the map tests' GeoTIFF and scene-file writers

CLASSES = ("cat", "dog", "owl")


def make_images(root: Path, seed: int = 0) -> Path:
    """root/train/<class>/… (8 per class) and root/test/<class>/… (4 per class, one in a sub-folder)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", 8), ("test", 4)):
        for k, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = (10, 14) if i == 1 else (12, 12)  # the odd size is resized to 12×12 on decode
                a = rng.integers(0, 160, (h, w, 3), dtype=np.uint8)
                a[..., k] += 90
                image = Image.fromarray(a)
                if i == 2:
                    image = image.convert("L")  # grayscale in an RGB folder: replicated to 3 channels
                target = folder / "nested" if (split == "test" and i == 3) else folder
                target.mkdir(exist_ok=True)
                image.save(target / f"{cls}{i}.png")
    return root


IMAGE_SWEEP = """
name: {name}
output_dir: {out}
data:
  kind: imagefolder
  root: {root}
  resolution: 16
model:
  name: tiny_cnn
train:
  epochs: 1
  batch_size: 8
  optimizer: adam
  lr: 0.01
  threads: 1
seed: 0
"""


def image_sweep(tmp: Path, name: str = "ship", root: Path | None = None) -> Path:
    """A sweep file training tiny_cnn for one epoch on a generated image folder."""
    root = root or make_images(tmp / "images")
    path = tmp / f"{name}.yaml"
    path.write_text(textwrap.dedent(IMAGE_SWEEP.format(name=name, out=tmp / "results", root=root)))
    return path


def train(sweep: Path) -> Path:
    """The run folder of a one-run sweep, trained in-process."""
    import archbench

    frame = archbench.run(sweep)
    assert list(frame["status"]) == ["completed"], frame.to_dict("records")
    return Path(frame["run_dir"].iloc[0])


def make_scene(folder: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A 20×24 scene of three bands (band 1 has a nodata pixel) and two classes (left/right halves);
    returns the scene file and the bands (nodata as -9999)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = 20, 24
    labels = np.where(np.arange(w)[None, :] < w // 2, 1, 2).repeat(h, 0).astype(np.uint8)
    bands = rng.normal(100, 10, (3, h, w)).astype(np.float32) + (labels == 2) * 15
    bands[1, 4, 5] = -9999
    write_tif(folder / "bands.tif", bands, -9999)
    write_tif(folder / "labels.tif", labels, 0)
    scene = write_scene(
        folder / "scene.yaml",
        {
            "name": "halves",
            "bands": {"file": "bands.tif", "names": ["blue", "green", "red"]},
            "labels": {"file": "labels.tif"},
            "classes": [
                {"value": 1, "name": "west", "color": "#ff0000"},
                {"value": 2, "name": "east", "color": "#0000ff"},
            ],
        },
    )
    return scene, bands


RASTER_SWEEP = """
name: raster
output_dir: {out}
data:
  kind: raster_patches
  options: {{scene: {scene}, patch_size: 3, split: random, per_class: 60, test_per_class: 30}}
model:
  name: tiny_cnn
train:
  epochs: 1
  batch_size: 32
  threads: 1
seed: 0
"""


def raster_sweep(tmp: Path) -> tuple[Path, Path, np.ndarray]:
    """(sweep file, scene file, bands) for a one-epoch raster_patches run on a generated scene."""
    scene, bands = make_scene(tmp / "scene")
    path = tmp / "raster.yaml"
    path.write_text(textwrap.dedent(RASTER_SWEEP.format(out=tmp / "results", scene=scene)))
    return path, scene, bands


def invoke(*args: str) -> Any:
    """The CLI in-process (typer's CliRunner): exit_code, stdout, stderr, without a new interpreter."""
    from typer.testing import CliRunner

    from archbench.cli.app import app

    return CliRunner().invoke(app, list(args))
