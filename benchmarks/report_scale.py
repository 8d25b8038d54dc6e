"""Benchmark: `archbench report` time vs the number of configurations (10/50/100 × 5 seeds by default).

Writes synthetic but real-format sweeps (plan.json, record.json through the record module, predictions.npz
in the evaluator's layout) into a temporary folder, then times `archbench report` on each in a fresh
process, as a user would run it. Prints one JSON object with the seconds per size and the load average.

    .venv/bin/python benchmarks/report_scale.py [--configs 10,50,100] [--seeds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_sweep(root: Path, configs: int, seeds: int, n_test: int = 1000, classes: int = 10) -> Path:
    """A sweep folder of `configs` × `seeds` completed runs whose accuracies differ by configuration."""
    from archbench.config import SweepConfig
    from archbench.engine.evaluate import metrics_from_predictions
    from archbench.execution.driver import write_plan
    from archbench.store.record import EpochStats, Metrics, RunRecord, now_iso, write_record
    from archbench.sweep.expand import expand_sweep

    lrs = [round(0.001 * (i + 1), 6) for i in range(configs)]
    cfg = SweepConfig(
        name=f"scale{configs}",
        output_dir=str(root),
        train={"epochs": 10},
        grid={"train.lr": lrs, "seed": list(range(seeds))},
    )
    runs = expand_sweep(cfg)
    sweep = write_plan(cfg, runs, None)
    rng = np.random.default_rng(configs)
    y_true = rng.integers(0, classes, n_test)
    for k, planned in enumerate(runs):
        cfg_index = lrs.index(planned.spec.train.lr)
        skill = 0.55 + 0.4 * cfg_index / max(configs - 1, 1)  # configurations really differ
        logits = rng.normal(0, 1, (n_test, classes)).astype(np.float32)
        logits[np.arange(n_test), y_true] += 4 * skill
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        run_dir = sweep / "runs" / planned.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(
            buf, y_true=y_true, y_pred=probs.argmax(1).astype(np.int64), probs=probs.astype(np.float32)
        )
        (run_dir / "predictions.npz").write_bytes(buf.getvalue())
        metrics = metrics_from_predictions(y_true, probs, classes)
        metrics["checkpoint"] = "best"
        history = [
            EpochStats(
                epoch=e,
                step=10 * (e + 1),
                train_loss=2.0 / (e + 1),
                train_acc=skill * (1 - 0.5 / (e + 1)),
                val_loss=2.1 / (e + 1),
                val_acc=skill * (1 - 0.55 / (e + 1)),
                lr=planned.spec.train.lr,
                seconds=1.0,
                images_per_s=1000.0,
            )
            for e in range(10)
        ]
        record = RunRecord(
            run_id=planned.run_id,
            sweep=cfg.name,
            status="completed",
            spec=planned.spec,
            spec_hash=planned.spec_hash,
            axes=planned.axes,
            seed=planned.spec.seed,
            data_fingerprint="synthetic",
            class_names=[f"c{i}" for i in range(classes)],
            started_at=now_iso(),
            ended_at=now_iso(),
            train_seconds=10.0 + k % 7,
            history=history,
            metrics=Metrics(**metrics),
            params={"total": 10_000 * (cfg_index + 1), "trainable": 10_000 * (cfg_index + 1)},
        )
        write_record(run_dir, record)
    return sweep


def time_report(sweep: Path) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "archbench", "report", str(sweep), "--out", str(sweep / "report")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="10,50,100")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--keep", default=None, help="write the sweeps here instead of a temporary folder")
    a = ap.parse_args()
    sizes = [int(s) for s in a.configs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep) if a.keep else Path(tmp)
        sweeps = {n: write_sweep(root, n, a.seeds) for n in sizes}
        load_before = os.getloadavg()
        seconds = {str(n): round(time_report(sweeps[n]), 2) for n in sizes}
        load_after = os.getloadavg()
    print(
        json.dumps(
            {
                "benchmark": "report_scale",
                "seeds": a.seeds,
                "report_seconds_by_configs": seconds,
                "goal": "100 configs x 5 seeds <= 20 s",
                "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
