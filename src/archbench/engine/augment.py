"""Batched on-device data: owns the raw tensors on the training device and their augmentation.

No PIL and no per-image Python in the hot loop: a batch is an index slice taken from a `BatchSource`
(device tensors here; host-mapped or streamed ones in sources.py), cropped and flipped by one gather,
resized with one interpolate call, and normalised in place — the same code whatever the source.

Raw rows keep the dtype the dataset stored: uint8 images are scaled by 1/255 before standardising (their
statistics are of the scaled pixels); every other dtype (uint16, int16, float32 rasters) is standardised
in its own units with its per-band statistics. uint16 rows travel as their int16 bit pattern (`as_tensor`:
the same bytes, and int16 has every kernel on every device) and are read back as 0..65535 on the float
batch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from archbench.config import AugmentSpec
from archbench.data.registry import DatasetBundle, Split


def as_tensor(rows: np.ndarray) -> torch.Tensor:
    """Host rows as a tensor sharing their memory; uint16 as its int16 bit pattern (see the docstring)."""
    if rows.dtype == np.uint16:
        rows = rows.view(np.int16)
    return torch.from_numpy(rows)


class BatchSource(Protocol):
    """Where a split's pixels come from: an index slice in, a raw (uint8) batch and labels on the device
    out. `plan` tells a source the epoch's order ahead of time so it can read ahead (sources.py)."""

    def __len__(self) -> int: ...
    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def plan(self, order: torch.Tensor, batch_size: int, start_batch: int) -> None: ...
    def close(self) -> None: ...


class DeviceSplit:
    """One split living on `device` as raw tensors (uint8, float32, …) (the device-resident path)."""

    def __init__(self, split: Split, device: torch.device | str) -> None:
        # A memory-mapped store is read-only: copy it into memory once (this path is the in-budget one).
        x = split.x if split.x.flags.writeable else np.array(split.x)
        self.x = as_tensor(x).to(device)
        self.y = torch.from_numpy(np.asarray(split.y)).to(device)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.x.device, non_blocking=True)
        return self.x[idx], self.y[idx]

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[start:stop], self.y[start:stop]

    def plan(self, order: torch.Tensor, batch_size: int, start_batch: int) -> None:
        pass  # everything is already on the device

    def close(self) -> None:
        pass


class BatchMaker:
    """Turns index tensors into normalised float batches at the configured resolution."""

    def __init__(
        self,
        bundle: DatasetBundle,
        device: torch.device,
        resolution: int | None,
        augment: AugmentSpec,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        self.device = device
        dtype = bundle.train.x.dtype
        self.scale = 1.0 / 255.0 if dtype == np.uint8 else 1.0
        self.unsigned16 = dtype == np.uint16  # rows arrive as int16 bit patterns (as_tensor)
        self.mean = torch.tensor(bundle.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(bundle.std, device=device).view(1, -1, 1, 1)
        self.resolution = resolution
        self.augment = augment
        self.channels_last = channels_last
        self.label_smoothing = label_smoothing  # folded into mixup/cutmix's soft targets
        self.num_classes = bundle.num_classes
        a = augment
        self.strong = bool(
            a.vflip or a.rot90 or a.random_resized_crop or a.trivial_augment or a.randaugment
            or a.random_erasing or a.mixes
        )  # fmt: skip

    def _finish(self, xb: torch.Tensor) -> torch.Tensor:
        # In place on one fresh float buffer per batch; float32 sources (rasters) are cloned first, since
        # .float() would return the stored data itself and the in-place ops would overwrite it.
        x = (xb.clone() if xb.dtype == torch.float32 else xb.float()).mul_(self.scale)
        if self.unsigned16:
            x = x.remainder_(65536.0)  # int16 bit pattern -> 0..65535 (exact in float32)
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            x = F.interpolate(
                x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False
            )
        x = x.sub_(self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def eval_batch(self, split: BatchSource, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = split.rows(start, stop)
        return self._finish(xb), yb

    def draw(self, n: int, gen: torch.Generator, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """The random crop offsets ("crop", 2 x n, uint8) and flips ("flip", n, bool) of `n` images, drawn
        from the CPU generator `gen` in this order, so the stream of random numbers is the same on every
        device and can be checkpointed. The trainer draws a whole epoch at once (row k belongs to the k-th
        image of the epoch's order) and moves it to the device once; no augmentation: an empty dict.
        The strong recipe's draws follow (strong_augment.py; mixing is per batch of `batch_size`)."""
        out: dict[str, torch.Tensor] = {}
        p = self.augment.crop_padding
        if p > 0:
            out["crop"] = torch.randint(0, 2 * p + 1, (2, n), generator=gen).to(torch.uint8)
        if self.augment.hflip:
            out["flip"] = torch.rand(n, generator=gen) < 0.5
        if self.strong:
            from archbench.engine.strong_augment import draw_strong

            out.update(draw_strong(self.augment, n, batch_size or n, gen))
        return out

    def train_batch(
        self, split: BatchSource, idx: torch.Tensor, draws: torch.Generator | dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crop (with zero padding) and horizontal flip of the images `idx`. `draws` is this batch's
        slice of `draw()` (already on the device: the trainer's path, no host work), or a generator to
        draw them from now."""
        if isinstance(draws, torch.Generator):
            draws = {k: v.to(self.device, non_blocking=True) for k, v in self.draw(len(idx), draws).items()}
        xb, yb = split.take(idx)
        if not draws:
            return self._finish(xb), yb
        if "crop" in draws or "flip" in draws:
            xb = self._crop_flip(xb, draws)
        if self.strong:
            return self._strong(xb, yb, draws)
        return self._finish(xb), yb

    def _crop_flip(self, xb: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        b, c, h, w = xb.shape
        p = self.augment.crop_padding
        # Crop and flip are one gather over the flattened (padded) image: each output pixel's source
        # position is (row offset + i) * padded width + (column offset + j, or its mirror when flipped).
        # Same result as a crop followed by a flip.
        src = F.pad(xb, (p, p, p, p)) if p > 0 else xb
        width = w + 2 * p
        if "crop" in draws:
            off = draws["crop"].long()
            r0, c0 = off[0], off[1]
        else:
            r0 = c0 = torch.zeros(b, dtype=torch.long, device=self.device)
        cols = torch.arange(w, device=self.device).expand(b, w)
        if "flip" in draws:
            cols = torch.where(draws["flip"][:, None], (w - 1) - cols, cols)
        rows = r0[:, None] + torch.arange(h, device=self.device)
        flat = rows[:, :, None] * width + (c0[:, None] + cols)[:, None, :]
        return src.reshape(b, c, -1).gather(2, flat.reshape(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)

    def _strong(
        self, xb: torch.Tensor, yb: torch.Tensor, draws: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The strong recipe after crop/flip: flips and rotations on the raw pixels, the crop box, the
        colour ops on [0, 1], resize and normalise, erasing, then mixing (soft targets)."""
        from archbench.engine import strong_augment as sa

        a = self.augment
        xb = sa.geometric(xb, draws)
        x = (xb.clone() if xb.dtype == torch.float32 else xb.float()).mul_(self.scale)
        r = self.resolution
        size = (r, r) if r is not None else (int(x.shape[-2]), int(x.shape[-1]))
        if "rrc" in draws:
            x = sa.resized_crop(x, draws["rrc"], a, size)
        if "ops" in draws:
            x = sa.colour_ops(x, draws["ops"], a)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = x.sub_(self.mean).div_(self.std)
        if "erase" in draws:
            x = sa.erase(x, draws["erase"], a.random_erasing)
        y: torch.Tensor = yb
        if "mix" in draws:
            x, y = sa.mix(x, yb.long(), draws["mix"], self.num_classes, self.label_smoothing)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y
