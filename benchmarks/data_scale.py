"""Benchmark: data at scale — decode once into the prepared-data cache, map it later, stream beyond a budget.

Prints one JSON object. On a generated folder of N JPEGs (made here, under --workdir; never committed):

* `prepare`: first run's decode + write time and images/s (a fresh process, empty cache);
* `ready`: a second fresh process's data-ready time (check the source against the listing the first run
  remembered — directory stats and a sample of files —, check the store, map it; goal ≤ 2 s);
* `rss`: peak RSS (VmHWM) of a training process with `data.memory_budget` = 1/4 of the prepared size
  (streamed path; `tiny_cnn`, one full epoch, val + test evaluation); the fixed overhead is the peak RSS
  of the same streamed run on a 2,000-image folder; goal: peak ≤ budget + fixed overhead;
* `throughput`: ResNet-18 (cifar stem) at 32 px on CPU, training steps on the in-memory (device-resident)
  and the streamed source in interleaved pairs in one process, the same batches of the same permutation;
  goal: streamed ≥ 0.9 × in-memory. Steps per measurement are bounded (`--steps`): a full 100k-image
  ResNet-18 epoch takes hours on a CPU. The store is in the page cache here (just written).
* `gpu_decode`: torchvision.io.decode_jpeg on CUDA vs PIL on the CPU, when a CUDA device is present.

The host's load average is recorded at start and end: on a shared machine every number moves with it.

    .venv/bin/python benchmarks/data_scale.py [--n 100000] [--workdir /tmp/archbench-data-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 10
SIZE = 32
SMALL_N = 2000


def _make_folder(root: Path, n: int, distinct: int = 2000) -> float:
    """N 32×32 JPEGs in 10 class folders; reused when already complete. `distinct` images are encoded
    (smooth gradient plus noise) and written under N names: every file is still opened, listed, hashed
    into the key and decoded; only the encoding here is shared (it would dominate the benchmark)."""
    import io

    from PIL import Image

    stamp = root / f".complete-{n}"
    if stamp.exists():
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    blobs = []
    for i in range(min(n, distinct)):
        c = i % CLASSES
        base = np.stack([xx * (c + 1) % 1.0, yy, (xx + yy) / 2], axis=-1) * 200
        img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True)
    for i in range(n):
        (root / f"class_{i % CLASSES}" / f"{i:07d}.jpg").write_bytes(blobs[i % len(blobs)])
    stamp.touch()
    return time.perf_counter() - t0


def _spec(root: Path, cache: Path, **kw: Any) -> Any:
    from archbench.config import DataSpec

    return DataSpec(kind="imagefolder", root=str(root), cache_dir=str(cache), **kw)


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


def child_prepare(root: Path, cache: Path) -> dict[str, Any]:
    from archbench.data import create_dataset

    t0 = time.perf_counter()
    b = create_dataset(_spec(root, cache, options={"threads": 2}))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "loading": b.loading, "images": len(b.train) + len(b.val) + len(b.test)}


def child_ready(root: Path, cache: Path) -> dict[str, Any]:
    from archbench.data import create_dataset

    t0, c0 = time.perf_counter(), time.process_time()
    b = create_dataset(_spec(root, cache, options={"threads": 2}))
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "loading": b.loading,
    }


def child_rss(root: Path, cache: Path, budget: int, threads: int) -> dict[str, Any]:
    """One training epoch (tiny_cnn, batches resized to 8 px on the device so the epoch is cheap; every
    32-px row is still read) plus val/test evaluation, on the path the budget allows.

    `baseline_rss_bytes`: this process after training steps of the same model, batch size and shapes on
    random data, before any data is touched."""
    import torch

    from archbench.config import RunSpec, TrainSpec
    from archbench.data import create_dataset
    from archbench.engine.train import train_run
    from archbench.models import create_model

    torch.set_num_threads(threads)
    spec = RunSpec(
        data=_spec(root, cache, options={"threads": 2}, memory_budget=budget, resolution=8),
        train=TrainSpec(epochs=1, batch_size=256, threads=threads),
    )
    model = create_model(spec.model, in_chans=3, num_classes=CLASSES, image_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(3):
        x = torch.nn.functional.interpolate(torch.rand(256, 3, SIZE, SIZE), size=(8, 8), mode="bilinear")
        loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, CLASSES, (256,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.eval()(torch.rand(256, 3, 8, 8))
    del model, opt, x, loss
    baseline = _rss("VmHWM")
    bundle = create_dataset(spec.data)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"data-scale-run-{os.getpid()}"
    t0 = time.perf_counter()
    result = train_run(spec, bundle, out)
    from archbench.engine.evaluate import predict

    predict(result.model, spec, bundle, torch.device("cpu"))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "path": result.data_path["path"],
        "budget_bytes": budget,
        "prepared_bytes": bundle.nbytes,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": _rss("VmHWM"),
        "train_seconds": time.perf_counter() - t0,
    }


def child_throughput(
    root: Path, cache: Path, steps: int, batch: int, pairs: int, threads: int
) -> dict[str, Any]:
    import torch

    from archbench.config import AugmentSpec, ModelSpec
    from archbench.data import create_dataset
    from archbench.engine.augment import BatchMaker, DeviceSplit
    from archbench.engine.sources import HostSplit
    from archbench.models import create_model

    torch.set_num_threads(threads)
    bundle = create_dataset(_spec(root, cache, options={"threads": 2}))
    cpu = torch.device("cpu")
    sources = {"in_memory": DeviceSplit(bundle.train, cpu), "streamed": HostSplit(bundle.train, cpu, True)}
    maker = BatchMaker(bundle, cpu, SIZE, AugmentSpec(crop_padding=4, hflip=True))
    model = create_model(
        ModelSpec(name="resnet18", stem="cifar"), in_chans=3, num_classes=CLASSES, image_size=SIZE
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(0))
    rates: dict[str, list[float]] = {k: [] for k in sources}

    def measure(name: str, first_batch: int) -> float:
        src = sources[name]
        src.plan(order, batch, first_batch)
        gen = torch.Generator().manual_seed(first_batch)
        model.train()
        t0 = time.perf_counter()
        for b in range(first_batch, first_batch + steps):
            xb, yb = maker.train_batch(src, order[b * batch : (b + 1) * batch], gen)
            loss = crit(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * batch / (time.perf_counter() - t0)

    measure("in_memory", 0)  # warm-up (allocator, first-touch)
    for p in range(pairs):
        first = (p * steps) % max(1, len(bundle.train) // batch - steps)
        names = ["in_memory", "streamed"] if p % 2 == 0 else ["streamed", "in_memory"]
        for name in names:
            rates[name].append(measure(name, first))
    sources["streamed"].close()
    ratios = [s / m for s, m in zip(rates["streamed"], rates["in_memory"], strict=True)]
    return {
        "model": "resnet18 (cifar stem), 32 px, SGD, crop+flip",
        "batch": batch,
        "steps_per_measurement": steps,
        "pairs": pairs,
        "threads": threads,
        "images_per_s": rates,
        "ratio_streamed_over_in_memory": ratios,
        "ratio_median": float(np.median(ratios)),
    }


def gpu_decode(root: Path, limit: int = 2000) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    import torchvision.io as tio
    from PIL import Image

    files = sorted(root.rglob("*.jpg"))[:limit]
    datas = [tio.read_file(str(f)) for f in files]
    t0 = time.perf_counter()
    for f in files:
        np.asarray(Image.open(f).convert("RGB"))
    cpu_s = time.perf_counter() - t0
    tio.decode_jpeg(datas[:8], device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    tio.decode_jpeg(datas, device="cuda")
    torch.cuda.synchronize()
    gpu_s = time.perf_counter() - t0
    return {"images": len(files), "pil_cpu_img_s": len(files) / cpu_s, "cuda_img_s": len(files) / gpu_s}


def _child(mode: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", str(args.workdir), "--n", str(args.n)]
    cmd += ["--steps", str(args.steps), "--batch", str(args.batch), "--pairs", str(args.pairs)]
    cmd += ["--threads", str(args.threads)]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if res.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of JPEGs to generate")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/archbench-data-scale"))
    ap.add_argument("--steps", type=int, default=4, help="training steps per throughput measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rss-in-memory", action="store_true", help="also measure the in-memory run's RSS")
    ap.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root, cache = args.workdir / f"jpegs-{args.n}", args.workdir / "cache"
    if args.child:
        out: dict[str, Any]
        if args.child == "prepare":
            out = child_prepare(root, cache)
        elif args.child == "ready":
            out = child_ready(root, cache)
        elif args.child == "rss":
            out = child_rss(root, cache, args.budget, args.threads)
        else:
            out = child_throughput(root, cache, args.steps, args.batch, args.pairs, args.threads)
        print(json.dumps(out))
        return

    import platform

    result: dict[str, Any] = {
        "benchmark": "data_scale",
        "n_images": args.n,
        "image_size": SIZE,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "load_average_start": list(os.getloadavg()),
    }
    result["generate_seconds"] = _make_folder(root, args.n)
    shutil.rmtree(cache, ignore_errors=True)  # the first run must decode
    prep = _child("prepare", args)
    result["prepare"] = {
        "seconds": prep["seconds"],
        "decode_seconds": prep["loading"]["decode_seconds"],
        "images_per_s": prep["images"] / prep["seconds"],
        "prepared_bytes": prep["loading"]["prepared_bytes"],
        "cache_key": prep["loading"]["cache_key"],
    }
    ready = _child("ready", args)
    result["ready"] = {
        "seconds": ready["seconds"],
        "cpu_seconds": ready["cpu_seconds"],  # wall minus waiting for a core on a loaded host
        "cache_hit": ready["loading"]["cache_hit"],
        "source_check": ready["loading"].get("source_check"),
        "goal_seconds": 2.0,
        "met": ready["seconds"] <= 2.0,
    }
    budget = prep["loading"]["prepared_bytes"] // 4
    rss = _child("rss", args, budget=budget)
    # The fixed overhead: the same streamed run on a small folder (interpreter, torch, model, one batch's
    # working memory, evaluation) — what the process needs whatever the dataset's size.
    small = argparse.Namespace(**{**vars(args), "n": SMALL_N})
    _make_folder(args.workdir / f"jpegs-{SMALL_N}", SMALL_N)
    small_prep = _child("prepare", small)
    ref = _child("rss", small, budget=small_prep["loading"]["prepared_bytes"] // 4)
    rss["fixed_overhead_bytes"] = ref["peak_rss_bytes"]
    rss["fixed_overhead_from"] = f"peak RSS of the same streamed run on {SMALL_N} images"
    rss["limit_bytes"] = budget + ref["peak_rss_bytes"]
    rss["met"] = rss["peak_rss_bytes"] <= rss["limit_bytes"]
    result["rss"] = rss
    if args.rss_in_memory:  # the same run with the whole store in memory, for contrast
        result["rss_in_memory"] = _child("rss", args, budget=prep["loading"]["prepared_bytes"] * 4)
    result["throughput"] = _child("throughput", args)
    result["throughput"]["met"] = result["throughput"]["ratio_median"] >= 0.9
    result["gpu_decode"] = gpu_decode(root)
    result["load_average_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
