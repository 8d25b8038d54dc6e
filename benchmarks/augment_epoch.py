"""Benchmark: one training epoch with archbench's batched on-device augmentation vs on pre-made tensors.

For each model, interleaved A/B pairs in this one process, the same images, order, crop offsets and flips:
A is an epoch the way the trainer makes its batches — `BatchMaker.draw` for the whole epoch (moved to the
device once), then per batch `BatchMaker.train_batch` (index gather, crop + flip as one gather, normalise)
and the training step; B is the same epoch on tensors augmented beforehand (exactly A's batches, made
outside the timed part), so its loop only slices and trains. The ratio is B's seconds over A's: ≥ 0.9 means
augmenting on the fly costs at most ~10 % of an epoch. fp32, SGD, 1 torch thread. Prints one JSON object.

Two recipes, each its own A/B pairs: `basic` (crop + flip; goal ≥ 0.9, under `models`) and the `strong`
recipe's augmentation (config/recipes/strong.yaml: random-resized crop, flip, TrivialAugmentWide, random
erasing, mixup/cutmix with label smoothing folded into soft targets; goal ≥ 0.85, under `strong`). The
strong recipe's weights EMA is not augmentation and is left out of both sides.

    .venv/bin/python benchmarks/augment_epoch.py [--models tiny_cnn,simple_cnn] [--pairs 3]
        [--recipes basic,strong]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, interleaved, now, synthetic_bundle  # noqa: E402

IMAGES = {"tiny_cnn": 4096, "simple_cnn": 2048, "resnet18": 512}
SIZE = 32


GOALS = {"basic": 0.9, "strong": 0.85}


def recipe_augment(recipe: str) -> tuple[Any, float]:
    """The recipe's `data.augment` and label smoothing (folded into mixed targets), as a run gets them."""
    from archbench.config import AugmentSpec
    from archbench.config.recipe import recipe_settings

    settings = recipe_settings(recipe)
    augment = AugmentSpec.model_validate(settings.get("data", {}).get("augment", {}))
    return augment, float(settings.get("train", {}).get("label_smoothing", 0.0))


def epoch_fns(
    model: str, bundle: Any, batch: int, device: torch.device, recipe: str = "basic"
) -> tuple[Callable[[], float], ...]:
    from archbench.config import ModelSpec
    from archbench.engine.augment import BatchMaker, DeviceSplit
    from archbench.models import create_model

    spec = ModelSpec(name=model, stem="cifar" if model.startswith("resnet") else "imagenet")
    augment, smoothing = recipe_augment(recipe)
    maker = BatchMaker(bundle, device, SIZE, augment, label_smoothing=smoothing)
    split = DeviceSplit(bundle.train, device)
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    draws = {k: v.to(device) for k, v in maker.draw(n, torch.Generator().manual_seed(1), batch).items()}
    starts = range(0, n, batch)

    def batch_of(i: int, epoch_draws: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return maker.train_batch(
            split, order[i : i + batch], {k: v[..., i : i + batch] for k, v in epoch_draws.items()}
        )

    premade = [batch_of(i, draws) for i in starts]  # B's input: exactly the batches A makes

    def train(batches: Callable[[], Any]) -> float:
        torch.manual_seed(0)
        net = create_model(spec, in_chans=3, num_classes=10, image_size=SIZE).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        crit = torch.nn.CrossEntropyLoss()  # mixed batches carry soft (probability) targets
        net.train()
        t0 = now()
        for xb, yb in batches():
            loss = crit(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return now() - t0

    def on_the_fly() -> Any:
        # the trainer's order of work: the epoch's draws once, moved to the device once, then per batch
        epoch_draws = maker.draw(n, torch.Generator().manual_seed(1), batch)
        epoch_draws = {k: v.to(device) for k, v in epoch_draws.items()}
        return (batch_of(i, epoch_draws) for i in starts)

    return (lambda: train(on_the_fly)), (lambda: train(lambda: iter(premade)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny_cnn,simple_cnn")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--recipes", default="basic,strong", help="basic (crop + flip) and/or strong")
    a = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(a.device)
    out: dict[str, Any] = {"benchmark": "augment_epoch", "device": a.device, "batch": a.batch, "threads": 1}
    recipes = a.recipes.split(",")
    if "basic" in recipes:
        out["augment"] = "random crop (pad 4) + horizontal flip, 32 px, normalised"
        out["models"] = ratios(a, device, "basic")
    if "strong" in recipes:
        out["strong_augment"] = recipe_augment("strong")[0].model_dump(mode="json", exclude_defaults=True)
        out["strong"] = ratios(a, device, "strong")
    out["goal"] = (
        "ratio (pre-made seconds / augmented seconds) >= 0.9 for each model under `models` (basic), "
        ">= 0.85 under `strong`"
    )
    emit(out)


def ratios(a: argparse.Namespace, device: torch.device, recipe: str) -> dict[str, Any]:
    """Each model's A/B pairs under `recipe`: throughputs and the ratio against its goal."""
    out: dict[str, Any] = {}
    for m in a.models.split(","):
        images = IMAGES.get(m, 1024)
        augmented, premade = epoch_fns(m, synthetic_bundle(images, SIZE), a.batch, device, recipe)
        augmented(), premade()  # warm-up
        res = interleaved(augmented, premade, a.pairs)
        out[m] = {
            "images": images,
            "augmented_images_per_s": round(images / res["a_seconds_median"]),
            "premade_images_per_s": round(images / res["b_seconds_median"]),
            "ratio_median": res["ratio_b_over_a_median"],
            "ratio_range": res["ratio_b_over_a_range"],
            "met": res["ratio_b_over_a_median"] >= GOALS[recipe],
        }
    return out


if __name__ == "__main__":
    main()
