"""SIGTERM ends every rank of a multi-process run within 10 s, even when no step can be agreed (RELIABILITY
35): two CPU processes on this machine, one of them stuck, the other told to stop."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import run_cli

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SWEEP = """
name: ddp
output_dir: {out}
data: {{kind: digits}}
model: {{name: tiny_cnn}}
train: {{epochs: 2, batch_size: 64, threads: 1, device: cpu, log_every: 1000}}
executor: {{resources: {{processes: 2, timeout_s: 600}}}}
"""


def holders(path: Path) -> list[int]:
    """Processes that hold `path` open (a rank keeps its log open for as long as it lives)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if str(path) in links:
            found.append(int(pid))
    return found


def test_sigterm_with_a_stuck_rank_kills_the_ranks_and_the_run_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent(SWEEP.format(out=tmp_path / "results")))
    # Rank 1 stops responding before step 5 and rank 0 gets SIGTERM there: no step can be agreed any more,
    # and without the bound rank 0 would wait timeout_s (600 s) in the gradient exchange.
    fault = "hang@step:5#/rank1,term@step:5#/rank0"
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": fault}, timeout=300)
    assert res.returncode == 130, res.stdout + res.stderr
    (run_dir,) = (tmp_path / "results" / "ddp" / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "killed", res.stdout + res.stderr
    assert rec.failure_detail is not None
    m = re.search(r"other ranks were killed ([0-9.]+)s after it", rec.failure_detail)
    assert m is not None, rec.failure_detail
    assert float(m.group(1)) <= 10.0  # the grace (5 s) plus the kill, measured by rank 0 itself
    assert holders(run_dir / "rank1.log") == []  # no rank outlives the run
    # The next run picks it up (from its last checkpoint; here none was written yet) and finishes.
    res = run_cli("run", str(sweep), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed"
