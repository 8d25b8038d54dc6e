"""What is profiled: owns `Target` (architecture + input size + the run's training settings) and its build.

A target is plain data (pydantic specs and ints) so it travels to the memory subprocess as JSON.
The network is built through `create_model` without pretrained weights: what a network costs does not
depend on its weight values, and a fresh build lets every resolution (ViT's input size is fixed at build
time) and the memory subprocess measure the very same architecture as the in-process timings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archbench.config import ModelSpec, TrainSpec

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Target:
    model: ModelSpec
    in_chans: int
    num_classes: int
    size: tuple[int, int]  # (height, width) of one input image
    train: TrainSpec = field(default_factory=TrainSpec)  # optimizer of the training step, amp, channels_last

    @property
    def resolution(self) -> int | list[int]:
        """The side of a square input, or [height, width]."""
        h, w = self.size
        return h if h == w else [h, w]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.model_dump(mode="json"),
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "size": list(self.size),
            "train": self.train.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        h, w = (int(v) for v in data["size"])
        return cls(
            model=ModelSpec.model_validate(data["model"]),
            in_chans=int(data["in_chans"]),
            num_classes=int(data["num_classes"]),
            size=(h, w),
            train=TrainSpec.model_validate(data["train"]),
        )


def build_model(target: Target, device: torch.device, channels_last: bool = False) -> nn.Module:
    """The target's network on `device` (random weights, `freeze` applied), in eval mode."""
    import torch

    from archbench.models import create_model

    h, w = target.size
    spec = target.model.model_copy(update={"pretrained": None})
    model = create_model(spec, target.in_chans, target.num_classes, image_size=h if h == w else None)
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def example_batch(
    target: Target, batch: int, device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random input batch and random labels of the target's shape (values do not change the cost)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, target.in_chans, *target.size, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, target.num_classes, (batch,), generator=gen).to(device)
    return x, y
