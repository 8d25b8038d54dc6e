"""Any timm model as `timm:NAME`: owns checking NAME against timm's list and the build; never downloads.

Options map onto timm's keywords (`in_chans`, `num_classes`, `drop_rate`, `global_pool='max'`, and
`img_size` for models whose pretrained config has a fixed input size, when the run's differs); only those
that differ from timm's defaults are passed, so a model lacking one still builds. `stem: cifar` is not
defined here. Stages for `freeze` are timm's coarse layer groups (stem first, then the blocks), head
excluded. ImageNet weights are used only if timm's default file is already in the local caches; RGB
first-conv filters are then re-placed on the bands named red/green/blue (bands.py), as for torchvision.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from archbench.models.base import TIMM_PREFIX, BuildArgs, Built, nearest_names
from archbench.util.errors import ConfigError, UnknownModelError


@lru_cache(maxsize=1)
def _timm_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """(every accepted name: architectures and their pretrained tags, the architectures alone)."""
    import timm

    architectures = tuple(timm.list_models())
    tagged = timm.list_models(pretrained=True)
    return frozenset(architectures) | frozenset(tagged), architectures


def check_timm_name(name: str) -> None:
    """Raise `UnknownModelError` with the nearest timm names unless `name` is in `timm.list_models()`."""
    accepted, architectures = _timm_names()
    if name in accepted:
        return
    near = ", ".join(TIMM_PREFIX + n for n in nearest_names(name, list(architectures)))
    raise UnknownModelError(
        f"unknown model.name {TIMM_PREFIX + name!r}: {name!r} is not in timm.list_models(); nearest: {near}"
    )


def build_timm(args: BuildArgs) -> Built:
    import timm

    name = args.name[len(TIMM_PREFIX) :]
    spec = args.spec
    kwargs: dict[str, Any] = {"num_classes": args.num_classes, "in_chans": args.in_chans}
    if spec.dropout > 0:
        kwargs["drop_rate"] = spec.dropout
    if spec.pool == "max":
        kwargs["global_pool"] = "max"
    pretrained = spec.pretrained == "imagenet"
    info = _input_size_info(name, args.image_size, pretrained)
    if info.get("input_size") != info.get("native_input_size"):
        # A fixed-size model (ViT, DeiT, Swin...) is built for the run's input; timm resamples pretrained
        # position embeddings to the new patch grid when it loads them (`checkpoint_filter_fn`).
        kwargs["img_size"] = info["input_size"]
    file: Path | None = None
    if pretrained:
        from archbench.models.weights import timm_pretrained_file

        # A local file overrides timm's download sources; timm still adapts the first conv and the head.
        file = timm_pretrained_file(name)
        kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        options = ", ".join(k for k in ("drop_rate", "global_pool", "img_size") if k in kwargs)
        raise ConfigError(f"timm model {name!r} does not accept these options ({options}): {exc}") from exc
    if info:
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        if grid is not None:
            info["patch_grid"] = [int(g) for g in grid]
    if file is not None:
        info.update(_first_conv_by_band(model, file, args))
    return Built(model, _stages(model, name) if spec.freeze > 0 else [], info)


def _first_conv_by_band(model: nn.Module, file: Path, args: BuildArgs) -> dict[str, Any]:
    """timm fitted the first conv while loading (its `adapt_input_conv`, cyclic tiling); with RGB weights
    and bands named red/green/blue (or `model.band_map`), place the file's own filters by name instead
    (bands.py). Returns what the record's model_build says about it."""
    import torch

    from archbench.models.bands import adapt_pretrained_input
    from archbench.models.weights import read_state_dict

    first = getattr(model, "pretrained_cfg", {}).get("first_conv")
    key = f"{first}.weight" if isinstance(first, str) else None
    param = dict(model.named_parameters()).get(key) if key else None
    source = read_state_dict(file).get(key) if key and param is not None else None
    if (
        param is None
        or source is None
        or source.shape[:1] + source.shape[2:] != param.shape[:1] + param.shape[2:]
    ):
        if args.spec.band_map:
            raise ConfigError(f"model.band_map: cannot find the first conv of {args.name} in {file}")
        tiled = args.in_chans != 3
        return (
            {"input_bands_from": "cyclic tiling of the pretrained channels (timm's adapt_input_conv)"}
            if tiled
            else {}
        )
    weight, info = adapt_pretrained_input(source, args.in_chans, args.band_names, args.spec.band_map)
    if "input_bands" in info:  # else timm's own tiling (the same as adapt_input_conv's) stays
        with torch.no_grad():
            param.copy_(weight)
    return info


def timm_has_layer_groups(name: str) -> bool:
    """Does timm model `name` define `group_matcher` (the layers `train.layer_decay` scales)? Built on the
    meta device: no memory, no init cost. A model that will not build there is given the benefit of the
    doubt; the optimizer checks the real one (engine/optim.py)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:  # noqa: BLE001 - any build failure here is the build's to report, at run time
        return True
    return callable(getattr(model, "group_matcher", None))


def _input_size_info(name: str, image_size: int | None, pretrained: bool) -> dict[str, Any]:
    """For a timm model with a fixed input size: the run's size, the native one, and whether it is resized.

    Empty for models that take any size (CNNs): nothing about them depends on the run's resolution.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.fixed_input_size or image_size is None:
        return {}
    native = int(cfg.input_size[-1])
    return {
        "input_size": image_size,
        "native_input_size": native,
        "pos_embed_interpolated": pretrained and image_size != native,
    }


def _stages(model: nn.Module, name: str) -> list[tuple[str, list[nn.Parameter]]]:
    from timm.models import group_parameters

    matcher = getattr(model, "group_matcher", None)
    try:
        groups = group_parameters(model, matcher(coarse=True)) if callable(matcher) else None
    except NotImplementedError:
        groups = None
    if not groups:
        raise ConfigError(f"model.freeze is not supported for timm:{name} (it defines no layer groups)")
    get_classifier: Any = getattr(model, "get_classifier", None)
    classifier = get_classifier() if callable(get_classifier) else None
    head = {id(p) for p in classifier.parameters()} if isinstance(classifier, nn.Module) else set()
    named = dict(model.named_parameters())
    everywhere = Counter(prefix for name in named for prefix in _prefixes(name))
    stages: list[tuple[str, list[nn.Parameter]]] = []
    for group in sorted(groups):
        names = [n for n in groups[group] if id(named[n]) not in head]
        if names:
            stages.append((_label(names, everywhere), [named[n] for n in names]))
    return stages


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _label(names: list[str], everywhere: Counter[str]) -> str:
    """The largest modules wholly inside a group, e.g. 'conv1+bn1', 'layer2', 'blocks.11+norm'."""
    inside = Counter(prefix for name in names for prefix in _prefixes(name))
    labels = (next(p for p in _prefixes(name) if inside[p] == everywhere[p]) for name in names)
    return "+".join(dict.fromkeys(labels))
