"""Progress wherever the output goes: plain lines in a redirected log while a sweep runs, live history,
and `ls` showing progress/ETA of running runs, the grid axes, and never cutting a value."""

from __future__ import annotations

import csv
import io
import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from archbench.cli.progress import PlainReporter, progress_every
from conftest import start_cli, tiny_sweep
from helpers import cli, wait_until


def test_plain_lines_come_at_the_configured_cadence() -> None:
    now = [0.0]
    out = io.StringIO()
    rep = PlainReporter(out, every=10.0, clock=lambda: now[0])
    rep.sweep_started(2, 2)
    rep.run_started(SimpleNamespace(run_id="r1"), 0, 2, epochs=2)
    for step in range(1, 101):  # one batch per second, 50 batches per epoch
        now[0] += 1.0
        rep.batch(step // 51, (step - 1) % 50 + 1, 50, 0.5, 0.75, 123.0)
    lines = out.getvalue().splitlines()
    batch_lines = [ln for ln in lines if " step " in ln]
    # 100 s of batches at one line per 10 s (the start line counts as the last line at t=0).
    assert len(batch_lines) == 10
    assert "run 1/2 r1 epoch 1/2 step 10/50 loss 0.5000 acc 0.7500 123 img/s ETA 1:30" in lines[2]
    assert all(ln[:4].isdigit() and ln[10] == " " for ln in lines)  # "YYYY-MM-DD HH:MM:SS ..."


def test_progress_every_from_option_env_or_default(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ARCHBENCH_PROGRESS_EVERY", raising=False)
    assert progress_every(None) == 10.0
    monkeypatch.setenv("ARCHBENCH_PROGRESS_EVERY", "2.5")
    assert progress_every(None) == 2.5
    assert progress_every(0.0) == 0.0


@pytest.mark.slow
def test_redirected_run_writes_progress_and_ls_shows_it_while_running(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=200, optimizers="[sgd, adam]")
    log = tmp_path / "log.txt"
    with open(log, "wb") as f:
        # PYTHONUNBUFFERED empty (off): the lines must be flushed by archbench itself.
        env = {"ARCHBENCH_PROGRESS_EVERY": "0", "PYTHONUNBUFFERED": ""}
        proc = start_cli("run", str(sweep), env=env, stdout=f, stderr=f)
    try:
        # Lines reach the file while the process still runs (flushed, not buffered until exit).
        wait_until(lambda: " step " in log.read_text(), 120, "a progress line in the log", alive=proc)
        text = log.read_text()
        line = next(ln for ln in text.splitlines() if " step " in ln)
        assert "run 1/2 " in line and "epoch 1/200" in line and "img/s" in line and "ETA" in line
        # history.csv and the record's history are written every epoch, so ls sees progress and ETA.
        run_dirs = sweep.parent / "results" / "tiny" / "runs"
        wait_until(lambda: any(run_dirs.glob("*/history.csv")), 120, "history.csv", alive=proc)
        res = cli("ls", str(sweep.parent / "results" / "tiny"), "--format", "json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        running = [r for r in rows if r["status"] == "running"]
        assert len(running) == 1, rows
        done, total = running[0]["progress"].split("/")
        assert int(done) >= 1 and total == "200"
        assert running[0]["eta"] and running[0]["eta_seconds"] >= 0
        assert running[0]["train.optimizer"] == "sgd"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert proc.returncode == 130
    # Not a terminal, a narrow COLUMNS: the table is still as wide as its content.
    res = cli("ls", str(sweep.parent / "results" / "tiny"), env={"COLUMNS": "40"})
    assert res.returncode == 0, res.stderr
    rows_csv = list(csv.DictReader(io.StringIO((sweep.parent / "results/tiny/results.csv").read_text())))
    for r in rows_csv:
        assert r["run_id"] in res.stdout
    header = next(ln for ln in res.stdout.splitlines() if "run_id" in ln)
    for col in ("status", "model.name", "train.optimizer", "progress", "top1"):
        assert col in header
    assert "…" not in res.stdout
    res = cli("ls", str(sweep.parent / "results" / "tiny"), "--format", "csv")
    assert res.returncode == 0 and res.stdout.startswith("run_id,sweep,status")
    res = cli("ls", str(sweep.parent / "results" / "tiny"), "--format", "yaml")
    assert res.returncode == 2 and "--format" in res.stderr
