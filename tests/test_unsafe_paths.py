"""Paths read from sweep files and from disk stay inside the output folder (RELIABILITY.md cases 22, 26):
hostile sweep names and run ids in plan.json, symlinks planted in run folders are refused (`unsafe_path`)
and never written through.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import copy_sweep, tiny_sweep
from helpers import cli, files_under

pytestmark = pytest.mark.reliability


def test_hostile_run_ids_in_plan_and_planted_symlinks_stay_inside(
    verified_sweep: Path, tmp_path: Path
) -> None:
    sweep, sd, sgd, adam = copy_sweep(verified_sweep, tmp_path)
    outside = tmp_path / "outside"
    (outside / "runs" / "x").mkdir(parents=True)
    shutil.copy(adam / "record.json", outside / "runs" / "x" / "record.json")
    plan = json.loads((sd / "plan.json").read_text())
    plan["runs"] += [
        {"run_id": "../../outside/runs/x", "spec_hash": "0"},
        {"run_id": str(outside / "runs" / "x"), "spec_hash": "0"},
    ]
    (sd / "plan.json").write_text(json.dumps(plan))
    before = files_under(outside)
    res = cli("ls", str(sd))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("unsafe_path") == 2
    res = cli("verify", str(sd))
    assert res.returncode == 1 and "unsafe_path" in res.stdout
    assert files_under(outside) == before
    # Symlinks planted in run folders (a completed one and an unfinished one) are never written through.
    victim = outside / "victim.txt"
    victim.write_text("keep")
    (sgd / "record.json").unlink()
    shutil.rmtree(sgd / "checkpoints")
    (sgd / "checkpoints").symlink_to(outside)
    (adam / "error.txt").symlink_to(victim)
    adam_record = (adam / "record.json").read_text()
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert (
        f"failed {sgd.name}: unsafe_path" in res.stdout and f"failed {adam.name}: unsafe_path" in res.stdout
    )
    assert victim.read_text() == "keep"
    assert sorted(p.name for p in outside.iterdir()) == ["runs", "victim.txt"]
    assert (adam / "record.json").read_text() == adam_record  # nothing lost either


@pytest.mark.parametrize(
    "name",
    ["../../escape", "/abs/path", "a\x00b", "x" * 300, "<script>alert(1)</script>", '=HYPERLINK("x")'],
)
def test_hostile_sweep_names_stay_inside_output_dir(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"name: {json.dumps(name)}\noutput_dir: {out}\ntrain: {{epochs: 1, threads: 1}}\n"
        "data: {kind: digits, limit_per_class: 10}\n"
    )
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    made = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents and p != sweep]
    assert made == [], made
    (sweep_dir,) = out.iterdir()
    assert re.fullmatch(r"[A-Za-z0-9._-]+", sweep_dir.name) and len(sweep_dir.name) <= 64
    rec = read_record(next((sweep_dir / "runs").iterdir()))
    assert rec is not None and rec.sweep == name  # the raw name is kept, as data only


def test_symlinked_run_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    res = cli("run", str(sweep), "--dry-run", cwd=tmp_path)
    run_id = re.search(r"(tiny_cnn_sgd-[0-9a-f]{10})", res.stdout)
    assert run_id, res.stdout
    outside = tmp_path / "outside"
    outside.mkdir()
    runs = tmp_path / "results" / "tiny" / "runs"
    runs.mkdir(parents=True)
    (runs / run_id.group(1)).symlink_to(outside)
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 1
    assert "unsafe_path" in res.stdout
    assert list(outside.iterdir()) == []
