"""Profiling under stated conditions: a run is profiled with its own threads and device (unless overridden),
every row states the load before and after, its threads and its spread, and says "noisy" and why; the
profile stage's conditions reach the report; archbench's timing agrees with a hand-timed torch loop; the
README quotes the captured outputs of `make readme-outputs` exactly."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archbench.config import ModelSpec, TrainSpec
from archbench.stages.profile.conditions import MIN_STEADY_ITERS, NOISY_SPREAD, noisy_reasons, verdict
from archbench.store.record import read_record
from conftest import REPO, run_sweep_text
from helpers import cli

SWEEP = """
name: cond
output_dir: {out}
data: {{kind: digits, limit_per_class: 20}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, threads: 1}}
profile: {{batch_sizes: [1, 4], warmup: 1, iters: 10, budget_s: 0, memory: false, train_step: false}}
"""
QUICK = ["--batch-sizes", "1,4", "--iters", "10", "--warmup", "1", "--budget", "0", "--no-memory"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run trained with `threads: 1` and profiled by the stage right after training."""
    tmp = tmp_path_factory.mktemp("conditions")
    run_sweep_text(tmp, SWEEP.format(out=tmp / "results"))
    return tmp / "results" / "cond"


def _run_dir(sweep: Path) -> Path:
    (run_dir,) = sorted((sweep / "runs").iterdir())
    return run_dir


def _assert_states_conditions(conditions: dict[str, object], threads: int) -> None:
    assert conditions["threads"] == threads and conditions["device"] == "cpu"
    for key in ("load_before", "load_after"):
        assert isinstance(conditions[key], float) and conditions[key] >= 0  # type: ignore[operator]
    assert isinstance(conditions["usable_cores"], int) and conditions["usable_cores"] >= 1
    assert isinstance(conditions["spread"], float) and conditions["spread"] >= 0
    assert isinstance(conditions["noisy"], list)


def _profile(*args: str) -> str:
    """`archbench profile ...` in this process; its stdout."""
    from typer.testing import CliRunner

    from archbench.cli.app import app

    res = CliRunner().invoke(app, ["profile", *args])
    assert res.exit_code == 0, res.output[-3000:]
    return res.stdout


def test_profiling_a_threads_1_run_reports_1_thread_and_the_load(trained: Path) -> None:
    """Acceptance: `archbench profile RUN_DIR` of a run trained with `threads: 1` measures with 1 thread
    (whatever the process had: 3 here) and states the load; `--threads 2` overrides the run's own."""
    import torch

    run_dir = _run_dir(trained)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        report = json.loads(_profile(str(run_dir), "--json", *QUICK))
        overridden = json.loads(_profile(str(run_dir), "--json", "--threads", "2", *QUICK))
        table = _profile(str(run_dir), *QUICK)
        assert torch.get_num_threads() == 3  # restored after each run
    finally:
        torch.set_num_threads(before)
    (row,) = report["results"]
    _assert_states_conditions(row["conditions"], threads=1)
    assert report["threads"] == 1 and isinstance(report["load_before"], float)
    assert isinstance(report["load_after"], float)
    assert row["latency_ms_p10"] <= row["latency_ms_p50"] <= row["latency_ms_p90"]
    assert all(m["iters"] == 10 and m["ms_p10"] <= m["ms_p90"] for m in row["inference"])
    assert overridden["results"][0]["conditions"]["threads"] == 2
    assert "1 thread," in table and "load average (1 min)" in table
    assert "steady" in table or "noisy: " in table


def test_the_stage_after_training_uses_the_runs_threads_and_records_conditions(trained: Path) -> None:
    rec = read_record(_run_dir(trained))
    assert rec is not None and rec.spec.train.threads == 1
    block = rec.stages["profile"]
    assert "error" not in block, block
    _assert_states_conditions(block["conditions"], threads=1)
    assert block["threads"] == 1 and block["settings"]["budget_s"] == 0
    (entry,) = block["per_resolution"]
    assert entry["conditions"] == block["conditions"]
    rows = list(csv.DictReader((trained / "stages" / "profile" / "profile.csv").open()))
    assert rows[0]["threads"] == "1" and rows[0]["conditions"].startswith(("steady", "noisy: "))
    assert rows[0]["load_before"] and rows[0]["load_after"] and rows[0]["spread"]


def test_profile_record_takes_threads_from_the_command(trained: Path, tmp_path: Path) -> None:
    """`profile --record --threads 2` stores a block measured with 2 threads (the stage's own setting)."""
    import shutil

    sweep = tmp_path / "cond"
    shutil.copytree(trained, sweep, symlinks=True)
    out = _profile(str(sweep), "--record", "--threads", "2")
    assert "steady" in out or "noisy: " in out
    rec = read_record(_run_dir(sweep))
    assert rec is not None
    assert rec.stages["profile"]["conditions"]["threads"] == 2


def test_the_report_shows_threads_and_conditions(trained: Path, tmp_path: Path) -> None:
    from archbench.report import build_report

    build_report(trained, tmp_path / "report", "csv,md")
    (row,) = csv.DictReader((tmp_path / "report" / "tables" / "profile.csv").open())
    assert float(row["threads"]) == 1
    assert row["conditions"].startswith(("steady (load ≤ ", "noisy in 1/1 runs: "))
    md = (tmp_path / "report" / "report.md").read_text()
    assert "conditions" in md and ("steady (load" in md or "noisy in 1/1 runs" in md)


# --- the verdict --------------------------------------------------------------------------------------------


def test_noisy_names_each_reason_and_steady_names_none() -> None:
    steady = [("inference b1", {"iters": 40, "spread": 0.05}), ("inference b8", {"iters": 12, "spread": 0.1})]
    assert noisy_reasons(steady, [0.4, 1.9], cores=2) == []
    assert verdict({"noisy": []}) == "steady" and verdict(None) == ""

    wide = [("inference b1", {"iters": 40, "spread": NOISY_SPREAD + 0.16}), steady[1]]
    assert noisy_reasons(wide, [0.4, 0.5], cores=2) == ["spread > 25%: inference b1 41%"]
    assert noisy_reasons(steady, [0.4, 2.6], cores=2) == ["load 2.6 > 2 usable cores"]
    few = [("inference b1", {"iters": MIN_STEADY_ITERS - 7, "spread": 0.0})]
    assert noisy_reasons(few, [None, None], cores=2) == ["3 timed calls < 10"]
    all_three = noisy_reasons(wide + few, [5.0, 1.0], cores=4)
    assert len(all_three) == 3 and all_three[0] == "load 5.0 > 4 usable cores"
    assert verdict({"noisy": all_three}).startswith("noisy: load 5.0 > 4 usable cores; spread > 25%")


def test_timing_is_adaptive_within_its_budget() -> None:
    import torch

    from archbench.stages.profile.timing import MAX_ITERS, time_calls

    cpu = torch.device("cpu")
    assert len(time_calls(lambda: None, cpu, warmup=0, iters=10, budget_s=0)) == 10
    assert len(time_calls(lambda: None, cpu, warmup=0, iters=10, budget_s=None)) == 10
    # A call of about a microsecond: the budget leaves room for many more, up to the cap.
    assert len(time_calls(lambda: None, cpu, warmup=0, iters=10, budget_s=5.0)) == MAX_ITERS


def test_config_refuses_a_bad_budget_or_thread_count(tmp_path: Path) -> None:
    for bad in ("budget_s: -1", "budget_s: .inf", "threads: 0"):
        yaml = tmp_path / "bad.yaml"
        yaml.write_text(f"name: bad\ndata: {{kind: digits}}\nprofile: {{{bad}}}\n")
        res = cli("run", str(yaml), "--dry-run", cwd=tmp_path)
        assert res.returncode == 2 and "profile." in res.stderr, (bad, res.stderr)


# --- the peer check -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_inference_throughput_matches_a_hand_timed_torch_loop() -> None:
    """archbench's inference throughput vs a plain torch loop: same model (ResNet-18, CIFAR stem), input
    (batch 8, 32 px), threads (1), in one process, as interleaved pairs (the order alternates, so drift in
    the machine's load falls on both). A ratio check, not a wall-clock one: the median ratio of 5 pairs is
    within 0.8–1.25."""
    import torch

    from archbench.models import create_model
    from archbench.stages.base import scoped_threads
    from archbench.stages.profile.measure import ProfileSettings, Target, measure

    spec = ModelSpec(name="resnet18", stem="cifar")
    target = Target(spec, 3, 10, (32, 32), TrainSpec(device="cpu", threads=1))
    settings = ProfileSettings(
        batch_sizes=(8,), warmup=2, iters=10, budget_s=0, memory=False, train_step=False
    )
    cpu = torch.device("cpu")
    model = create_model(spec, 3, 10).eval()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def by_hand() -> float:
        with torch.inference_mode():
            for _ in range(2):
                model(x)
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        return 8 / statistics.median(times)

    ratios = []
    with scoped_threads(1):
        for pair in range(5):
            if pair % 2:
                hand, ours = by_hand(), measure(target, settings, cpu)["throughput_img_s"]
            else:
                ours, hand = measure(target, settings, cpu)["throughput_img_s"], by_hand()
            ratios.append(ours / hand)
    assert 0.8 <= statistics.median(ratios) <= 1.25, ratios


# --- honest captured output ---------------------------------------------------------------------------------


def test_the_readme_quotes_the_captured_outputs_exactly() -> None:
    """Every README output block marked `<!-- output: docs/outputs/NAME.txt -->` is that file, whose first
    line says when, at which commit and under which load it was captured (`make readme-outputs`)."""
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme_outputs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    outputs = sorted((REPO / "docs" / "outputs").glob("*.txt"))
    assert outputs
    for path in outputs:
        header = path.read_text(encoding="utf-8").splitlines()[0]
        assert header.startswith("# `make readme-outputs` ") and "commit " in header, header
        assert "load average (1 min)" in header, header
