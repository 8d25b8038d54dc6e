"""What the model registry holds, for people (`archbench models [PATTERN]`, `archbench weights`): owns the
listings, builds nothing real (parameter counts come from a build on torch's meta device: shapes only, no
memory, no weights).
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from archbench.config import ModelSpec
from archbench.models.base import TIMM_PREFIX
from archbench.models.registry import model_family, model_names
from archbench.util.errors import ConfigError

if TYPE_CHECKING:
    from archbench.models.weights import WeightsLocation

CATALOG_SIZE = 224  # parameter counts are for a 3-channel, 1000-class model at this input size


def matching_names(pattern: str = "*") -> list[str]:
    """Registered names matching the fnmatch `pattern` (like timm's `list_models('resnet*')`);
    `timm:PATTERN` lists timm's own names instead, prefixed."""
    if pattern.startswith(TIMM_PREFIX):
        import timm

        return [TIMM_PREFIX + n for n in timm.list_models(pattern[len(TIMM_PREFIX) :])]
    return [n for n in model_names() if fnmatch.fnmatchcase(n, pattern)]


def params_at(name: str, size: int = CATALOG_SIZE) -> int | None:
    """Total parameters of `name` built for 3 channels, 1000 classes at `size` px (None if it cannot be)."""
    import torch

    from archbench.models.base import count_params
    from archbench.models.registry import create_model

    try:
        with torch.device("meta"):
            model = create_model(ModelSpec(name=name), in_chans=3, num_classes=1000, image_size=size)
    except Exception:  # a listing must not fail on one model
        return None
    return count_params(model)["total"]


def local_weights(name: str) -> bool | None:
    """Whether ImageNet weights for `name` are already on this machine (None: the family has none)."""
    from archbench.models.registry import _NO_IMAGENET
    from archbench.models.weights import timm_weights_location, torchvision_weights_location
    from archbench.util.errors import ArchbenchError

    family = model_family(name)
    if family in _NO_IMAGENET:
        return None
    try:
        if family == "timm":
            where = timm_weights_location(name[len(TIMM_PREFIX) :])
        else:
            where = torchvision_weights_location(name)
    except (ArchbenchError, RuntimeError, ValueError, KeyError):
        return False
    return where.found is not None


def list_models(pattern: str = "*", params: bool = True) -> list[dict[str, Any]]:
    """One row per matching name: name, family, params at 224 px (if `params`), local ImageNet weights."""
    rows = []
    for name in matching_names(pattern):
        row: dict[str, Any] = {"name": name, "family": model_family(name)}
        if params:
            row["params_224"] = params_at(name)
        row["imagenet_weights_local"] = local_weights(name)
        rows.append(row)
    return rows


_TIMM_LIST_CAP = 200


def list_weights(pattern: str | None = None) -> list[WeightsLocation]:
    """Every registered model with published ImageNet weights whose name matches `pattern` (fnmatch).

    `timm:PATTERN` lists timm architectures with pretrained weights instead (at most 200); without a
    pattern only archbench's registered names are listed.
    """
    from archbench.models.registry import _NO_IMAGENET
    from archbench.models.weights import timm_weights_location, torchvision_weights_location

    if pattern and pattern.startswith(TIMM_PREFIX):
        import timm

        names = timm.list_models(pattern[len(TIMM_PREFIX) :] or "*", pretrained=True)
        archs = list(dict.fromkeys(n.split(".", 1)[0] for n in names))[:_TIMM_LIST_CAP]
        out = []
        for arch in archs:
            try:
                out.append(timm_weights_location(arch))
            except ConfigError:
                continue  # JAX-only weights: nothing archbench can load
        return out
    wanted = pattern or "*"
    return [
        torchvision_weights_location(name)
        for name in model_names()
        if model_family(name) not in _NO_IMAGENET and fnmatch.fnmatchcase(name, wanted)
    ]
