"""`archbench profile RUN_DIR|SWEEP_DIR` profiles exactly what was trained (stem, in_chans, classes,
resolution, pool from each record: params equal the record's); for names it says what it assumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import REPO
from helpers import cli

QUICK = ["--batch-sizes", "1,2", "--iters", "1", "--warmup", "0", "--no-memory", "--no-train-step"]


@pytest.mark.slow
def test_profile_a_sweep_profiles_the_trained_models(tmp_path: Path) -> None:
    res = cli(
        "run",
        str(REPO / "configs" / "quickstart.yaml"),
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "train.epochs=1",
        "--set",
        "data.limit_per_class=8",
        "--set",
        "model.pool=max",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    sweep = tmp_path / "quickstart"
    records = {d.name: read_record(d) for d in (sweep / "runs").iterdir()}
    res = cli("profile", str(sweep), "--json", *QUICK, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["assumed"] == []
    rows = report["results"]
    assert sorted(r["run_id"] for r in rows) == sorted(records)
    for row in rows:
        rec = records[row["run_id"]]
        assert rec is not None and rec.params is not None
        assert row["params_total"] == rec.params["total"] and row["params_match_record"] is True
        assert row["resolution"] == 8 and row["in_chans"] == 1 and row["num_classes"] == 10
        assert row["stem"] == "cifar" and row["pool"] == "max"
    # One run folder works too; a name with the same options gives the same count, a bare name does not.
    rid, rec = next((k, v) for k, v in records.items() if k.startswith("resnet18"))
    assert rec is not None and rec.params is not None
    res = cli("profile", str(sweep / "runs" / rid), "--json", *QUICK, cwd=tmp_path)
    (row,) = json.loads(res.stdout)["results"]
    assert row["params_total"] == rec.params["total"]
    opts = [
        "--stem",
        "cifar",
        "--pool",
        "max",
        "--in-chans",
        "1",
        "--num-classes",
        "10",
        "--resolutions",
        "8",
    ]
    res = cli("profile", "resnet18", *opts, "--json", *QUICK, cwd=tmp_path)
    explicit = json.loads(res.stdout)
    assert explicit["assumed"] == [] and explicit["results"][0]["params_total"] == rec.params["total"]
    assert explicit["results"][0]["gmacs"] == row["gmacs"]
    res = cli("profile", "resnet18", "--resolutions", "8", *QUICK, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (
        "assumed (not given) for resnet18: stem=imagenet, pool=avg, in_chans=3, num_classes=1000"
        in res.stdout
    )


def test_profile_of_a_folder_without_runs_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty_sweep" / "runs").mkdir(parents=True)
    res = cli("profile", str(tmp_path / "empty_sweep"), cwd=tmp_path)
    assert res.returncode == 2 and "no completed run" in res.stderr


def test_profile_of_a_missing_folder_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped folder is not looked up as a model name (issue 22): one error line, exit 2."""
    from typer.testing import CliRunner

    from archbench.cli.app import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["profile", "results/my_imgs"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: results/my_imgs: no such folder (give a run folder, a sweep folder or a model name)"
    )
    (tmp_path / "notes.txt").write_text("not a run")
    res = CliRunner().invoke(app, ["profile", "notes.txt"])
    assert res.exit_code == 2 and "notes.txt: not a run or sweep folder" in res.output
    res = CliRunner().invoke(app, ["profile", "resnet_9000"])  # a name stays a name
    assert res.exit_code == 2 and "unknown model.name 'resnet_9000'" in res.output
