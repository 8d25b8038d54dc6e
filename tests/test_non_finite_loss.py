"""A non-finite loss fails its run, never the sweep (RELIABILITY.md cases 5, 9): the failure reason names
the step, no non-finite checkpoint is written, the other runs complete.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from archbench.store.checkpoint import load_checkpoint
from archbench.store.record import read_record
from conftest import tiny_sweep
from helpers import cli, only_run

pytestmark = pytest.mark.reliability


def test_absurd_learning_rate_fails_with_non_finite_loss_and_no_bad_checkpoint(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=3, optimizers="[sgd]")
    res = cli("run", str(sweep), "--set", "train.lr=1e12", "--set", "train.schedule=none", cwd=tmp_path)
    assert res.returncode == 1
    run_dir = only_run(tmp_path / "results")
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "failed"
    assert re.fullmatch(r"non_finite_loss@\d+", rec.failure_reason or "")
    for ckpt in (run_dir / "checkpoints").glob("*.pt"):
        state = load_checkpoint(ckpt)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_non_finite_loss_fails_run_and_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1)
    res = cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "nan@step:3#adam"})
    assert res.returncode == 1, res.stdout + res.stderr
    recs = [read_record(p) for p in (tmp_path / "results" / "tiny" / "runs").iterdir()]
    by_opt = {r.spec.train.optimizer: r for r in recs if r is not None}
    assert by_opt["adam"].status == "failed" and by_opt["adam"].failure_reason == "non_finite_loss@3"
    assert by_opt["sgd"].status == "completed"
    assert "1 failed" in res.stdout
