"""Batched on-device data: owns the uint8 tensors on the training device and their augmentation.

No PIL and no per-image Python in the hot loop: a batch is an index slice of device tensors, cropped and
flipped with batched indexing, resized with one interpolate call, and normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import AugmentSpec
from .data.registry import DatasetBundle, Split


class DeviceSplit:
    """One split living on `device` as raw (uint8 or float32) tensors."""

    def __init__(self, split: Split, device: torch.device) -> None:
        self.x = torch.from_numpy(split.x).to(device)
        self.y = torch.from_numpy(split.y).to(device)

    def __len__(self) -> int:
        return int(self.y.shape[0])


class BatchMaker:
    """Turns index tensors into normalised float batches at the configured resolution."""

    def __init__(
        self,
        bundle: DatasetBundle,
        device: torch.device,
        resolution: int | None,
        augment: AugmentSpec,
        channels_last: bool = False,
    ) -> None:
        self.device = device
        self.scale = 1.0 / 255.0 if bundle.train.x.dtype.kind == "u" else 1.0
        self.mean = torch.tensor(bundle.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(bundle.std, device=device).view(1, -1, 1, 1)
        self.resolution = resolution
        self.augment = augment
        self.channels_last = channels_last

    def _finish(self, xb: torch.Tensor) -> torch.Tensor:
        x = xb.float() * self.scale
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            x = F.interpolate(
                x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False
            )
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def eval_batch(self, split: DeviceSplit, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._finish(split.x[start:stop]), split.y[start:stop]

    def train_batch(
        self, split: DeviceSplit, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crop (with zero padding) and horizontal flip, drawn from the CPU generator `gen` so the
        stream of random numbers is the same on every device and can be checkpointed."""
        idx = idx.to(self.device)
        xb = split.x[idx]
        b, c, h, w = xb.shape
        p = self.augment.crop_padding
        if p > 0:
            padded = F.pad(xb, (p, p, p, p))
            off = torch.randint(0, 2 * p + 1, (2, b), generator=gen).to(self.device)
            rows = (off[0][:, None] + torch.arange(h, device=self.device))[:, None, :, None]
            cols = (off[1][:, None] + torch.arange(w, device=self.device))[:, None, None, :]
            bi = torch.arange(b, device=self.device)[:, None, None, None]
            ci = torch.arange(c, device=self.device)[None, :, None, None]
            xb = padded[bi, ci, rows, cols]
        if self.augment.hflip:
            flip = (torch.rand(b, generator=gen) < 0.5).to(self.device)
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        return self._finish(xb), split.y[idx]
