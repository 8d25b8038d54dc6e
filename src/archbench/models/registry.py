"""The model registry and its one door, `create_model`: owns which names exist; never imports torch at import.

Names are looked up in `_REGISTRY` (filled by `@register_model` in `zoo.py`) and nowhere else: a name is
never imported, eval'd or resolved as a path. `timm:NAME` is the one escape hatch, accepted only when
`NAME` is in `timm.list_models()`. Heavy modules (torch, torchvision, timm) are imported inside functions so
`import archbench.models` and `check_model_name` on a registered name stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archbench.config import ModelSpec
from archbench.models.base import TIMM_PREFIX as TIMM_PREFIX  # re-exported: older callers import it from here
from archbench.models.base import BuildArgs, Builder, nearest_names
from archbench.models.base import Built as Built
from archbench.util.errors import ConfigError, UnknownModelError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    build: Builder


@dataclass(frozen=True)
class PrefixFamily:
    """A whole library reachable as `PREFIX:NAME` (timm): its own name check and builder."""

    family: str
    check: Callable[[str], None]
    build: Builder


_REGISTRY: dict[str, ModelEntry] = {}
_PREFIXES: dict[str, PrefixFamily] = {}
# Families without published ImageNet weights; `pretrained: imagenet` is a config error for them.
_NO_IMAGENET = {"small_cnn"}


def register_model(family: str) -> Callable[[Builder], Builder]:
    """Register an entrypoint under its function name, in `family`."""

    def deco(fn: Builder) -> Builder:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = ModelEntry(name=name, family=family, build=fn)
        return fn

    return deco


def register_prefix(prefix: str, family: str, check: Callable[[str], None], build: Builder) -> None:
    """Make every `prefix + NAME` a model of `family` (names checked by `check`, built by `build`)."""
    _PREFIXES[prefix] = PrefixFamily(family, check, build)


def _prefix_of(name: str) -> str | None:
    return next((p for p in _PREFIXES if isinstance(name, str) and name.startswith(p)), None)


def model_names() -> list[str]:
    """The registered names (timm's names are reachable as `timm:NAME` but not listed here)."""
    return sorted(_REGISTRY)


def check_model_name(name: str) -> None:
    """Raise `UnknownModelError` (naming the nearest names) unless `name` is registered or a timm model."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model.name must be a string, got {type(name).__name__}")
    prefix = _prefix_of(name)
    if prefix is not None:
        _PREFIXES[prefix].check(name[len(prefix) :])
        return
    if name in _REGISTRY:
        return
    near = ", ".join(nearest_names(name, model_names()))
    raise UnknownModelError(
        f"unknown model.name {name!r}; nearest registered names: {near}. "
        f"Use one of archbench's names (see `model_names()`) or timm:NAME for any timm model."
    )


def model_family(name: str) -> str:
    """The family of a name: resnet, vgg, mobilenet, efficientnet, vit, small_cnn or timm.

    Any `timm:` name is "timm" without consulting timm (cheap); `check_model_name` validates it.
    """
    prefix = _prefix_of(name)
    if prefix is not None:
        return _PREFIXES[prefix].family
    check_model_name(name)
    return _REGISTRY[name].family


def check_model_spec(spec: ModelSpec) -> None:
    """Validate a model spec (name and option combinations) without building it or importing torch."""
    check_model_name(spec.name)
    _check_options(spec, model_family(spec.name))


def _check_options(spec: ModelSpec, family: str) -> None:
    """Reject option combinations a family cannot honour, before anything is built."""
    if spec.stem == "cifar" and family not in ("resnet", "small_cnn"):
        raise ConfigError(
            f"model.stem: cifar is only defined for ResNets and archbench's small CNNs (which are built for "
            f"small inputs already; model.name={spec.name!r} is {family}); "
            "use stem: imagenet"
        )
    if spec.pool == "max" and family == "vit":
        raise ConfigError(
            f"model.pool=max is not supported for vit (model.name={spec.name!r} classifies from the class "
            "token, there is no global pooling); use pool: avg"
        )
    if spec.pretrained == "imagenet" and family in _NO_IMAGENET:
        raise ConfigError(
            f"model.pretrained: imagenet is not available for {spec.name!r} (no published weights); "
            "use null or a local weights file"
        )
    if spec.band_map and spec.pretrained is None:
        raise ConfigError("model.band_map places pretrained filters; set model.pretrained or drop band_map")


def layer_decay_refusal(name: str) -> str:
    """The one line that says `train.layer_decay` cannot apply to model `name`."""
    return (
        f"train.layer_decay: model {name} has no layer groups (most timm models define them, through "
        "group_matcher; torchvision and archbench's small CNNs do not); use a timm:NAME model or leave "
        "layer_decay unset"
    )


def layer_decay_problem(name: str) -> str | None:
    """Why `train.layer_decay` cannot apply to model `name` (None: it can). Only timm models have layer
    groups (timm's `auto_group_layers` fallback would group other models by parameter count, or not at
    all); a timm name is built on the meta device (no memory, no weights) to ask its class."""
    if model_family(name) != "timm":
        return layer_decay_refusal(name)
    from archbench.models.timm_family import timm_has_layer_groups

    return None if timm_has_layer_groups(name[len(TIMM_PREFIX) :]) else layer_decay_refusal(name)


def create_model(
    spec: ModelSpec,
    in_chans: int,
    num_classes: int,
    *,
    image_size: int | None = None,
    band_names: list[str] | tuple[str, ...] | None = None,
) -> nn.Module:
    """Build the model a `ModelSpec` describes: the only way archbench constructs a model.

    Order: build (random init, or ImageNet weights loaded before the first conv and head are adapted) →
    load a local `pretrained` file (head weights of the wrong shape dropped) → freeze the first
    `spec.freeze` stages. `image_size` is the square input size; only families with a fixed input size use
    it (torchvision vit, default 224; timm models whose pretrained config says `fixed_input_size`, such as
    ViT/DeiT/Swin): they are built for it, and pretrained position embeddings are interpolated to the new
    patch grid. `band_names` (the dataset's, in input order) place RGB-pretrained first-conv filters on the
    bands of those names, or as `spec.band_map` says (bands.py). `build_info(model)` tells what was done.
    Frozen means `requires_grad=False` only: BatchNorm layers in frozen stages still update their running
    statistics in train mode.
    """
    check_model_name(spec.name)
    if in_chans < 1 or num_classes < 1:
        raise ConfigError(f"model needs in_chans >= 1 and num_classes >= 1, got {in_chans} and {num_classes}")
    family = model_family(spec.name)
    _check_options(spec, family)
    bands = tuple(band_names) if band_names is not None else None
    args = BuildArgs(spec.name, family, spec, in_chans, num_classes, image_size, bands)
    prefix = _prefix_of(spec.name)
    if prefix is not None:
        built = _PREFIXES[prefix].build(args)
    else:
        built = _REGISTRY[spec.name].build(args)

    if spec.freeze > len(built.stages):
        names = ", ".join(stage for stage, _ in built.stages) or "none"
        raise ConfigError(
            f"model.freeze={spec.freeze} but {spec.name} has {len(built.stages)} stages ({names}); "
            f"use 0..{len(built.stages)}"
        )
    if spec.pretrained is not None and spec.pretrained != "imagenet":
        from archbench.models.weights import load_local_weights

        loaded = load_local_weights(built.model, spec.pretrained, bands, spec.band_map)
        built.info.update(loaded["input_conv"])
    for _, params in built.stages[: spec.freeze]:
        for param in params:
            param.requires_grad_(False)
    built.model.archbench_build_info = dict(built.info)  # type: ignore[assignment]
    return built.model


def build_info(model: nn.Module) -> dict[str, Any]:
    """The build facts `create_model` attached to `model` (empty for a model built elsewhere)."""
    info = getattr(model, "archbench_build_info", None)
    return dict(info) if isinstance(info, dict) else {}
