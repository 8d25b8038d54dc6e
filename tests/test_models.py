"""Tests of archbench.models: every name builds and trains, every ModelSpec option works, files are safe."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # timm/HF hub lookups must never reach for the network here

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from archbench.config import ModelSpec
from archbench.models import check_model_name, create_model, model_family, model_names
from archbench.util.errors import CheckpointError, ConfigError, MissingWeightsError, UnknownModelError

TIMM_SMALL = "timm:resnet10t"
FIRST_CONV = {
    "resnet18": lambda m: m.conv1,
    "vgg11": lambda m: m.features[0],
    "mobilenet_v3_small": lambda m: m.features[0][0],
    "efficientnet_b0": lambda m: m.features[0][0],
    "tiny_cnn": lambda m: m.features[0][0],
    TIMM_SMALL: lambda m: m.conv1[0],
}


def build(name: str, in_chans: int = 3, num_classes: int = 10, **options: Any) -> Any:
    """A model as `create_model` builds it (typed Any: tests reach into family-specific attributes)."""
    image_size = 32 if name == "vit_b_16" else None  # ViT's input size is fixed at build time
    return create_model(ModelSpec(name=name, **options), in_chans, num_classes, image_size=image_size)


def train_step(model: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % num_classes).backward()
    return out


# --- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", model_names())
def test_every_registered_name_builds_and_trains_a_step(name: str) -> None:
    torch.manual_seed(0)
    model = build(name)
    train_step(model, torch.randn(2, 3, 32, 32), 10)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_registry_lists_the_brief_and_families() -> None:
    names = set(model_names())
    expected = {f"resnet{d}" for d in (18, 34, 50, 101, 152)} | {"vgg11", "vgg11_bn", "vgg16", "vgg16_bn"}
    expected |= {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "vit_b_16", "tiny_cnn"}
    expected |= {f"efficientnet_b{i}" for i in range(4)} | {"simple_cnn"}
    assert names == expected
    families = {
        "resnet50": "resnet",
        "vgg16_bn": "vgg",
        "mobilenet_v2": "mobilenet",
        "efficientnet_b3": "efficientnet",
        "vit_b_16": "vit",
        "tiny_cnn": "small_cnn",
        "simple_cnn": "small_cnn",
        TIMM_SMALL: "timm",
    }
    assert {name: model_family(name) for name in families} == families


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("resnet_9000", "resnet50"),
        ("os.system", "nearest registered names: "),
        ("../../x", "nearest registered names: "),
        ("__import__('os')", "nearest registered names: "),
        ("timm:not_a_model_xyz", "timm:"),
        ("timm:../../x", "timm:"),
    ],
)
def test_unknown_names_are_rejected_with_suggestions(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        check_model_name(name)
    message = str(info.value)
    assert suggestion in message
    suggested = message.split("nearest", 1)[1]
    known = model_names() if not name.startswith("timm:") else ["timm:resnet", "timm:"]
    assert any(n in suggested for n in known)  # at least one real name is offered
    with pytest.raises(UnknownModelError):
        create_model(ModelSpec(name=name), 3, 10)


def test_timm_names_are_checked_against_timm() -> None:
    check_model_name(TIMM_SMALL)
    check_model_name("timm:resnet10t.c3_in1k")  # a pretrained tag is a timm name too


def test_importing_and_checking_a_name_does_not_import_torch() -> None:
    code = "import sys, archbench.models as m; m.check_model_name('resnet18'); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# --- in_chans, pool, stem, freeze, dropout -------------------------------------------------------------


@pytest.mark.parametrize("in_chans", [1, 6])
@pytest.mark.parametrize("name", list(FIRST_CONV))
def test_in_chans_adapts_the_first_conv(name: str, in_chans: int) -> None:
    model = build(name, in_chans=in_chans, num_classes=4)
    assert FIRST_CONV[name](model).in_channels == in_chans
    train_step(model, torch.randn(2, in_chans, 32, 32), 4)


@pytest.mark.parametrize(
    ("name", "pool_of", "size"),
    [
        ("resnet18", lambda m: m.avgpool, 1),
        ("vgg11", lambda m: m.avgpool, 7),
        ("mobilenet_v2", lambda m: m.avgpool, 1),
        ("mobilenet_v3_small", lambda m: m.avgpool, 1),
        ("efficientnet_b0", lambda m: m.avgpool, 1),
        ("tiny_cnn", lambda m: m.pool, 1),
        (TIMM_SMALL, lambda m: m.global_pool.pool, 1),
    ],
)
def test_pool_max_uses_max_pooling(name: str, pool_of, size: int) -> None:
    assert isinstance(pool_of(build(name, num_classes=3)), nn.AdaptiveAvgPool2d)
    model = build(name, num_classes=3, pool="max")
    pool = pool_of(model)
    assert isinstance(pool, nn.AdaptiveMaxPool2d) and pool.output_size in (size, (size, size))
    calls: list[torch.Size] = []
    pool.register_forward_hook(lambda _m, _i, out: calls.append(out.shape))
    model.eval()(torch.randn(2, 3, 32, 32))
    assert len(calls) == 1  # the max-pool is really on the forward path


def test_pool_max_is_refused_for_vit() -> None:
    with pytest.raises(ConfigError, match="pool=max is not supported for vit"):
        build("vit_b_16", pool="max")


def test_vit_input_size_defaults_to_224_and_must_fit_patches() -> None:
    with pytest.raises(ConfigError, match="multiple of 16"):
        create_model(ModelSpec(name="vit_b_16"), 3, 10, image_size=30)
    model = create_model(ModelSpec(name="vit_b_16"), 3, 10)
    assert model.image_size == 224  # type: ignore[attr-defined]


@pytest.mark.parametrize("in_chans", [3, 1])
def test_cifar_stem_is_3x3_stride_1_without_maxpool(in_chans: int) -> None:
    model = build("resnet18", in_chans=in_chans, stem="cifar")
    conv1 = model.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert conv1.in_channels == in_chans
    assert isinstance(model.maxpool, nn.Identity)
    train_step(model, torch.randn(2, in_chans, 8, 8), 10)


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg11", "vit_b_16", TIMM_SMALL])
def test_cifar_stem_is_refused_outside_resnets(name: str) -> None:
    with pytest.raises(ConfigError, match="stem: cifar is only defined for ResNets"):
        build(name, stem="cifar")


def test_cifar_stem_is_a_no_op_for_small_cnns() -> None:
    """A grid mixing tiny_cnn and resnet18 can set stem: cifar once; small CNNs are small-input nets."""
    a, b = build("tiny_cnn", stem="cifar"), build("tiny_cnn")
    assert [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]


def test_freeze_2_on_resnet18_freezes_stem_and_layer1() -> None:
    model = build("resnet18", freeze=2)
    train_step(model, torch.randn(2, 3, 32, 32), 10)
    for part in ("conv1", "bn1", "layer1"):
        assert all(p.grad is None and not p.requires_grad for p in getattr(model, part).parameters()), part
    for part in ("layer2", "layer3", "layer4", "fc"):
        assert all(p.grad is not None for p in getattr(model, part).parameters()), part


@pytest.mark.parametrize(
    ("name", "first", "after"),
    [
        ("tiny_cnn", lambda m: m.features[0], lambda m: m.features[1]),
        ("mobilenet_v3_small", lambda m: m.features[0], lambda m: m.features[1]),
        ("vgg11", lambda m: m.features[0], lambda m: m.features[3]),  # block 1 = conv, relu, max-pool
        (TIMM_SMALL, lambda m: m.conv1, lambda m: m.layer1),
    ],
)
def test_freeze_1_freezes_only_the_stem(name: str, first, after) -> None:
    model = build(name, freeze=1)
    assert not any(p.requires_grad for p in first(model).parameters())
    assert all(p.requires_grad for p in after(model).parameters())


def test_freeze_beyond_the_stages_is_a_config_error() -> None:
    build("resnet18", freeze=5)  # stem + 4 layers: everything but the head
    with pytest.raises(ConfigError, match="has 5 stages"):
        build("resnet18", freeze=6)
    with pytest.raises(ConfigError, match="has 2 stages"):
        build("tiny_cnn", freeze=3)


def test_dropout_shows_up_before_the_final_linear() -> None:
    fc = build("resnet18", dropout=0.3).fc
    assert isinstance(fc, nn.Sequential) and isinstance(fc[0], nn.Dropout) and fc[0].p == 0.3
    assert isinstance(fc[1], nn.Linear)
    assert isinstance(build("resnet18").fc, nn.Linear)
    assert build("mobilenet_v3_small", dropout=0.3).classifier[-2].p == 0.3
    assert build("mobilenet_v3_small").classifier[-2].p == 0.0  # the config says what runs
    assert build("tiny_cnn", dropout=0.4).dropout.p == 0.4
    assert build("vit_b_16", dropout=0.2).heads.dropout.p == 0.2
    assert build(TIMM_SMALL, dropout=0.25).drop_rate == 0.25


# --- pretrained weights --------------------------------------------------------------------------------


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
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def _tv_weights_file(name: str) -> str:
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT.url.rsplit("/", 1)[-1]


def test_imagenet_weights_missing_say_which_file_to_put_where(empty_torch_home: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        build("resnet18", pretrained="imagenet")
    message = str(info.value)
    assert _tv_weights_file("resnet18") in message
    assert str(empty_torch_home / "torch" / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/" in message


def test_imagenet_weights_are_loaded_from_the_hub_cache(empty_torch_home: Path) -> None:
    import torchvision

    source = torchvision.models.resnet18(weights=None).state_dict()
    folder = empty_torch_home / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(source, folder / _tv_weights_file("resnet18"))
    model = build("resnet18", in_chans=1, num_classes=4, pretrained="imagenet")
    assert torch.equal(model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert torch.allclose(model.conv1.weight, source["conv1.weight"].sum(dim=1, keepdim=True))
    assert model.fc.out_features == 4


def test_imagenet_weights_missing_for_timm(empty_torch_home: Path) -> None:
    with pytest.raises(MissingWeightsError, match="timm/resnet10t"):
        build(TIMM_SMALL, pretrained="imagenet")


def put_in_hf_cache(cache: Path, repo_id: str, state: dict[str, torch.Tensor]) -> None:
    """Lay `state` out as the Hugging Face cache holds a downloaded `model.safetensors` of `repo_id`."""
    from safetensors.torch import save_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))


def test_imagenet_weights_are_loaded_from_the_hf_cache_for_timm(empty_torch_home: Path) -> None:
    import timm

    source = timm.create_model("resnet10t", pretrained=False).state_dict()
    put_in_hf_cache(empty_torch_home / "hf", "timm/resnet10t.c3_in1k", source)
    model = build(TIMM_SMALL, in_chans=3, num_classes=7, pretrained="imagenet")
    assert torch.equal(model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert model.fc.out_features == 7


def test_imagenet_is_refused_for_the_small_cnns() -> None:
    with pytest.raises(ConfigError, match="imagenet is not available"):
        build("tiny_cnn", pretrained="imagenet")
