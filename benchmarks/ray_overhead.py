"""Ray executor overhead: 8 tiny runs on 2 CPUs, a local Ray instance vs the serial local loop; JSON out.

Both go through the real CLI in a subprocess (start-up included, as a user sees it) on fresh results
folders. Printed: wall seconds of each, their ratio, the summed training seconds from the records (the
work itself), the overhead per run, whether the two gave identical top-1 per run id, and the load average
(on a shared machine the ratio swings with it).

Ray must be able to start its servers: on a machine without a usable network namespace run it as
  unshare -n sh -c 'ip link set lo up && exec python benchmarks/ray_overhead.py'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 8
CPUS = 2

SWEEP = """
name: overhead
output_dir: {out}
data: {{kind: digits}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, batch_size: 64, threads: 1}}
grid:
  seed: {seeds}
executor:
  resources: {{cpu: 1}}
"""


def _run(sweep: Path, extra: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "archbench", "run", str(sweep), *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"archbench run {' '.join(extra)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return wall


def _records(out: Path) -> dict[str, dict[str, float]]:
    got = {}
    for d in sorted((out / "overhead" / "runs").iterdir()):
        rec = json.loads((d / "record.json").read_text())
        got[d.name] = {"top1": rec["metrics"]["top1"], "train_seconds": rec["train_seconds"]}
    return got


def main() -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        walls, recs = {}, {}
        for mode, extra in (("local", []), ("ray", ["--executor", "ray"])):
            out = tmp / mode
            sweep = tmp / f"{mode}.yaml"
            sweep.write_text(SWEEP.format(out=out, seeds=list(range(RUNS))))
            walls[mode] = _run(sweep, extra)
            recs[mode] = _records(out)
    train_s = {m: sum(r["train_seconds"] for r in recs[m].values()) for m in recs}
    ideal_ray = walls["local"] / CPUS  # perfect 2-way parallelism of the serial loop
    result = {
        "runs": RUNS,
        "cpus": CPUS,
        "os_cpu_count": os.cpu_count(),
        "local_wall_s": round(walls["local"], 2),
        "ray_wall_s": round(walls["ray"], 2),
        "ray_over_local_wall": round(walls["ray"] / walls["local"], 3),
        "sum_train_seconds": {m: round(v, 2) for m, v in train_s.items()},
        "ray_overhead_per_run_s": round((walls["ray"] - ideal_ray) / (RUNS / CPUS), 2),
        "same_ids_and_top1": recs["local"].keys() == recs["ray"].keys()
        and all(recs["local"][k]["top1"] == recs["ray"][k]["top1"] for k in recs["local"]),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "overhead per run = (ray wall - local wall / cpus) / (runs / cpus); includes Ray start-up",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
