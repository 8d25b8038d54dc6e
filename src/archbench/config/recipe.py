"""The training recipe's settings: owns `data.augment` (what augments the training split), `train.ema`,
`train.early_stopping`, and the named recipes (`recipe: strong`, presets in recipes/*.yaml); never how
they run (engine/augment.py, engine/strong_augment.py, engine/best.py do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from archbench.config.base import _Strict


class ResizedCropSpec(_Strict):
    """`data.augment.random_resized_crop`: torchvision's RandomResizedCrop ranges (one draw, clamped)."""

    scale: tuple[float, float] = Field((0.08, 1.0), description="area fraction range [lo, hi]")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="aspect ratio range [lo, hi]")

    @model_validator(mode="after")
    def _ordered(self) -> ResizedCropSpec:
        for name, (lo, hi) in (("scale", self.scale), ("ratio", self.ratio)):
            if not 0 < lo <= hi or (name == "scale" and hi > 1):
                raise ValueError(f"{name} must be [lo, hi], 0 < lo <= hi (scale: hi <= 1); found {lo}, {hi}")
        return self


class RandAugmentSpec(_Strict):
    """`data.augment.randaugment`: torchvision's RandAugment (31 magnitude bins)."""

    num_ops: int = Field(2, ge=1, le=10, description="ops applied in sequence to each image")
    magnitude: int = Field(9, ge=0, le=30, description="magnitude bin, 0..30")


class AugmentSpec(_Strict):
    """Batched, on-device augmentation of the training split (never applied to val/test)."""

    crop_padding: int = Field(0, ge=0, le=64, description="random crop after zero-padding by this many px")
    hflip: bool = Field(False, description="random horizontal flip with probability 0.5")
    # Added with the training recipes (issue 27); each is left out of a run's identity at its default.
    vflip: bool = Field(False, description="random vertical flip with probability 0.5 (band-safe)")
    rot90: bool = Field(False, description="random rotation by 0/90/180/270 degrees (square images)")
    random_resized_crop: ResizedCropSpec | None = Field(
        None, description="random crop of a random area and aspect, resized back (per image)"
    )
    trivial_augment: bool = Field(False, description="TrivialAugmentWide, one op per image (RGB only)")
    randaugment: RandAugmentSpec | None = Field(None, description="RandAugment, per image (RGB only)")
    mixup: float = Field(0.0, ge=0.0, description="mixup alpha (timm Mixup); 0: off")
    cutmix: float = Field(0.0, ge=0.0, description="cutmix alpha (timm Mixup); 0: off")
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="probability a batch is mixed at all")
    mix_switch_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="with both alphas on: probability a mixed batch uses cutmix"
    )
    random_erasing: float = Field(
        0.0, ge=0.0, le=1.0, description="probability an image gets one erased rectangle (timm, const)"
    )

    @property
    def colour_ops(self) -> list[str]:
        """The keys set here that change pixel values per channel (refused on multispectral rasters)."""
        return [k for k in ("trivial_augment", "randaugment") if getattr(self, k) not in (False, None)]

    @property
    def mixes(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mix_prob > 0


class EmaSpec(_Strict):
    """`train.ema`: an exponential moving average of the weights, validated beside the raw ones."""

    decay: float = Field(0.999, gt=0.0, lt=1.0, description="ema = decay * ema + (1 - decay) * weights")
    use: Literal["better", "ema", "raw"] = Field(
        "better", description="weights the best epoch and the test use: the better on validation, or one"
    )


class EarlyStoppingSpec(_Strict):
    """`train.early_stopping`: stop when `train.best_metric` has not improved for `patience` epochs."""

    patience: int = Field(5, ge=1, description="epochs without an improvement of min_delta before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="the least change that counts as an improvement")


# Added with the training recipes (issue 27): left out of a run's identity at these values (config's
# LATER_KEYS), so every run id from before them is kept.
LATER_AUGMENT_KEYS: dict[tuple[str, ...], Any] = {
    ("data", "augment", key): value
    for key, value in {
        "vflip": False,
        "rot90": False,
        "random_resized_crop": None,
        "trivial_augment": False,
        "randaugment": None,
        "mixup": 0.0,
        "cutmix": 0.0,
        "mix_prob": 1.0,
        "mix_switch_prob": 0.5,
        "random_erasing": 0.0,
    }.items()
}


RECIPES_DIR = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    """The named recipes shipped in recipes/*.yaml (`recipe: NAME`, or a grid axis `recipe: [...]`)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_settings(name: str) -> dict[str, Any]:
    """What recipe `name` sets: `data.augment` whole, and the `train` keys it names."""
    import yaml

    if name not in recipe_names():
        raise ValueError(f"unknown recipe {name!r} (known: {', '.join(recipe_names())})")
    settings: dict[str, Any] = yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return settings


def apply_recipe(spec: dict[str, Any], name: str) -> None:
    """Put recipe `name` into a run spec's dict (before the grid's other axes): it replaces
    `data.augment` and sets its `train` keys; everything else stays as the sweep file says."""
    settings = recipe_settings(name)
    spec["recipe"] = name
    spec.setdefault("data", {})["augment"] = dict(settings.get("data", {}).get("augment", {}))
    spec.setdefault("train", {}).update(settings.get("train", {}))
