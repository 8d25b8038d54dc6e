"""Band-aware pretrained weights (issue #26): an RGB-pretrained first conv on a multispectral dataset puts
its red, green and blue filters on the bands of those names, or where `model.band_map` says; the other
bands get the mean filter, all scaled by 3/in_chans, and the record's model_build says which band got what.

The "ImageNet" file is a randomly initialised torchvision resnet18 saved under the name torchvision's
weights have, in a private TORCH_HOME: only where each filter lands is tested. The scene is a generated
6-band GeoTIFF (tests/test_maps.py helpers) whose bands are named out of RGB order.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archbench.config import ModelSpec
from archbench.models import build_info, create_model
from archbench.models.surgery import adapt_input_conv
from archbench.store.checkpoint import load_checkpoint
from archbench.store.record import read_record
from conftest import run_cli
from test_maps import write_scene, write_tif

BANDS = ["nir", "red", "green", "blue", "swir1", "swir2"]
SCALE = 3 / 6


@pytest.fixture
def rgb_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """A private TORCH_HOME holding resnet18 "ImageNet" weights (a seeded random init) under their real
    file name; returns the tensors saved."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    torch.save(state, folder / url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return state


def six_band_scene(folder: Path, names: list[str] = BANDS) -> Path:
    """A 20×20 scene of six noise bands named `names`, every pixel labelled with one of 2 classes."""
    rng = np.random.default_rng(0)
    write_tif(folder / "bands.tif", rng.normal(100, 20, (6, 20, 20)).astype(np.float32))
    write_tif(folder / "labels.tif", rng.integers(1, 3, (20, 20)).astype(np.uint8), 0)
    return write_scene(
        folder / "scene.yaml",
        {
            "name": "six",
            "bands": {"file": "bands.tif", "names": names},
            "labels": {"file": "labels.tif"},
            "classes": [{"value": 1, "name": "one"}, {"value": 2, "name": "two"}],
        },
    )


SWEEP = """
name: bands
output_dir: {out}
data:
  kind: raster_patches
  options: {{scene: {scene}, patch_size: 5, split: random, per_class: 10, test_per_class: 5}}
model: {{name: resnet18, pretrained: imagenet, freeze: 1{extra}}}
train: {{epochs: 1, batch_size: 8, threads: 1}}
seed: 0
"""


def expected_conv(source: torch.Tensor, names: list[str], placed: dict[str, int]) -> torch.Tensor:
    """The documented first conv: band `b` gets filter `placed[b]`, the others the mean; all × 3/in_chans."""
    mean = source.mean(dim=1)
    cols = [source[:, placed[b]] if b in placed else mean for b in names]
    return torch.stack(cols, dim=1) * (3 / len(names))


def test_resnet18_on_a_six_band_scene_puts_each_rgb_filter_on_its_named_band(
    rgb_weights: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """The runner's own path, in-process: the stem is frozen (freeze: 1), so the trained checkpoint still
    holds the first conv as it was built."""
    from archbench.execution.driver import run_sweep
    from archbench.sweep.expand import expand_sweep, load_sweep

    scene = six_band_scene(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.format(out=tmp_path / "results", scene=scene, extra=""))
    cfg = load_sweep(sweep)
    (run,) = expand_sweep(cfg)
    assert run_sweep(cfg, [run]).exit_code == 0
    run_dir = tmp_path / "results" / "bands" / "runs" / run.run_id
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed"
    conv = load_checkpoint(run_dir / "checkpoints" / "best.pt")["model"]["conv1.weight"]
    red, green, blue = (rgb_weights["conv1.weight"][:, i] for i in range(3))
    assert torch.allclose(conv[:, 1], red * SCALE) and torch.allclose(conv[:, 2], green * SCALE)
    assert torch.allclose(conv[:, 3], blue * SCALE)
    mean = rgb_weights["conv1.weight"].mean(dim=1) * SCALE
    for i in (0, 4, 5):
        assert torch.allclose(conv[:, i], mean)
    assert rec.model_build["input_bands"] == {
        "nir": "mean RGB", "red": "red", "green": "green", "blue": "blue",
        "swir1": "mean RGB", "swir2": "mean RGB",
    }  # fmt: skip
    assert rec.model_build["input_bands_from"] == "band names"
    assert rec.model_build["input_conv_scale"] == SCALE


def test_band_map_and_a_local_weights_file_place_the_filters_where_it_says(tmp_path: Path) -> None:
    """`pretrained: FILE` (load_local_weights) honours the names and band_map exactly as `imagenet` does."""
    import torchvision

    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None).state_dict()
    file = tmp_path / "rgb.pt"
    torch.save(source, file)
    rgb = source["conv1.weight"]
    by_name = create_model(
        ModelSpec(name="resnet18", pretrained=str(file)), 6, 2, band_names=[b.upper() for b in BANDS]
    )
    assert torch.allclose(by_name.conv1.weight, expected_conv(rgb, BANDS, {"red": 0, "green": 1, "blue": 2}))
    assert build_info(by_name)["input_bands"]["RED"] == "red"  # case-insensitive, reported as named
    spec = ModelSpec(name="resnet18", pretrained=str(file), band_map={"red": "nir", "green": "swir1"})
    mapped = create_model(spec, 6, 2, band_names=BANDS)
    assert torch.allclose(mapped.conv1.weight, expected_conv(rgb, BANDS, {"nir": 0, "swir1": 1}))
    info = build_info(mapped)
    assert info["input_bands_from"] == "model.band_map"
    assert info["input_bands"]["nir"] == "red" and info["input_bands"]["red"] == "mean RGB"


def test_unnamed_rgb_bands_keep_the_cyclic_tiling_and_say_so(rgb_weights: dict[str, torch.Tensor]) -> None:
    rgb = rgb_weights["conv1.weight"]
    tiled = create_model(
        ModelSpec(name="resnet18", pretrained="imagenet"), 4, 2, band_names=["B1", "B2", "B3", "B4"]
    )
    assert torch.allclose(tiled.conv1.weight, adapt_input_conv(4, rgb))
    assert "names none of red, green, blue" in build_info(tiled)["input_bands_from"]
    # Three bands named red, green, blue in order: the file's weight exactly (scale 1), the mapping recorded;
    # no band names (CIFAR, ImageNet): untouched, and nothing recorded.
    same = create_model(
        ModelSpec(name="resnet18", pretrained="imagenet"), 3, 2, band_names=["red", "green", "blue"]
    )
    assert torch.equal(same.conv1.weight, rgb) and "input_bands" in build_info(same)
    plain = create_model(ModelSpec(name="resnet18", pretrained="imagenet"), 3, 2)
    assert torch.equal(plain.conv1.weight, rgb) and build_info(plain) == {}


@pytest.mark.parametrize(
    ("band_map", "says"),
    [("{red: thermal}", "band 'thermal' is not one of the dataset's bands"), ("{purple: nir}", "purple")],
)
def test_a_bad_band_map_stops_the_sweep_at_planning(
    rgb_weights: dict[str, torch.Tensor], tmp_path: Path, band_map: str, says: str
) -> None:
    scene = six_band_scene(tmp_path)
    out = tmp_path / "results"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent(SWEEP.format(out=out, scene=scene, extra=f", band_map: {band_map}")))
    env: dict[str, Any] = {"TORCH_HOME": str(tmp_path / "torch")}
    res = run_cli("run", str(sweep), cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and says in lines[0] and "band_map" in lines[0], res.stderr
    assert not out.exists()


def test_a_raster_folder_band_map_is_checked_against_the_chips_band_names(tmp_path: Path) -> None:
    from archbench.sweep.checks import band_map_problems
    from archbench.sweep.expand import expand_sweep, load_sweep
    from test_raster_folder import write_folder

    root = write_folder(tmp_path / "chips", {"train": 2, "test": 1}, names=BANDS)
    sweep = tmp_path / "sweep.yaml"
    text = (
        "name: f\ndata: {{kind: raster_folder, root: {root}}}\n"
        "model: {{name: resnet18, pretrained: w.pt, band_map: {bm}}}\n"
    )
    sweep.write_text(text.format(root=root, bm="{red: nir}"))
    assert band_map_problems(expand_sweep(load_sweep(sweep))) == []
    sweep.write_text(text.format(root=root, bm="{red: B04}"))
    (problem,) = band_map_problems(expand_sweep(load_sweep(sweep)))
    assert "band 'B04' is not one of the dataset's bands (nir, red, green, blue, swir1, swir2)" in problem


def test_band_map_enters_the_run_identity_only_when_set() -> None:
    from archbench.config import RunSpec, spec_hash

    plain = RunSpec()
    assert "band_map" not in plain.identity()["model"]
    mapped = plain.model_copy(update={"model": ModelSpec(pretrained="x.pt", band_map={"red": "nir"})})
    unset = plain.model_copy(update={"model": ModelSpec(pretrained="x.pt")})
    assert mapped.identity()["model"]["band_map"] == {"red": "nir"}
    assert spec_hash(mapped) != spec_hash(unset) and "band_map" not in unset.identity()["model"]


def test_timm_imagenet_weights_are_placed_by_band_name_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timm tiles the filters while loading; archbench then re-places the file's own filters by name."""
    import timm

    from test_pretrained_weights import put_in_hf_cache

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    torch.manual_seed(2)
    source = timm.create_model("resnet10t", pretrained=False).state_dict()
    put_in_hf_cache(tmp_path / "hf", "timm/resnet10t.c3_in1k", source)
    rgb = source["conv1.0.weight"]
    spec = ModelSpec(name="timm:resnet10t", pretrained="imagenet")
    model = create_model(spec, 6, 2, band_names=BANDS)
    placed = {"red": 0, "green": 1, "blue": 2}
    assert torch.allclose(model.conv1[0].weight, expected_conv(rgb, BANDS, placed))
    assert build_info(model)["input_bands"]["red"] == "red"
    tiled = create_model(spec, 4, 2)
    assert torch.allclose(tiled.conv1[0].weight, adapt_input_conv(4, rgb))
    assert "cyclic tiling" in build_info(tiled)["input_bands_from"]
