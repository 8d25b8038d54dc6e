"""Benchmark: archbench's training loop vs a minimal hand-written loop, same model, batch, optimizer, fp32.

For each model, interleaved A/B pairs in this one process: A is one epoch of `archbench.train.train_run`
(its own timing of the batch loop, as recorded in the run's history), B a hand-written loop over the same
images, pre-normalised in memory, with the same SGD settings. The ratio is B's seconds over A's: ≥ 0.95
means archbench's step runs at ≥ 95 % of the hand loop's throughput. The hand loop never asks for
deterministic algorithms; archbench runs its `train.deterministic` policy (auto: on, on CPU), so
`--deterministic false` separates the loop's own cost from the policy's. Prints one JSON object.

    .venv/bin/python benchmarks/step_throughput.py [--models tiny_cnn,simple_cnn,resnet18] [--pairs 3]
        [--deterministic auto|true|false]   # archbench's policy; auto = deterministic kernels on CPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, interleaved, now, synthetic_bundle  # noqa: E402

IMAGES = {"tiny_cnn": 4096, "simple_cnn": 2048, "resnet18": 768}


DEVICE = "cpu"
DETERMINISTIC = "auto"  # archbench's default policy: deterministic algorithms on CPU (the hand loop: off)


def _spec(model: str, batch: int) -> Any:
    from archbench.config import RunSpec

    train = {"epochs": 1, "batch_size": batch, "threads": 1, "optimizer": "sgd", "lr": 0.01}
    # fp32 on both sides, so the comparison is of the loop, not of the precision
    train.update({"device": DEVICE, "amp": "off", "channels_last": "off", "deterministic": DETERMINISTIC})
    return RunSpec.model_validate(
        {
            "model": {"name": model, "stem": "cifar" if model.startswith("resnet") else "imagenet"},
            "train": train,
        }
    )


def archbench_epoch_fn(model: str, bundle: Any, batch: int, tmp: Path) -> Any:
    from archbench.engine.train import train_run

    count = [0]

    def epoch() -> float:
        count[0] += 1
        res = train_run(_spec(model, batch), bundle, tmp / f"{model}-{count[0]}")
        return float(res.history[0]["seconds"])

    return epoch


def hand_epoch_fn(model: str, bundle: Any, batch: int) -> Any:
    from archbench.models import create_model

    spec = _spec(model, batch)
    dev = torch.device(DEVICE)
    x = torch.from_numpy(bundle.train.x).to(dev).float().div_(255).sub_(0.5).div_(0.25)
    y = torch.from_numpy(bundle.train.y).to(dev)

    def epoch() -> float:
        torch.use_deterministic_algorithms(False)  # a minimal loop does not ask for it
        torch.manual_seed(0)
        net = create_model(spec.model, in_chans=3, num_classes=10, image_size=32).to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        crit = torch.nn.CrossEntropyLoss()
        net.train()
        t0 = now()
        perm = torch.randperm(len(y), device=dev)
        for i in range(0, len(y), batch):
            idx = perm[i : i + batch]
            loss = crit(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return now() - t0

    return epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny_cnn,simple_cnn,resnet18")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--deterministic", default="auto", choices=["auto", "true", "false"], help="archbench's policy"
    )
    a = ap.parse_args()
    global DEVICE, DETERMINISTIC
    DEVICE = a.device
    DETERMINISTIC = {"true": True, "false": False}.get(a.deterministic, "auto")
    torch.set_num_threads(1)
    out: dict[str, Any] = {"benchmark": "step_throughput", "device": a.device, "batch": a.batch, "threads": 1}
    out["archbench_deterministic"] = a.deterministic
    out["models"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in a.models.split(","):
            bundle = synthetic_bundle(IMAGES.get(m, 1024))
            ours, hand = archbench_epoch_fn(m, bundle, a.batch, Path(tmp)), hand_epoch_fn(m, bundle, a.batch)
            ours(), hand()  # warm-up
            res = interleaved(ours, hand, a.pairs)
            out["models"][m] = {
                "images": IMAGES.get(m, 1024),
                "archbench_images_per_s": round(IMAGES.get(m, 1024) / res["a_seconds_median"]),
                "hand_loop_images_per_s": round(IMAGES.get(m, 1024) / res["b_seconds_median"]),
                "ratio_median": res["ratio_b_over_a_median"],
                "ratio_range": res["ratio_b_over_a_range"],
            }
    out["goal"] = "ratio >= 0.95 for each model"
    emit(out)


if __name__ == "__main__":
    main()
