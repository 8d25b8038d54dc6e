"""RELIABILITY 43: two cooperating sweeps on one folder, ending at different times.

Two real `archbench run` processes on one tiny digits sweep; SIGSTOP/SIGCONT decide who holds which run
when, and every wait is on observable state (a record's status, a line in a log, a process's exit) with a
bound. Pass criterion: each run trained once; no summary calls a run busy that is finished; the process
that ends with every run done exits 0 (execution/cooperate.py). `--wait` waits for the held runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, tiny_sweep
from helpers import cli

pytestmark = pytest.mark.reliability

BOUND_S = 300.0  # a guard against a hang only: two shared cores can be slow to start torch


def _until(what: str, ready: Callable[[], bool], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if ready():
            return
        for p in procs:
            if p.poll() is not None and not ready():
                pytest.fail(f"{what}: process {p.pid} exited {p.returncode} first")
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {BOUND_S:.0f}s")


@contextmanager
def _sweep_process(sweep: Path, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("ARCHBENCH_FAULT", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "archbench", "run", str(sweep), *extra],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=60)


def _running(runs: Path) -> set[str]:
    out = set()
    for rec in runs.glob("*/record.json"):
        try:
            if json.loads(rec.read_text())["status"] == "running":
                out.add(rec.parent.name)
        except (OSError, ValueError):
            continue  # being replaced right now
    return out


def _trained_once(runs: Path, n: int) -> None:
    recs = [json.loads(p.read_text()) for p in runs.glob("*/record.json")]
    assert len(recs) == n
    for rec in recs:
        assert rec["status"] == "completed", rec["run_id"]
        assert [e["event"] for e in rec["events"]].count("started") == 1, rec["run_id"]


def test_two_sweeps_ending_at_different_times_agree(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=20, optimizers="[sgd, adam, adamw]")
    runs = tmp_path / "results" / "tiny" / "runs"
    with _sweep_process(sweep, tmp_path / "a.log") as a:
        _until("A starts its first run", lambda: len(_running(runs)) == 1, [a])
        (x,) = _running(runs)
        os.kill(a.pid, signal.SIGSTOP)  # A holds x
        with _sweep_process(sweep, tmp_path / "b.log") as b:
            _until("B starts a second run", lambda: len(_running(runs)) == 2, [b])
            (y,) = _running(runs) - {x}
            os.kill(b.pid, signal.SIGSTOP)  # B holds y
            os.kill(a.pid, signal.SIGCONT)
            _until("A ends", lambda: a.poll() is not None, [a])
            a_out = (tmp_path / "a.log").read_text()
            # A ended while B (alive) held y: busy is the truth there, and nothing else is busy.
            assert a.returncode == 3, a_out
            assert f"busy {y}: claimed by pid {b.pid}" in a_out and "1 busy" in a_out, a_out
            os.kill(b.pid, signal.SIGCONT)
            _until("B ends", lambda: b.poll() is not None, [b])
            b_out = (tmp_path / "b.log").read_text()
    # B found x busy when it reached it, but A finished x before B ended: B's summary counts it done.
    assert b.returncode == 0, b_out
    summary = next(ln for ln in b_out.splitlines() if ln.startswith("sweep tiny: 3 runs:"))
    assert "busy" not in summary and summary.endswith("1 trained, 2 skipped"), summary
    _trained_once(runs, 3)
    assert cli("verify", str(runs.parent)).returncode == 0


def test_wait_waits_for_the_runs_another_process_holds(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=20, optimizers="[sgd, adam, adamw]")
    runs = tmp_path / "results" / "tiny" / "runs"
    b_log = tmp_path / "b.log"
    with _sweep_process(sweep, tmp_path / "a.log") as a:
        _until("A starts its first run", lambda: len(_running(runs)) == 1, [a])
        (x,) = _running(runs)
        os.kill(a.pid, signal.SIGSTOP)  # A holds x
        with _sweep_process(sweep, b_log, "--wait") as b:
            _until(
                "B waits for x",
                lambda: f"waiting for 1 run(s) held by other processes: {x}" in b_log.read_text(),
                [b],
            )
            os.kill(a.pid, signal.SIGCONT)
            _until("both end", lambda: a.poll() is not None and b.poll() is not None, [])
            b_out = b_log.read_text()
    a_out = (tmp_path / "a.log").read_text()
    assert a.returncode == 0 and "sweep tiny: 3 runs: 1 trained, 2 skipped" in a_out, a_out
    assert b.returncode == 0 and "sweep tiny: 3 runs: 2 trained, 1 skipped" in b_out, b_out
    _trained_once(runs, 3)
