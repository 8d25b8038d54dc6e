"""Pretrained weights: local files (any wrapping, first conv adapted, a head of another size, code payloads
refused and never run), ImageNet weights found in the torch hub and Hugging Face caches (a missing file
named with where to put it and its URL; position embeddings interpolated to the run's resolution), and
`archbench weights` listing what is present. Caches are empty folders of the test, never the user's."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from archbench.config import ModelSpec
from archbench.models import build_info, create_model
from archbench.util.errors import CheckpointError, ConfigError, MissingWeightsError
from helpers import cli
from test_models import TIMM_SMALL, build
from test_studies import STUDIES, cifar10_root, failure_details, smoke_args


def test_pretrained_local_file_loads_everything_but_a_mismatched_head(tmp_path: Path) -> None:
    source = build("resnet18", num_classes=10).state_dict()
    for wrap, path in [
        (lambda sd: sd, tmp_path / "raw.pt"),
        (lambda sd: {"model": sd, "epoch": 3}, tmp_path / "model.pt"),
        (lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pth"),
    ]:
        torch.save(wrap(source), path)
        loaded = build("resnet18", num_classes=5, pretrained=str(path)).state_dict()
        for key, value in source.items():
            if key.startswith("fc."):
                assert loaded[key].shape[0] == 5
            else:
                assert torch.equal(loaded[key], value), key


def test_pretrained_local_file_adapts_the_first_conv_to_in_chans(tmp_path: Path) -> None:
    source = build("resnet18").state_dict()
    torch.save(source, tmp_path / "w.pt")
    model = build("resnet18", in_chans=1, pretrained=str(tmp_path / "w.pt"))
    assert torch.allclose(model.conv1.weight, source["conv1.weight"].sum(dim=1, keepdim=True))


def test_pretrained_file_for_another_architecture_is_a_config_error(tmp_path: Path) -> None:
    torch.save({"nothing.like.resnet": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="no tensor"):
        build("resnet18", pretrained=str(tmp_path / "other.pt"))


def test_missing_pretrained_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(MissingWeightsError, match="nope.pt"):
        build("tiny_cnn", pretrained=str(path))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.reliability
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle-2", "pickle-5"])
def test_checkpoint_with_a_code_payload_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned_x"
    path = tmp_path / "evil.pt"
    content = {"conv1.weight": torch.zeros(1), "payload": _Payload(marker)}
    if writer == "torch.save":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content, protocol=int(writer[-1])))
    with pytest.raises(CheckpointError, match="refused"):
        build("resnet18", pretrained=str(path))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "reason"), [(b"not a checkpoint", "refused"), (b"", "unreadable"), (None, "holds a list")]
)
def test_unreadable_or_non_state_dict_files_are_checkpoint_errors(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason):
        build("tiny_cnn", pretrained=str(path))


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub and Hugging Face cache for this test (the loaders read them at call time)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path


def put_in_hf_cache(cache: Path, repo_id: str, tensors: dict[str, torch.Tensor]) -> Path:
    """Lay out a file as `huggingface_hub` caches it: models--ORG--NAME/{refs/main, snapshots/REV/...}."""
    from safetensors.torch import save_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def _tv_weights_file(name: str) -> str:
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT.url.rsplit("/", 1)[-1]


def test_imagenet_weights_missing_say_which_file_to_put_where(hf_cache: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        build("resnet18", pretrained="imagenet")
    message = str(info.value)
    assert _tv_weights_file("resnet18") in message
    assert str(hf_cache / "torch" / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/" in message


def test_imagenet_weights_are_loaded_from_the_hub_cache(hf_cache: Path) -> None:
    import torchvision

    source = torchvision.models.resnet18(weights=None).state_dict()
    folder = hf_cache / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(source, folder / _tv_weights_file("resnet18"))
    model = build("resnet18", in_chans=1, num_classes=4, pretrained="imagenet")
    assert torch.equal(model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert torch.allclose(model.conv1.weight, source["conv1.weight"].sum(dim=1, keepdim=True))
    assert model.fc.out_features == 4


def test_imagenet_weights_missing_for_timm(hf_cache: Path) -> None:
    with pytest.raises(MissingWeightsError, match="timm/resnet10t"):
        build(TIMM_SMALL, pretrained="imagenet")


def test_imagenet_weights_are_loaded_from_the_hf_cache_for_timm(hf_cache: Path) -> None:
    import timm

    source = timm.create_model("resnet10t", pretrained=False).state_dict()
    put_in_hf_cache(hf_cache / "hf" / "hub", "timm/resnet10t.c3_in1k", source)
    model = build(TIMM_SMALL, in_chans=3, num_classes=7, pretrained="imagenet")
    assert torch.equal(model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert model.fc.out_features == 7


def test_imagenet_is_refused_for_the_small_cnns() -> None:
    with pytest.raises(ConfigError, match="imagenet is not available"):
        build("tiny_cnn", pretrained="imagenet")


def test_timm_vit_pretrained_at_another_resolution_interpolates_position_embeddings(hf_cache: Path) -> None:
    import timm
    from timm.layers import resample_abs_pos_embed
    from timm.models import get_pretrained_cfg

    source = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()
    repo_id = get_pretrained_cfg("vit_tiny_patch16_224").hf_hub_id
    put_in_hf_cache(hf_cache / "hf" / "hub", repo_id, source)

    spec = ModelSpec(name="timm:vit_tiny_patch16_224", pretrained="imagenet")
    model = create_model(spec, 3, 5, image_size=48)
    info = build_info(model)
    assert info == {
        "input_size": 48,
        "native_input_size": 224,
        "pos_embed_interpolated": True,
        "patch_grid": [3, 3],
    }
    expected = resample_abs_pos_embed(source["pos_embed"], new_size=(3, 3), num_prefix_tokens=1)
    assert model.pos_embed.shape == (1, 1 + 9, 192)
    assert torch.allclose(model.pos_embed, expected)
    assert torch.equal(model.blocks[0].attn.qkv.weight, source["blocks.0.attn.qkv.weight"])
    assert model(torch.zeros(2, 3, 48, 48)).shape == (2, 5)

    native = create_model(spec, 3, 5, image_size=224)
    assert build_info(native)["pos_embed_interpolated"] is False
    assert torch.equal(native.pos_embed, source["pos_embed"])
    cnn = create_model(ModelSpec(name="timm:resnet10t"), 3, 5, image_size=48)
    assert build_info(cnn) == {}  # any input size: nothing about the build depends on it


def weights_json(*args: str) -> list[dict]:
    """`archbench weights ... --json` in this process: it reads the caches (`hf_cache`) at call time."""
    res = cli("weights", *args, "--json")
    assert res.returncode == 0, res.stderr
    rows: list[dict] = json.loads(res.stdout)
    return rows


def test_weights_lists_torchvision_files_present_and_absent(hf_cache: Path) -> None:
    import torchvision

    url = torchvision.models.get_model_weights("resnet50").DEFAULT.url
    folder = hf_cache / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / url.rsplit("/", 1)[-1]).write_bytes(b"a fake file: listing never reads it")

    rows = {r["model"]: r for r in weights_json("resnet*")}
    assert sorted(rows) == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    present = rows["resnet50"]
    assert present["present"] is True and present["found"] == str(folder / present["file"])
    assert present["url"] == url and present["url"].startswith("https://download.pytorch.org/models/")
    absent = rows["resnet18"]
    assert absent["present"] is False and absent["found"] is None
    assert absent["expected"] == str(folder / absent["file"])
    assert absent["url"].endswith(absent["file"])
    everything = {r["model"] for r in weights_json()}
    assert {"vit_b_16", "efficientnet_b3", "resnet152"} <= everything and "tiny_cnn" not in everything


def test_weights_lists_timm_files_in_the_hf_cache(hf_cache: Path) -> None:
    from timm.models import get_pretrained_cfg

    repo_id = get_pretrained_cfg("vit_tiny_patch16_224").hf_hub_id
    put_in_hf_cache(hf_cache / "hf" / "hub", repo_id, {"w": torch.zeros(1)})
    rows = {r["model"]: r for r in weights_json("timm:vit_tiny_patch16_*")}
    tiny = rows["timm:vit_tiny_patch16_224"]
    assert tiny["present"] is True and tiny["found"].endswith("model.safetensors")
    assert tiny["url"] == f"https://huggingface.co/{repo_id}/resolve/main/model.safetensors"
    assert rows["timm:vit_tiny_patch16_384"]["present"] is False


def test_weights_pattern_matching_nothing_is_one_line_and_exit_2() -> None:
    res = cli("weights", "resnet_9000*")
    assert res.returncode == 2
    assert "no model with ImageNet weights matches 'resnet_9000*'" in res.stderr


def test_study_without_the_imagenet_weights_names_file_and_url(hf_cache: Path) -> None:
    tmp_path = hf_cache
    args = smoke_args(STUDIES["three_families"])
    i = args.index("model.pretrained=null")
    overrides = args[: i - 1] + args[i + 1 :]  # the smoke override without its `--set model.pretrained=null`
    res = cli(
        "run", str(STUDIES["three_families"]), *overrides, "--set", f"output_dir={tmp_path / 'out'}",
        "--set", f"data.root={cifar10_root(tmp_path)}", "--set", "grid.model.name=[resnet50]",
    )  # fmt: skip
    out = " ".join((res.stdout + res.stderr + failure_details(tmp_path / "out")).split())
    assert res.returncode != 0
    assert "resnet50-11ad3fa6.pth" in out
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in out
