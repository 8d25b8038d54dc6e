"""What profiling costs: prints one JSON object.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/profile_overhead.py [--threads 1] [--device cpu]

Counting: seconds to count params and FLOPs per image on the meta device (what the stage does) vs running
the real network on the CPU once, for the published-table models; both must give the same FLOPs.
Stage: wall seconds of `measure` with the sweep defaults (batch sizes 1 and 64, 3 warm-up and at least 10
timed iterations, more within 1 s per measurement, training step, memory) for tiny_cnn on 32 px and
resnet18 (cifar stem) on 32 px, split into what the memory subprocess took and the rest.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

COUNT_MODELS = [("resnet50", 224), ("vgg11", 224), ("efficientnet_b3", 300), ("vit_b_16", 224)]
STAGE_MODELS = [("tiny_cnn", "imagenet", 32), ("resnet18", "cifar", 32)]


def counting(threads: int) -> list[dict[str, Any]]:
    import torch

    from archbench.config import ModelSpec
    from archbench.stages.profile.counting import count_flops, count_target
    from archbench.stages.profile.target import Target, build_model, example_batch

    torch.set_num_threads(threads)
    out = []
    for name, size in COUNT_MODELS:
        target = Target(ModelSpec(name=name), 3, 1000, (size, size))
        t0 = time.perf_counter()
        meta = count_target(target)
        t1 = time.perf_counter()
        model = build_model(target, torch.device("cpu"))
        flops, _ = count_flops(model, example_batch(target, 1, torch.device("cpu"))[0])
        t2 = time.perf_counter()
        out.append(
            {
                "model": name,
                "resolution": size,
                "gmacs": meta["flops"] / 2e9,
                "same_flops_on_cpu": flops == meta["flops"],
                "meta_s": round(t1 - t0, 3),
                "cpu_build_and_run_s": round(t2 - t1, 3),
            }
        )
    return out


def stage(threads: int, device_name: str) -> list[dict[str, Any]]:
    import torch

    from archbench.config import ModelSpec, TrainSpec
    from archbench.engine.runtime import resolve_device
    from archbench.stages.profile import memory as memory_module
    from archbench.stages.profile.measure import ProfileSettings, Target, measure

    torch.set_num_threads(threads)
    train = TrainSpec(device=device_name)  # type: ignore[arg-type]
    device = resolve_device(train.device)
    spent = {"s": 0.0}
    original = memory_module.cpu_peak_rss

    def timed_child(*args: Any, **kwargs: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["s"] += time.perf_counter() - t0

    memory_module.cpu_peak_rss = timed_child  # type: ignore[assignment]
    out = []
    try:
        for name, stem, size in STAGE_MODELS:
            spent["s"] = 0.0
            target = Target(ModelSpec(name=name, stem=stem), 3, 10, (size, size), train)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            entry = measure(target, ProfileSettings(), device)
            total = time.perf_counter() - t0
            out.append(
                {
                    "model": name,
                    "resolution": size,
                    "total_s": round(total, 2),
                    "memory_subprocess_s": round(spent["s"], 2),
                    "latency_ms_p50": entry.get("latency_ms_p50"),
                    "throughput_img_s": entry.get("throughput_img_s"),
                    "train_throughput_img_s": entry.get("train_throughput_img_s"),
                    "peak_memory_mb": entry.get("peak_memory_mb"),
                    "error": entry.get("error"),
                }
            )
    finally:
        memory_module.cpu_peak_rss = original
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()
    import platform

    import torch

    result = {
        "host": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "counting": counting(args.threads),
        "stage": stage(args.threads, args.device),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
