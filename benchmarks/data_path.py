"""Benchmark: archbench's device-resident batched augmentation vs a per-image PIL + DataLoader path.

Prints one JSON object. Both paths produce normalised, randomly cropped and flipped float batches of the
same size from the same uint8 images; the ratio is measured in this one run, on this machine.

    .venv/bin/python benchmarks/data_path.py [--images 4096] [--batch 128] [--resolution 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def _archbench_epoch(x: np.ndarray, y: np.ndarray, batch: int, resolution: int) -> float:
    from archbench.augment import BatchMaker, DeviceSplit
    from archbench.config import AugmentSpec
    from archbench.data.registry import DatasetBundle, Split

    split = Split(x, y)
    classes = [str(i) for i in range(10)]
    bundle = DatasetBundle("bench", classes, split, split, split, [0.5] * 3, [0.25] * 3, "")
    maker = BatchMaker(bundle, torch.device("cpu"), resolution, AugmentSpec(crop_padding=4, hflip=True))
    dev = DeviceSplit(split, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    perm = torch.randperm(len(dev), generator=gen)
    for i in range(0, len(dev), batch):
        xb, _ = maker.train_batch(dev, perm[i : i + batch], gen)
    return time.perf_counter() - t0


def _pil_epoch(x: np.ndarray, y: np.ndarray, batch: int, resolution: int) -> float:
    from PIL import Image
    from torch.utils.data import DataLoader as Loader
    from torch.utils.data import Dataset
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

    loader = Loader(PilSet(), batch_size=batch, shuffle=True)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (a.images, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, a.images)
    ours = min(_archbench_epoch(x, y, a.batch, a.resolution) for _ in range(a.repeats))
    pil = min(_pil_epoch(x, y, a.batch, a.resolution) for _ in range(a.repeats))
    print(
        json.dumps(
            {
                "benchmark": "data_path",
                "images": a.images,
                "batch": a.batch,
                "resolution": a.resolution,
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "archbench_images_per_s": round(a.images / ours),
                "pil_dataloader_images_per_s": round(a.images / pil),
                "speedup_ratio": round(pil / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
