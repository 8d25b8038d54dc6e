"""Summarise one trained run for benchmarks/gpu_suite.sh: seconds, accuracy, img/s, TFLOP/s and MFU.

Reads the run's record only (never a live object). Training FLOPs are 3x the forward FLOPs per image
(forward + backward ≈ 2x forward) counted on the meta device by archbench's profiler, times the images
trained. MFU is against the device's dense bf16 peak from a small table (or ARCHBENCH_PEAK_TFLOPS), and is
null when the peak is unknown (e.g. a CPU). Prints one JSON object, adding the bench results given.

    python benchmarks/suite_summary.py SWEEP_DIR [BENCH_JSON_FILE ...]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name (vendor data sheets).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}  # fmt: skip


def peak_tflops(device_name: str) -> float | None:
    if os.environ.get("ARCHBENCH_PEAK_TFLOPS"):
        return float(os.environ["ARCHBENCH_PEAK_TFLOPS"])
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return peak
    return None


def forward_flops(record: Any, bundle_shape: tuple[int, int, int]) -> int:
    import torch

    from archbench.models import create_model
    from archbench.stages.profile.counting import count_flops

    c, h, _ = bundle_shape
    spec = record.spec
    model = create_model(
        spec.model, in_chans=c, num_classes=len(record.class_names or []) or 10, image_size=h
    ).eval()
    flops, _ = count_flops(model, torch.zeros(1, c, h, h))
    return flops


def main() -> None:
    from archbench.store.record import read_record

    sweep = Path(sys.argv[1])
    runs = sorted((sweep / "runs").iterdir())
    rec = read_record(runs[0])
    if rec is None or rec.metrics is None:
        raise SystemExit(f"{runs[0]}: no completed record")
    res = rec.spec.data.resolution or int((rec.data or {}).get("native_size", [32])[0])
    chans = int((rec.data or {}).get("in_chans", 3))
    seen = sum(h.images_per_s * h.seconds for h in rec.history)
    seconds = float(rec.train_seconds or 0.0)
    fwd = forward_flops(rec, (chans, res, res))
    tflops = 3 * fwd * seen / max(seconds, 1e-9) / 1e12
    name = str(rec.device.get("name", ""))
    peak = peak_tflops(name) if rec.device.get("type") == "cuda" else None
    out: dict[str, Any] = {
        "suite": "gpu_suite",
        "config": rec.sweep,
        "device": rec.device,
        "train_seconds": round(seconds, 2),
        "epochs": len(rec.history),
        "test_top1": rec.metrics.top1,
        "train_images_per_s": round(seen / max(seconds, 1e-9), 1),
        "forward_gflops_per_image": round(fwd / 1e9, 4),
        "achieved_tflops": round(tflops, 3),
        "peak_bf16_tflops": peak,
        "mfu": round(tflops / peak, 4) if peak else None,
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "bench": [],
    }
    for path in sys.argv[2:]:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{"):
                out["bench"].append(json.loads(line))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
