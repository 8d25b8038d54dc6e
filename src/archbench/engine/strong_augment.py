"""The strong recipe's augmentations, batched on the device: owns their random draws and the ops
(vertical flip, 90° rotations, RandomResizedCrop, TrivialAugmentWide, RandAugment, random erasing, mixup
and cutmix); never chooses them (`data.augment` does) and never touches crop/flip (augment.py does).

Every random number is drawn on the host from the run's data generator once per epoch (`draw_strong`),
one row per image of the epoch's order, so a resumed run draws the same numbers (exact resume). Per-image
vs per-batch, honestly:
- per image: flips, rotations, the crop box, the TrivialAugment/RandAugment op and magnitude, erasing;
- per batch (timm's `mode="batch"`): whether it is mixed, mixup vs cutmix, lambda and the cutmix box. The
  batch's values are written on each of its rows, so a batch slice carries them.
The colour ops are not run image by image: each op family is computed for the whole batch (one affine
resample for every geometric op, one blend for brightness/colour/contrast/sharpness, posterize, solarize,
autocontrast, equalize) and each image keeps the result of its own op (`torch.where`), so no step reads
the device. Differences from torchvision: the crop box is drawn once and clamped (no 10 retries), its
resize is bilinear without antialiasing; erasing is one try, constant (0 after normalisation, timm's
`const` mode).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from archbench.config import AugmentSpec

BINS = 31  # torchvision's magnitude bins
OPS = (
    "identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
    "brightness", "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize",
)  # fmt: skip
SIGNED = frozenset(OPS[1:10])
_SIGNED_OPS = torch.tensor([o in SIGNED for o in OPS])  # per op: does its magnitude take a random sign
STRONG_KEYS = ("vflip", "rot90", "rrc", "ops", "erase", "mix")


def draw_strong(aug: AugmentSpec, n: int, batch_size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The epoch's draws for the options on, in a fixed order after crop/flip's (none when all are off)."""
    out: dict[str, torch.Tensor] = {}
    if aug.vflip:
        out["vflip"] = torch.rand(n, generator=gen) < 0.5
    if aug.rot90:
        out["rot90"] = torch.randint(0, 4, (n,), generator=gen)
    if aug.random_resized_crop is not None:
        out["rrc"] = torch.rand(4, n, generator=gen)
    rounds = (1 if aug.trivial_augment else 0) + (aug.randaugment.num_ops if aug.randaugment else 0)
    if rounds:  # per round: op, magnitude bin (TrivialAugment's own; RandAugment's is fixed), sign
        op = torch.randint(0, len(OPS), (rounds, n), generator=gen)
        mag = torch.randint(0, BINS, (rounds, n), generator=gen)
        sign = (torch.rand(rounds, n, generator=gen) < 0.5).long() * 2 - 1
        out["ops"] = torch.cat([op, mag, sign]).float()
    if aug.random_erasing > 0:
        out["erase"] = torch.rand(5, n, generator=gen)
    if aug.mixes:
        out["mix"] = _draw_mix(aug, n, batch_size, gen)
    return out


def _draw_mix(aug: AugmentSpec, n: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """Per batch (timm's Mixup, batch mode): [mixed, cutmix, lambda, box row, box column] on its rows."""
    nb = max(1, math.ceil(n / batch_size))
    mixed = torch.rand(nb, generator=gen) < aug.mix_prob
    if aug.mixup > 0 and aug.cutmix > 0:
        cut = torch.rand(nb, generator=gen) < aug.mix_switch_prob
    else:
        cut = torch.full((nb,), aug.cutmix > 0)
    # torch has no seeded Beta sampler: numpy's, seeded from the run's generator (so still checkpointed).
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    lam_mix = rng.beta(aug.mixup, aug.mixup, nb) if aug.mixup > 0 else np.ones(nb)
    lam_cut = rng.beta(aug.cutmix, aug.cutmix, nb) if aug.cutmix > 0 else np.ones(nb)
    lam = torch.from_numpy(np.where(cut.numpy(), lam_cut, lam_mix)).float()
    lam = torch.where(mixed, lam, torch.ones(nb))
    box = torch.rand(2, nb, generator=gen)
    per_batch = torch.stack([mixed.float(), cut.float(), lam, box[0], box[1]])
    return per_batch.repeat_interleave(batch_size, dim=1)[:, :n]


def geometric(xb: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """Vertical flips and 90° rotations (band-safe: pixels move, values do not change)."""
    if "vflip" in draws:
        xb = torch.where(draws["vflip"][:, None, None, None], xb.flip(-2), xb)
    if "rot90" in draws:
        k = draws["rot90"][:, None, None, None]
        out = xb
        for turns in (1, 2, 3):
            out = torch.where(k == turns, xb.rot90(turns, (-2, -1)), out)
        xb = out
    return xb


def resized_crop(x: torch.Tensor, u: torch.Tensor, aug: AugmentSpec, size: tuple[int, int]) -> torch.Tensor:
    """RandomResizedCrop of each image (one affine resample for the batch), output at `size`."""
    rrc = aug.random_resized_crop
    assert rrc is not None
    b, _, h, w = x.shape
    area = rrc.scale[0] + u[0] * (rrc.scale[1] - rrc.scale[0])
    log_r = math.log(rrc.ratio[0]) + u[1] * (math.log(rrc.ratio[1]) - math.log(rrc.ratio[0]))
    ratio = torch.exp(log_r)
    cw = torch.sqrt(area * ratio * h * w).clamp(1, w)  # the box in pixels, clamped into the image
    ch = torch.sqrt(area / ratio * h * w).clamp(1, h)
    cx = u[3] * (w - cw) + cw / 2
    cy = u[2] * (h - ch) + ch / 2
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = cw / w, 2 * cx / w - 1
    theta[:, 1, 1], theta[:, 1, 2] = ch / h, 2 * cy / h - 1
    grid = F.affine_grid(theta, [b, x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@functools.lru_cache(maxsize=8)
def _magnitudes(wide: bool, w: int) -> dict[str, torch.Tensor]:
    """torchvision's magnitude tables (TrivialAugmentWide when `wide`, else RandAugment), per bin; made once
    per (wide, width), not per batch (read only)."""
    lin = torch.linspace
    steps = torch.arange(BINS).float()
    return {
        "shear": lin(0.0, 0.99 if wide else 0.3, BINS),
        "translate": lin(0.0, 32.0 if wide else 150.0 / 331.0 * w, BINS),
        "rotate": lin(0.0, 135.0 if wide else 30.0, BINS),
        "enhance": lin(0.0, 0.99 if wide else 0.9, BINS),
        "posterize": 8 - (steps / ((BINS - 1) / (6 if wide else 4))).round(),
        "solarize": lin(1.0, 0.0, BINS),
    }


def _affine(
    x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, table: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Shear, translate and rotate in one resample (identity for every other op), nearest, zero fill."""
    b, _, h, w = x.shape
    name = {k: OPS.index(k) for k in OPS}
    shear = table["shear"].to(x.device)[m.abs().long()] * m.sign()
    shift = table["translate"].to(x.device)[m.abs().long()] * m.sign()
    angle = torch.deg2rad(table["rotate"].to(x.device)[m.abs().long()] * m.sign())
    rot = op == name["rotate"]
    cos, sin = torch.where(rot, angle.cos(), 1.0), torch.where(rot, angle.sin(), 0.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = (
        cos,
        -sin * h / w + torch.where(op == name["shear_x"], shear * h / w, 0.0),
    )
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h + torch.where(op == name["shear_y"], shear * w / h, 0.0), cos
    theta[:, 0, 2] = torch.where(op == name["translate_x"], 2 * shift / w, 0.0)
    theta[:, 1, 2] = torch.where(op == name["translate_y"], 2 * shift / h, 0.0)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:  # one band (digits, MNIST): already grey
        return x
    return (0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def _blend_source(x: torch.Tensor, op: torch.Tensor) -> torch.Tensor:
    """What brightness, colour, contrast and sharpness blend each image with (PIL's ImageEnhance)."""
    gray = _gray(x)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
    k = op[:, None, None, None]
    out = torch.where(k == OPS.index("color"), gray, torch.zeros_like(x))
    out = torch.where(k == OPS.index("contrast"), mean, out)
    sharp = (op == OPS.index("sharpness")).nonzero().squeeze(1)
    if sharp.numel():  # the blur only for the images that drew sharpness (each image is blurred alone)
        kernel = torch.ones(3, 3, device=x.device)
        kernel[1, 1] = 5.0
        kernel = (kernel / 13.0).expand(x.shape[1], 1, 3, 3)
        blurred = x[sharp].clone()
        blurred[..., 1:-1, 1:-1] = F.conv2d(x[sharp], kernel, groups=x.shape[1])  # borders kept, as PIL does
        out[sharp] = blurred
    return out


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize of images in [0, 1], on their 8-bit values."""
    import torchvision.transforms.v2.functional as TF

    return TF.equalize((x * 255).round().to(torch.uint8)).float() / 255


def _on_images(
    x: torch.Tensor, drawn: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """`x` with the images where `drawn` is true replaced by `fn(their indices)` (a per-image op)."""
    idx = drawn.nonzero().squeeze(1)
    if not idx.numel():
        return x
    x = x.clone()
    x[idx] = fn(idx)
    return x


def colour_round(
    x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, table: dict[str, torch.Tensor]
) -> torch.Tensor:
    """One TrivialAugment/RandAugment op per image of `x` (float in [0, 1]); `m` is the signed bin. Each op
    is computed for the images that drew it only (the others pass through unchanged, as they would)."""
    import torchvision.transforms.v2.functional as TF

    mag = m.abs().long()
    affine = op.ge(OPS.index("shear_x")) & op.le(OPS.index("rotate"))
    x = _on_images(x, affine, lambda i: _affine(x[i], op[i], m[i], table))
    enhance = op.ge(OPS.index("brightness")) & op.le(OPS.index("sharpness"))

    def blend(i: torch.Tensor) -> torch.Tensor:
        factor = (1.0 + table["enhance"].to(x.device)[mag[i]] * m[i].sign())[:, None, None, None]
        return (factor * x[i] + (1 - factor) * _blend_source(x[i], op[i])).clamp_(0, 1)

    x = _on_images(x, enhance, blend)
    bits = torch.where(op == OPS.index("posterize"), table["posterize"].to(x.device)[mag], 8.0)
    step = (2.0 ** (8 - bits))[:, None, None, None]
    x = torch.floor(x * 255 / step) * step / 255  # every image: the ops work on 8-bit values
    thr = table["solarize"].to(x.device)[mag][:, None, None, None]
    x = _on_images(x, op == OPS.index("solarize"), lambda i: torch.where(x[i] >= thr[i], 1.0 - x[i], x[i]))
    x = _on_images(x, op == OPS.index("autocontrast"), lambda i: TF.autocontrast(x[i]))
    return _on_images(x, op == OPS.index("equalize"), lambda i: _equalize(x[i]))


def colour_ops(x: torch.Tensor, ops: torch.Tensor, aug: AugmentSpec) -> torch.Tensor:
    """TrivialAugmentWide (its own random bin per image), then RandAugment's `num_ops` rounds (its fixed
    magnitude), each round one op per image."""
    rounds = ops.shape[0] // 3
    op, mag, sign = ops[:rounds].long(), ops[rounds : 2 * rounds], ops[2 * rounds :]
    signed = _SIGNED_OPS.to(x.device)
    for r in range(rounds):
        wide = aug.trivial_augment and r == 0
        bins = (
            mag[r]
            if wide
            else torch.full_like(mag[r], float(aug.randaugment.magnitude if aug.randaugment else 0))
        )
        m = torch.where(signed[op[r]], bins * sign[r], bins)
        x = colour_round(x, op[r], m, _magnitudes(wide, x.shape[-1]))
    return x


def erase(x: torch.Tensor, u: torch.Tensor, p: float) -> torch.Tensor:
    """timm's RandomErasing, one try, `const` mode: a rectangle of 2–33% of the image, aspect 0.3–3.3,
    set to 0 (the mean, after normalisation) with probability `p` per image."""
    b, _, h, w = x.shape
    area = (0.02 + u[1] * (1 / 3 - 0.02)) * h * w
    ratio = torch.exp(math.log(0.3) + u[2] * (math.log(1 / 0.3) - math.log(0.3)))
    eh = torch.sqrt(area * ratio).round().clamp(1, h - 1)
    ew = torch.sqrt(area / ratio).round().clamp(1, w - 1)
    top = torch.floor(u[3] * (h - eh + 1))
    left = torch.floor(u[4] * (w - ew + 1))
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
    inside = inside & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])
    inside = inside & (u[0] < p)[:, None, None]
    return x.masked_fill(inside[:, None], 0.0)


def mix(
    x: torch.Tensor, y: torch.Tensor, d: torch.Tensor, classes: int, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup (batch mode, `correct_lam`): each image mixed with its mirror in the batch
    (`flip(0)`), by lambda (mixup) or a box (cutmix); soft targets with label smoothing folded in."""
    mixed, cut, lam, by, bx = (v[0] for v in d)  # a batch's rows carry its values
    _, _, h, w = x.shape
    cut_rat = torch.sqrt(1.0 - lam)
    ch, cw = torch.floor(h * cut_rat), torch.floor(w * cut_rat)
    cy, cx = torch.floor(by * h), torch.floor(bx * w)
    y0, y1 = (cy - torch.floor(ch / 2)).clamp(0, h), (cy + torch.floor(ch / 2)).clamp(0, h)
    x0, x1 = (cx - torch.floor(cw / 2)).clamp(0, w), (cx + torch.floor(cw / 2)).clamp(0, w)
    rows = torch.arange(h, device=x.device)[:, None]
    cols = torch.arange(w, device=x.device)[None, :]
    box = ((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)).float()
    is_cut = (cut > 0.5) & (mixed > 0.5)
    keep = torch.where(is_cut, 1.0 - box, lam)  # the share of each pixel kept from the image itself
    lam = torch.where(is_cut, 1.0 - box.sum() / (h * w), lam)
    x = x * keep + x.flip(0) * (1.0 - keep)
    off = smoothing / classes
    one_hot = torch.full((y.shape[0], classes), off, device=x.device).scatter_(
        1, y[:, None], 1.0 - smoothing + off
    )
    return x, one_hot * lam + one_hot.flip(0) * (1.0 - lam)
