"""Shared test fixtures: tiny real sweeps on digits, a finished sweep to copy, the CLI in a real subprocess
(`run_cli`, `start_cli`: where the process is the point). The CLI in-process and `wait_until` are in
helpers.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from helpers import CLI_ENV, CLI_ENV_REMOVED, cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The CLI's consoles are made at import: without COLUMNS they read it per call (helpers.cli sets 200).
os.environ.pop("COLUMNS", None)

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


def imagefolder_sweep(tmp_path: Path, root: Path, name: str = "tiny") -> Path:
    """A one-run sweep file: the default model, one epoch, one thread, on the image folder `root`."""
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: {json.dumps(name)}\noutput_dir: {tmp_path / 'results'}\n"
        f"data: {{kind: imagefolder, root: {root}}}\ntrain: {{epochs: 1, threads: 1}}\n"
    )
    return path


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: ours, offline, unbuffered, 200 columns, no fault unless asked."""
    full_env = {**os.environ, **CLI_ENV}
    for k in CLI_ENV_REMOVED:
        full_env.pop(k, None)
    full_env.update(env or {})
    return full_env


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """`python -m archbench *args` in a real subprocess: for signals, SIGKILL faults, start-up, rlimits and
    other isolation. Everything else calls the CLI in-process (`helpers.cli`)."""
    return subprocess.run(
        [sys.executable, "-m", "archbench", *args],
        cwd=cwd or REPO,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_sweep_text(tmp: Path, sweep_text: str) -> Path:
    """Write `sweep_text` (dedented) to `tmp/sweep.yaml`, run it with the CLI (in-process) from `tmp` and
    assert it exits 0; returns the sweep file."""
    sweep = tmp / "sweep.yaml"
    sweep.write_text(textwrap.dedent(sweep_text))
    res = cli("run", str(sweep), cwd=tmp)
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


def start_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[Any]:
    """`python -m archbench *args` started in the background (`popen`: stdout, stderr, text, ...)."""
    return subprocess.Popen(
        [sys.executable, "-m", "archbench", *args], cwd=cwd or REPO, env=cli_env(env), **popen
    )


@pytest.fixture(scope="session")
def verified_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-run sweep (digits, tiny_cnn, 1 epoch; sgd and adam), never modified: tests that
    damage, re-run or extend it work on a copy (`copy_sweep`)."""
    base = tmp_path_factory.mktemp("verified")
    res = cli("run", str(tiny_sweep(base, epochs=1)), cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    return base


def copy_sweep(base: Path, tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(sweep file, sweep folder, sgd run, adam run) of a fresh copy of `verified_sweep`."""
    shutil.copytree(base / "results", tmp_path / "results")
    sweep = tiny_sweep(tmp_path, epochs=1)
    sd = tmp_path / "results" / "tiny"
    runs = sorted((sd / "runs").iterdir())
    sgd = next(r for r in runs if "_sgd-" in r.name)
    adam = next(r for r in runs if "_adam-" in r.name)
    return sweep, sd, sgd, adam


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
