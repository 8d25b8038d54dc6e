"""Benchmark: a folder of 13-band uint16 GeoTIFF chips (EuroSAT-shaped) through `kind: raster_folder`.

Prints one JSON object: chips decoded per second into the prepared-data cache (headers checked, pixels
read with rasterio, statistics and fingerprint), the seconds of a cache hit, and the batches per second of
the trainer's `BatchMaker` (crop pad 4 + flip + per-band standardisation of uint16 rows) on the
device-resident path vs the streamed one, as interleaved pairs in this one process.

    .venv/bin/python benchmarks/chips_path.py [--chips 2000] [--size 64] [--batch 128] [--pairs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, interleaved, now  # noqa: E402

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]


def write_chips(root: Path, chips: int, size: int, classes: int = 10) -> None:
    from rasterio.transform import Affine

    from archbench.data.chips import write_chip

    rng = np.random.default_rng(0)
    georef = {"crs": "EPSG:32632", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)}
    for i in range(chips):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        chip = rng.integers(0, 12000, (13, size, size), dtype=np.uint16)
        write_chip(folder / f"chip{i:06d}.tif", chip, BANDS, None, georef)


def epoch_fn(bundle: Any, source: Any, batch: int) -> Any:
    from archbench.config import AugmentSpec
    from archbench.engine.augment import BatchMaker

    maker = BatchMaker(bundle, torch.device("cpu"), None, AugmentSpec(crop_padding=4, hflip=True))
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        t0 = now()
        perm = torch.randperm(len(source), generator=gen)
        source.plan(perm, batch, 0)
        for i in range(0, len(source), batch):
            maker.train_batch(source, perm[i : i + batch], gen)
        return now() - t0

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from archbench.config import DataSpec
    from archbench.data import create_dataset
    from archbench.engine.augment import DeviceSplit
    from archbench.engine.sources import HostSplit

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "chips"
        write_chips(root, args.chips, args.size)
        spec = DataSpec(kind="raster_folder", root=str(root), cache_dir=str(Path(tmp) / "cache"))
        t0 = now()
        bundle = create_dataset(spec)
        decode_s = now() - t0
        t0 = now()
        mapped = create_dataset(spec)
        hit_s = now() - t0
        assert mapped.loading["cache_hit"] and mapped.train.x.dtype == np.uint16
        device, streamed = (
            DeviceSplit(mapped.train, torch.device("cpu")),
            HostSplit(mapped.train, torch.device("cpu"), True),
        )
        pairs = interleaved(
            epoch_fn(mapped, device, args.batch), epoch_fn(mapped, streamed, args.batch), args.pairs
        )
        streamed.close()
        n = len(mapped.train)
        emit(
            {
                "benchmark": "chips_path",
                "chips": args.chips,
                "chip": [13, args.size, args.size],
                "dtype": "uint16",
                "prepared_bytes": bundle.nbytes,
                "decode_chips_per_s": round(args.chips / decode_s, 1),
                "cache_hit_seconds": round(hit_s, 3),
                "train_images": n,
                "device_resident_img_per_s": round(n / pairs["a_seconds_median"], 1),
                "streamed_img_per_s": round(n / pairs["b_seconds_median"], 1),
                "streamed_over_resident_time": pairs,
                "threads": args.threads,
            }
        )


if __name__ == "__main__":
    main()
