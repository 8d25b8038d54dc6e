"""Shared test helpers: real subprocesses running the real CLI, tiny real sweeps on digits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"

TINY_SWEEP = """
name: tiny
output_dir: {out}
data:
  kind: digits
model:
  name: tiny_cnn
train:
  epochs: {epochs}
  batch_size: 64
  optimizer: sgd
  lr: 0.05
  threads: 1
seed: 0
grid:
  model.name: [tiny_cnn]
  train.optimizer: {optimizers}
"""


def tiny_sweep(
    tmp_path: Path, epochs: int = 2, optimizers: str = "[sgd, adam]", out: Path | None = None
) -> Path:
    out = out or tmp_path / "results"
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(TINY_SWEEP.format(out=out, epochs=epochs, optimizers=optimizers)))
    return path


def image_folder_sweep(
    tmp: Path, classes: list[str], name: str = "tiny", per_split: tuple[int, int] = (10, 3), side: int = 8
) -> Path:
    """`tmp/s.yaml`: a one-run sweep (1 epoch, results in `tmp/results`) on a tiny RGB image folder
    `tmp/imgs/{train,test}/<class>/<i>.png`, each class a little brighter than the one before."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_split, strict=True):
        for c, cls in enumerate(classes):
            d = tmp / "imgs" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 80, (side, side, 3), dtype=np.uint8) + 60 * c
                Image.fromarray(arr.astype(np.uint8)).save(d / f"{i}.png")
    sweep = tmp / "s.yaml"
    sweep.write_text(
        f"name: {json.dumps(name)}\noutput_dir: {tmp / 'results'}\n"
        f"data: {{kind: imagefolder, root: {tmp / 'imgs'}}}\ntrain: {{epochs: 1, threads: 1}}\n"
    )
    return sweep


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    full_env.pop("ARCHBENCH_FAULT", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "archbench", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_sweep_text(tmp: Path, sweep_text: str) -> Path:
    """Write `sweep_text` (dedented) to `tmp/sweep.yaml`, run it with the CLI from `tmp` and assert it exits
    0; returns the sweep file."""
    sweep = tmp / "sweep.yaml"
    sweep.write_text(textwrap.dedent(sweep_text))
    res = run_cli("run", str(sweep), cwd=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    return sweep


def run_one(tmp_path: Path, sweep_text: str) -> tuple[Path, Any]:
    """Write a one-run sweep (its `output_dir` is `results` beside it), run it with the CLI, and return
    (the run folder, its completed record)."""
    from archbench.store.record import read_record

    run_sweep_text(tmp_path, sweep_text)
    (run_dir,) = (p for sweep_dir in (tmp_path / "results").iterdir() for p in (sweep_dir / "runs").iterdir())
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.metrics is not None
    return run_dir, rec


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test (and the CLI subprocesses it starts) uses a prepared-data cache of its own session,
    never the user's ~/.cache/archbench/data."""
    os.environ["ARCHBENCH_CACHE"] = str(tmp_path_factory.mktemp("archbench-data-cache"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}); CI provides it")
    return SHARED_DATA
