"""One process trains a run at a time (RELIABILITY.md case 34): a run claimed by another live process is
reported busy (exit 3) and left untouched; two sweeps started together train each run exactly once.
Real processes: the claim is a flock held by a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import start_cli, tiny_sweep
from helpers import cli, wait_until

pytestmark = pytest.mark.reliability


def test_run_busy_in_a_stopped_process_exits_3_naming_it(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=200, optimizers="[sgd]")
    owner = start_cli("run", str(sweep), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "results" / "tiny" / "runs"

    def running_record() -> Path | None:
        recs = list(runs.glob("*/record.json")) if runs.is_dir() else []
        return recs[0] if recs and '"running"' in recs[0].read_text() else None

    try:
        record = wait_until(running_record, 300, "the owner to start its run", alive=owner)
        os.kill(owner.pid, signal.SIGSTOP)
        record_before = record.read_text()
        res = cli("run", str(sweep), cwd=tmp_path)
        assert res.returncode == 3, res.stdout + res.stderr
        run_id = record.parent.name
        assert f"busy {run_id}: claimed by pid {owner.pid}" in res.stdout
        assert record.read_text() == record_before  # nothing trained twice, nothing touched
    finally:
        owner.kill()
        owner.wait(timeout=60)


def test_two_concurrent_sweeps_train_each_run_exactly_once(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd, adam, adamw]")
    sweep.write_text(sweep.read_text() + "  seed: [0, 1]\n")
    procs = [
        start_cli("run", str(sweep), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        # 3: this sweep skipped runs the other one was training (busy, named in its summary)
        assert p.returncode in (0, 3), out + err
        assert (p.returncode == 3) == ("  busy " in out), out + err
    run_dirs = list((tmp_path / "results" / "tiny" / "runs").iterdir())
    assert len(run_dirs) == 6
    for run_dir in run_dirs:
        rec = read_record(run_dir)
        assert rec is not None and rec.status == "completed"
        assert [e["event"] for e in rec.events].count("started") == 1, rec.events
    # Piped output: each line is "YYYY-MM-DD HH:MM:SS <text>".
    trained_lines = [ln for out, _ in outs for ln in out.splitlines() if ln[20:].startswith("trained")]
    assert len(trained_lines) == 6
