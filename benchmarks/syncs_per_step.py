"""Benchmark: device→host syncs per training step, counted, not timed.

Runs one short `train_run` under a `TorchDispatchMode` that counts `aten._local_scalar_dense` of tensors on
the run's device (what `.item()`, `float(t)`, `int(t)` and `bool(t)` dispatch to: on a GPU each is a sync
that stalls the host) and device→host copies as syncs, and host→device copies apart. On CPU every scalar
read counts (nothing is a real sync there, but the structure shows) and no copy crosses devices, so the
H2D count is only meaningful on CUDA (`--device cuda`). The loop's `should_stop` probe, asked at every step
boundary, splits the count by step. Prints one JSON object: syncs between log intervals (the goal: 0), at
each `train.log_every` interval, at the epoch's end (validation and checkpoints), and per step over the run.

    .venv/bin/python benchmarks/syncs_per_step.py [--device cpu|cuda] [--images 4096] [--batch 64]
        [--log-every 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, synthetic_bundle  # noqa: E402


class CountSyncs(TorchDispatchMode):
    """Device->host syncs: scalar reads of a tensor on the run's device (on CPU: every scalar read, so the
    structure shows even there) plus device->host copies; and host->device copies."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = torch.device(device).type
        self.syncs = 0
        self.h2d = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            if args[0].device.type == self.device:  # reading a host copy is not a sync
                self.syncs += 1
        elif func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            dst_dev = args[0].device if func is torch.ops.aten.copy_.default else kwargs.get("device")
            if isinstance(src, torch.Tensor) and dst_dev is not None:
                src_type, dst_type = src.device.type, torch.device(dst_dev).type
                if src_type == "cpu" and dst_type == "cuda":
                    self.h2d += 1
                elif src_type == "cuda" and dst_type == "cpu":
                    self.syncs += 1  # a device->host copy waits like a scalar read
        return func(*args, **kwargs)


def main() -> None:
    from archbench.config import RunSpec
    from archbench.engine.train import train_run

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--log-every", type=int, default=50)
    a = ap.parse_args()
    bundle = synthetic_bundle(a.images)
    spec = RunSpec.model_validate(
        {
            "data": {"augment": {"crop_padding": 4, "hflip": True}},
            "train": {
                "epochs": 1,
                "batch_size": a.batch,
                "threads": 1,
                "device": a.device,
                "log_every": a.log_every,
            },
        }
    )
    counter = CountSyncs(a.device)
    marks: list[tuple[int, int]] = []  # (syncs, h2d copies) counted before each step

    def before_step() -> bool:  # the loop asks at every step boundary: a free per-step probe
        marks.append((counter.syncs, counter.h2d))
        return False

    with tempfile.TemporaryDirectory() as tmp, counter:
        res = train_run(spec, bundle, Path(tmp) / "run", should_stop=before_step)
    steps = int(res.history[-1]["step"])
    marks.append((counter.syncs, counter.h2d))  # after the epoch's end (validation, checkpoints)
    per_step = [marks[i + 1][0] - marks[i][0] for i in range(steps)]
    at_log = [r for i, r in enumerate(per_step[:-1]) if (i + 1) % a.log_every == 0]
    between = [r for i, r in enumerate(per_step[:-1]) if (i + 1) % a.log_every != 0]
    emit(
        {
            "benchmark": "syncs_per_step",
            "device": a.device,
            "steps": steps,
            "log_every": a.log_every,
            "syncs_total": counter.syncs,
            "syncs_per_step": round(counter.syncs / steps, 2),
            "syncs_between_log_intervals": sum(between),
            "syncs_per_log_interval": sorted(set(at_log)),
            "syncs_last_step_and_epoch_end": per_step[-1],
            "h2d_copies_total": counter.h2d if a.device == "cuda" else None,
            "h2d_copies_in_steps": marks[-2][1] - marks[0][1] if a.device == "cuda" else None,
            "note": "whole run incl. set-up, validation and checkpoints; goal: 0 between log intervals",
        }
    )


if __name__ == "__main__":
    main()
