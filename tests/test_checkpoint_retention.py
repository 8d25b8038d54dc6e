"""Disk you can predict: a finished run keeps `best.pt` and `last.pt` only (`train.keep_checkpoints`
chooses which), the rollback copies go once the record is written, and verify copes with either kept."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from conftest import tiny_sweep
from helpers import cli


def _checkpoint_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_finished_runs_keep_at_most_two_checkpoint_files(tmp_path: Path) -> None:
    sweep = tmp_path / "keep.yaml"
    sweep.write_text(
        textwrap.dedent(
            f"""
            name: keep
            output_dir: {tmp_path / "results"}
            data: {{kind: digits, limit_per_class: 40}}
            model: {{name: tiny_cnn}}
            train: {{epochs: 3, batch_size: 64, threads: 1}}
            grid:
              train.keep_checkpoints: [both, best, last]
              eval.checkpoint: [best, last]
            exclude:
              - {{train.keep_checkpoints: best, eval.checkpoint: last}}
              - {{train.keep_checkpoints: last, eval.checkpoint: best}}
            """
        )
    )
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    sd = tmp_path / "results" / "keep"
    kept = {}
    for run_dir in (sd / "runs").iterdir():
        rec = json.loads((run_dir / "record.json").read_text())
        keep, evaluated = rec["axes"]["train.keep_checkpoints"], rec["axes"]["eval.checkpoint"]
        files = _checkpoint_files(run_dir)
        kept[(keep, evaluated)] = files
        assert sorted(n for n in rec["artifacts"] if n.startswith("checkpoints/")) == [
            f"checkpoints/{f}" for f in files
        ]
    assert kept == {
        ("both", "best"): ["best.pt", "last.pt"],
        ("both", "last"): ["best.pt", "last.pt"],
        ("best", "best"): ["best.pt"],
        ("last", "last"): ["last.pt"],
    }
    res = cli("verify", str(sd))
    assert res.returncode == 0, res.stdout
    assert "sweep keep: 4 runs: 4 skipped" in cli("run", str(sweep), cwd=tmp_path).stdout


def test_rollback_copies_left_by_an_older_version_go_when_the_run_is_skipped(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    assert cli("run", str(sweep), cwd=tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "results" / "tiny" / "runs").iterdir()
    for name in ("best", "last"):  # what a finished run of an older archbench kept
        shutil.copy(run_dir / "checkpoints" / f"{name}.pt", run_dir / "checkpoints" / f"{name}.prev.pt")
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0 and "1 skipped" in res.stdout, res.stdout
    assert _checkpoint_files(run_dir) == ["best.pt", "last.pt"]


def test_keeping_only_the_other_checkpoint_than_the_evaluated_one_is_refused(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    res = cli("run", str(sweep), "--set", "train.keep_checkpoints=last", cwd=tmp_path)
    assert res.returncode == 2 and not (tmp_path / "results").exists()
    (line,) = res.stderr.strip().splitlines()
    assert "would delete the evaluated checkpoint (eval.checkpoint: best)" in line
