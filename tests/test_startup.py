"""Start-up stays lean: a one-run digits sweep imports none of the heavy optional libraries (issue 12).

Counted by module name after a real `archbench run` in a fresh interpreter, never by wall-clock time
(`benchmarks/startup.py` measures the seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, tiny_sweep

# Each costs from a few tenths of a second (PIL) to seconds (scikit-learn, matplotlib) of import time and
# none is needed to train and evaluate on digits: digits come from scikit-learn's CSV read with numpy.
HEAVY = ("sklearn", "scipy", "matplotlib", "timm", "PIL", "torchvision", "mlflow", "ray", "pandas")

PROBE = """
import json, runpy, sys
sys.argv = ["archbench", "run", sys.argv[1]]
try:
    runpy.run_module("archbench", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"rc": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


def test_one_run_digits_sweep_imports_no_heavy_library(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")  # one run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, str(sweep)], env=env, capture_output=True, text=True, timeout=600
    )
    report = json.loads(res.stderr.strip().splitlines()[-1])
    assert report["rc"] == 0, res.stdout + res.stderr
    assert "torch" in report["modules"] and "archbench" in report["modules"]  # the probe saw the run
    assert [m for m in HEAVY if m in report["modules"]] == []


def test_planning_imports_no_torch(tmp_path: Path) -> None:
    """Planning (`run --dry-run`: load, expand, every planning check) never imports torch, so a sweep run on
    Ray pays torch's import only in its workers, not first in the driver too."""
    sweep = tiny_sweep(tmp_path, epochs=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    probe = PROBE.replace("sys.argv[1]]", 'sys.argv[1], "--dry-run"]')
    res = subprocess.run([sys.executable, "-c", probe, str(sweep)], env=env, capture_output=True, text=True)
    report = json.loads(res.stderr.strip().splitlines()[-1])
    assert report["rc"] == 0 and ": 2 runs" in res.stdout, res.stdout + res.stderr
    assert "archbench" in report["modules"] and "torch" not in report["modules"]
