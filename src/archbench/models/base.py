"""Model-building types shared by the registry and every family: owns what an entrypoint takes and returns.

Imports no torch at import time and nothing else of archbench.models, so families and the registry both
import it without a cycle.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archbench.config import ModelSpec

if TYPE_CHECKING:
    from torch import nn

TIMM_PREFIX = "timm:"
NEAREST = 5


@dataclass(frozen=True)
class BuildArgs:
    """Everything an entrypoint needs; `image_size` only matters to families with a fixed input size (vit),
    `band_names` only to pretrained first convs."""

    name: str
    family: str
    spec: ModelSpec
    in_chans: int
    num_classes: int
    image_size: int | None = None
    band_names: tuple[str, ...] | None = None  # the dataset's band names, in input order (see bands.py)


@dataclass
class Built:
    """What an entrypoint returns: the model, its ordered stages (stem first) for `freeze`, and build facts.

    `info` holds what a reader of the record should know about how the network was built for this run
    (e.g. a ViT's `input_size`, `native_input_size` and `pos_embed_interpolated`); `create_model` attaches
    it to the model as `archbench_build_info`.
    """

    model: nn.Module
    stages: list[tuple[str, list[nn.Parameter]]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[BuildArgs], Built]


def nearest_names(name: str, candidates: list[str], n: int = NEAREST) -> list[str]:
    """The `n` candidates most similar to `name` (difflib ratio), best first; never empty if candidates."""
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.0)


def count_params(model: nn.Module) -> dict[str, int]:
    """Total and trainable (requires_grad) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": int(total), "trainable": int(trainable)}
