"""Benchmark: what a one-run digits sweep costs outside training (`archbench run`, a fresh process each time).

Prints one JSON object. Each pair runs, in fresh processes and alternating which goes first:

* A: `python -c "import torch; import torch._dynamo"` — the floor any torch training pays here (torch.optim
  imports `torch._dynamo` itself when an optimizer is built or stepped);
* B: `python -m archbench run one.yaml` — digits, tiny_cnn, one epoch, 1 thread, into a fresh folder.

`outside_training_seconds` = B's wall time minus the record's `train_seconds` (goal < 3 s);
`archbench_own_seconds` = that minus A's wall time in the same pair: what archbench adds to torch's import.
CPU seconds (user + sys of the child) are given beside the wall times: on a shared host the wall time is
mostly waiting for a core. `imports` breaks one extra `-X importtime` run of B down by top-level package
(cumulative import seconds as Python reports them; importtime itself inflates them somewhat).

    .venv/bin/python benchmarks/startup.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

SWEEP = """name: one
output_dir: {out}
data:
  kind: digits
model:
  name: tiny_cnn
train:
  epochs: 1
  batch_size: 64
  threads: 1
seed: 0
"""
GOAL_SECONDS = 3.0
SRC = Path(__file__).resolve().parent.parent / "src"


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": f"{SRC}{os.pathsep}{path}" if path else str(SRC),
    }


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU (user + sys of the child) seconds of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res


def _sweep(work: Path, k: int) -> Path:
    path = work / f"one-{k}.yaml"
    path.write_text(SWEEP.format(out=work / f"out-{k}"))
    return path


def _train_seconds(work: Path, k: int) -> float:
    (record,) = (work / f"out-{k}" / "one" / "runs").glob("*/record.json")
    return float(json.loads(record.read_text())["train_seconds"])


NAMED = ("torch", "torch._dynamo", "numpy", "pydantic", "typer", "rich", "yaml", "archbench.cli.app")


def import_breakdown(stderr: str) -> dict[str, float]:
    """From -X importtime: `all` (every import, seconds), and the cumulative seconds of a few modules where
    each was first imported (these overlap: a module's figure includes what it was first to import)."""
    total, named = 0.0, {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue
        seconds = int(cumulative) / 1e6
        if not name.startswith("  "):  # nesting level 0: a top-level import
            total += seconds
        if name.strip() in NAMED and name.strip() not in named:
            named[name.strip()] = round(seconds, 3)
    return {"all": round(total, 3), **named}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    python = sys.executable
    floor_cmd = [python, "-c", "import torch; import torch._dynamo"]
    result: dict[str, Any] = {"benchmark": "startup", "load_average_start": list(os.getloadavg())}
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="archbench-startup-") as tmp:
        work = Path(tmp)

        def run_b(k: int) -> dict[str, float]:
            wall, cpu, _ = _timed([python, "-m", "archbench", "run", str(_sweep(work, k))], work)
            train = _train_seconds(work, k)
            return {"wall": wall, "cpu": cpu, "train": train, "outside": wall - train}

        for k in range(args.pairs):
            if k % 2 == 0:
                a_wall, a_cpu, _ = _timed(floor_cmd, work)
                b = run_b(k)
            else:
                b = run_b(k)
                a_wall, a_cpu, _ = _timed(floor_cmd, work)
            rows.append({**b, "floor_wall": a_wall, "floor_cpu": a_cpu, "own": b["outside"] - a_wall})
        _, _, res = _timed(
            [python, "-X", "importtime", "-m", "archbench", "run", str(_sweep(work, args.pairs))], work
        )
        result["imports_seconds"] = import_breakdown(res.stderr)

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    result.update(
        {
            "sweep": "digits, tiny_cnn, 1 epoch, 1 thread (one run)",
            "pairs": args.pairs,
            "outside_training_seconds": med("outside"),
            "outside_training_range": [
                round(min(r["outside"] for r in rows), 3),
                round(max(r["outside"] for r in rows), 3),
            ],
            "goal_seconds": GOAL_SECONDS,
            "met": med("outside") < GOAL_SECONDS,
            "run_wall_seconds": med("wall"),
            "run_cpu_seconds": med("cpu"),
            "train_seconds": med("train"),
            "torch_floor_wall_seconds": med("floor_wall"),
            "torch_floor_cpu_seconds": med("floor_cpu"),
            "archbench_own_seconds": med("own"),
            "load_average_end": list(os.getloadavg()),
        }
    )
    emit(result)


if __name__ == "__main__":
    main()
