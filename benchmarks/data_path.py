"""Benchmark: archbench's device-resident batched augmentation vs torchvision's per-image PIL DataLoader.

Prints one JSON object. Both paths produce normalised, randomly cropped (pad 4) and flipped float batches of
the same size from the same uint8 images, on the same number of cores. The DataLoader is first tried
with each num_workers in 0..cpu_count (one warm epoch each, persistent workers, `--threads` torch threads
in the main process) and the fastest is kept; archbench's path then gets as many torch threads as that
loader uses cores (its worker processes, or `--threads` with num_workers 0), so neither side has more of
the machine. The two paths run as interleaved A/B pairs in this one process; the ratio is taken pair by pair.

    .venv/bin/python benchmarks/data_path.py [--images 4096] [--batch 128] [--threads 1] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, interleaved, now, synthetic_bundle  # noqa: E402


def archbench_epoch_fn(bundle: Any, batch: int, resolution: int) -> Any:
    from archbench.config import AugmentSpec
    from archbench.engine.augment import BatchMaker, DeviceSplit

    maker = BatchMaker(bundle, torch.device("cpu"), resolution, AugmentSpec(crop_padding=4, hflip=True))
    dev = DeviceSplit(bundle.train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        t0 = now()
        perm = torch.randperm(len(dev), generator=gen)
        for i in range(0, len(dev), batch):
            maker.train_batch(dev, perm[i : i + batch], gen)
        return now() - t0

    return epoch


def pil_loader(x: np.ndarray, y: np.ndarray, batch: int, resolution: int, workers: int) -> Any:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    images = [Image.fromarray(img.transpose(1, 2, 0)) for img in x]
    tf = T.Compose(
        [
            T.RandomCrop(x.shape[2], padding=4),
            T.RandomHorizontalFlip(),
            T.Resize(resolution),
            T.ToTensor(),
            T.Normalize([0.5] * 3, [0.25] * 3),
        ]
    )

    class PilSet(Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return tf(images[i]), int(y[i])

    return DataLoader(
        PilSet(), batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def loader_epoch_fn(loader: Any) -> Any:
    def epoch() -> float:
        t0 = now()
        for _ in loader:
            pass
        return now() - t0

    return epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bundle = synthetic_bundle(a.images)
    x, y = bundle.train.x, bundle.train.y
    ours = archbench_epoch_fn(bundle, a.batch, a.resolution)
    ours()  # warm-up
    tried: dict[str, float] = {}
    loaders = {}
    for w in range(0, (os.cpu_count() or 1) + 1):
        loaders[w] = pil_loader(x, y, a.batch, a.resolution, w)
        fn = loader_epoch_fn(loaders[w])
        fn()  # warm-up (starts persistent workers)
        tried[str(w)] = round(a.images / fn())
    best = max(tried, key=lambda k: tried[k])
    ours_threads = max(a.threads, int(best))  # the cores the chosen loader uses
    torch.set_num_threads(ours_threads)
    ours()  # warm-up at this thread count
    res = interleaved(ours, loader_epoch_fn(loaders[int(best)]), a.pairs)
    emit(
        {
            "benchmark": "data_path",
            "images": a.images,
            "batch": a.batch,
            "resolution": a.resolution,
            "threads": a.threads,
            "archbench_threads": ours_threads,
            "pil_images_per_s_by_num_workers": tried,
            "pil_best_num_workers": int(best),
            "archbench_images_per_s": round(a.images / res["a_seconds_median"]),
            "pil_dataloader_images_per_s": round(a.images / res["b_seconds_median"]),
            "speedup_ratio_median": res["ratio_b_over_a_median"],
            "speedup_ratio_range": res["ratio_b_over_a_range"],
            "pairs": a.pairs,
            "goal": ">= 10",
        }
    )


if __name__ == "__main__":
    main()
