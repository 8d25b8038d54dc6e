"""Benchmark: CIFAR-stem ResNet-18 training steps with 1 vs 2 torch threads on this CPU. Prints one JSON.

Why it exists: on a 2-core machine shared with other jobs, two intra-op threads can spin-wait on each other
and train many times slower than one; configs/quickstart.yaml therefore sets `train.threads: 1`.

    .venv/bin/python benchmarks/cpu_threads.py [--resolution 8] [--batch 64] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _measure(threads: int, resolution: int, batch: int, steps: int) -> float:
    import torch

    from archbench.config import ModelSpec
    from archbench.models import create_model

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    model = create_model(ModelSpec(name="resnet18", stem="cifar"), 1, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, resolution, resolution)
    y = torch.randint(0, 10, (batch,))
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(_measure(a.child, a.resolution, a.batch, a.steps))
        return
    out = {}
    for threads in (1, 2):  # each in a fresh process: torch's thread pool is fixed once it has started
        cmd = [sys.executable, __file__, "--child", str(threads), "--resolution", str(a.resolution),
               "--batch", str(a.batch), "--steps", str(a.steps)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        out[threads] = float(res.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "benchmark": "cpu_threads",
                "model": "resnet18 (cifar stem)",
                "resolution": a.resolution,
                "batch": a.batch,
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "img_per_s_1_thread": round(out[1], 1),
                "img_per_s_2_threads": round(out[2], 1),
                "ratio_1_over_2": round(out[1] / out[2], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
