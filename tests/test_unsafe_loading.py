"""Nothing read from a file runs code (RELIABILITY.md case 21): a checkpoint carrying a pickle payload is
refused and never executed, a gzip file holding a pickle is read as bytes; and the source loads checkpoints
only with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import ast
import gzip
import os
from pathlib import Path

import pytest
import torch

from archbench.config import DataSpec
from archbench.data import create_dataset
from archbench.store.checkpoint import load_checkpoint
from archbench.util.errors import CheckpointError, DatasetError
from conftest import REPO, run_cli, tiny_sweep
from helpers import cli, only_run

pytestmark = pytest.mark.reliability


def _is_torch_load(node: ast.Call) -> bool:
    f = node.func
    return (
        isinstance(f, ast.Attribute)
        and f.attr == "load"
        and isinstance(f.value, ast.Name)
        and f.value.id == "torch"
    )


def test_every_torch_load_in_the_source_passes_weights_only_true() -> None:
    """The one source rule of case 21 that stays a test: no linter in this toolchain can require a keyword
    on a call (ruff's banned-api bans a name outright; bandit's B614 is not run here). The other rules are
    ruff's banned-api in pyproject.toml (`[tool.ruff.lint.flake8-tidy-imports.banned-api]`): pickle.load(s),
    yaml.load/unsafe_load and yaml's unsafe Loaders (case 21), and DataLoader (case 11: no worker process);
    tests/test_source_rules.py runs that rule and shows it catches each breach."""
    problems = []
    for path in sorted((REPO / "src" / "archbench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                problems += [
                    f"{path}:{node.lineno}: from torch import load" for a in node.names if a.name == "load"
                ]
            if isinstance(node, ast.Call) and _is_torch_load(node):
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not safe:
                    problems.append(f"{path}:{node.lineno}: torch.load without weights_only=True")
    assert problems == []


def test_checkpoint_with_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    assert cli("run", str(sweep), "--dry-run", cwd=tmp_path).returncode == 0
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    res = run_cli(
        "run", str(sweep), "--set", "train.epochs=2", cwd=tmp_path, env={"ARCHBENCH_FAULT": "kill@step:3"}
    )
    assert res.returncode == -9
    run_dir = only_run(tmp_path / "results")
    torch.save({"model": Payload(), "_digest": "x"}, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(run_dir / "checkpoints" / "last.pt")
    res = cli("run", str(sweep), "--set", "train.epochs=2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    assert (run_dir / "checkpoints" / "last.pt.bad-0").exists()


def test_gzip_is_not_a_payload_vector(tmp_path: Path) -> None:
    """A .gz IDX file holding a pickle is read as bytes and rejected by its magic, never unpickled."""
    import pickle

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        with gzip.open(raw / f"{name}.gz", "wb") as f:
            f.write(pickle.dumps({"x": 1}))
    with pytest.raises(DatasetError, match="magic"):
        create_dataset(DataSpec(kind="mnist", root=str(tmp_path)))
