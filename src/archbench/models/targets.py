"""Grad-CAM target layers per model family: owns which layer each architecture explains from; builds nothing.

A family's target is its last convolutional stage (ResNet `layer4`, VGG's last conv activation, the last
block of MobileNet/EfficientNet/small-CNN `features`) or, for Vision Transformers, the last encoder block's
first norm with a reshape from tokens (class/register tokens dropped) to an N×C×H×W grid. timm models are
matched by shape (ViT-style `blocks[-1].norm1`, else the deepest `feature_info` stage, checked on an
example input). Anything else raises `NoTargetLayer`, which callers record as a skipped method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from archbench.models.registry import model_family
from archbench.util.errors import ArchbenchError

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]


class NoTargetLayer(ArchbenchError):
    """The model's family has no known Grad-CAM target layer (the method is skipped, the run is not)."""


def tokens_to_grid(prefix_tokens: int, grid: tuple[int, int] | None = None) -> ReshapeTransform:
    """Reshape transformer tokens B×T×C to B×C×H×W, dropping the first `prefix_tokens` (class, registers).

    `grid` is the patch grid (rows, cols); without it (or when it does not match) the patches must form a
    square.
    """

    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        patches = tensor[:, prefix_tokens:, :]
        n = patches.shape[1]
        rows, cols = grid if grid is not None and grid[0] * grid[1] == n else (math.isqrt(n), math.isqrt(n))
        if rows * cols != n:
            raise ValueError(f"{n} patch tokens do not form a {rows}x{cols} grid")
        return patches.reshape(tensor.shape[0], rows, cols, tensor.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _channels_first(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


def _last_relu_before_pool(features: nn.Sequential) -> nn.Module:
    """VGG: the activation after the last conv (before the final max-pool, which halves the map again)."""
    layers = list(features)
    last_conv = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d))
    after = layers[last_conv + 1 :]
    for layer in after:
        if isinstance(layer, nn.MaxPool2d):
            break
        if isinstance(layer, nn.ReLU):
            return layer
    return layers[last_conv]


def is_timm_vit(model: nn.Module) -> bool:
    """A timm Vision Transformer layout: `blocks` with `norm1`, a `patch_embed` and `num_prefix_tokens`."""
    blocks = getattr(model, "blocks", None)
    return (
        isinstance(blocks, nn.Sequential | nn.ModuleList)
        and len(blocks) > 0
        and hasattr(blocks[-1], "norm1")
        and hasattr(model, "patch_embed")
        and hasattr(model, "num_prefix_tokens")
    )


def _timm_grid(model: nn.Module) -> tuple[int, int] | None:
    grid: Any = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    return (int(grid[0]), int(grid[1])) if grid is not None else None


def _timm_target(
    model: nn.Module, name: str, example_input: torch.Tensor | None
) -> tuple[list[nn.Module], ReshapeTransform | None]:
    if is_timm_vit(model):
        blocks: Any = model.blocks
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        return [blocks[-1].norm1], tokens_to_grid(prefix, _timm_grid(model))
    info: Any = getattr(model, "feature_info", None)
    if not info:
        raise NoTargetLayer(
            f"no known Grad-CAM target layer for family timm ({name}): it is not a ViT with blocks[-1].norm1 "
            "and declares no feature_info stages"
        )
    last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
    module_name, channels = str(last["module"]), int(last["num_chs"])
    layer = model.get_submodule(module_name)
    if example_input is None:
        return [layer], None
    # feature_info names a stage, not its layout: check it is N×C×H×W (or N×H×W×C, as Swin's) on one input.
    seen: list[tuple[int, ...]] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        handle.remove()
    shape = seen[-1] if seen else ()
    if len(shape) == 4 and shape[1] == channels:
        return [layer], None
    if len(shape) == 4 and shape[3] == channels:
        return [layer], _channels_first
    raise NoTargetLayer(
        f"no known Grad-CAM target layer for family timm ({name}): its last feature stage "
        f"{module_name!r} outputs {list(shape)}, not an N×C×H×W map"
    )


def gradcam_target(
    model: nn.Module, name: str, example_input: torch.Tensor | None = None
) -> tuple[list[nn.Module], ReshapeTransform | None]:
    """The Grad-CAM target layers of `model` (registry name `name`) and the reshape its activations need.

    `example_input` (one normalised batch) lets timm models' layouts be checked; raises `NoTargetLayer`
    for a family without a known target.
    """
    family = model_family(name)
    m: Any = model
    if family == "resnet":
        return [m.layer4], None
    if family == "vgg":
        return [_last_relu_before_pool(m.features)], None
    if family in ("mobilenet", "efficientnet", "small_cnn"):
        return [m.features[-1]], None
    if family == "vit":
        grid = m.image_size // m.patch_size
        return [m.encoder.layers[-1].ln_1], tokens_to_grid(1, (grid, grid))
    if family == "timm":
        return _timm_target(model, name, example_input)
    raise NoTargetLayer(f"no known Grad-CAM target layer for family {family} ({name})")
