"""The folder remembers: every plan version is kept (plans/), `ls`/`report` show the current plan and
`--all` every run, `verify` passes whatever the plan, and a different sweep file with the same `name:`
says in one line what it adds and what it no longer plans (store/plans.py)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_sweep
from helpers import cli


def test_a_different_file_with_the_same_name_says_what_changes_and_orphans_nothing(tmp_path: Path) -> None:
    first = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd, adam]")
    sd = tmp_path / "results" / "tiny"
    assert cli("run", str(first), cwd=tmp_path).returncode == 0
    sgd = next(p.name for p in (sd / "runs").iterdir() if "sgd" in p.name)

    other = tmp_path / "other.yaml"
    other.write_text(first.read_text().replace("[sgd, adam]", "[adam, adamw]"))
    res = cli("run", str(other), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "plan of" in ln]
    assert len(lines) == 1, res.stdout
    assert "adds 1 run(s) (tiny_cnn_adamw-" in lines[0] and f"no longer plans 1 ({sgd}; kept" in lines[0]
    assert "1 trained, 1 skipped" in res.stdout
    assert (sd / "runs" / sgd / "record.json").is_file()  # nothing deleted
    assert (sd / "sweep.yaml").read_text() == other.read_text()

    versions = [json.loads(p.read_text()) for p in sorted((sd / "plans").glob("plan-*.json"))]
    assert sorted(v["sweep_file"] for v in versions) == sorted([first.read_text(), other.read_text()])
    current = {r["run_id"] for r in json.loads((sd / "plan.json").read_text())["runs"]}
    assert sgd not in current and len(current) == 2

    ls = cli("ls", str(sd), "--format", "json")
    assert ls.returncode == 0, ls.stderr
    assert {r["run_id"] for r in json.loads(ls.stdout)} == current
    assert "1 more run(s) here are not in the current plan" in ls.stderr
    every = {r["run_id"]: r for r in json.loads(cli("ls", str(sd), "--all", "--format", "json").stdout)}
    assert set(every) == current | {sgd}
    assert every[sgd]["planned"] == "not in the current plan" and every[sgd]["verified"] == "yes"
    csv_text = (sd / "results.csv").read_text()
    assert sgd in csv_text  # results.csv keeps every run folder, whatever `ls` showed

    res = cli("verify", str(sd))
    assert res.returncode == 0, res.stdout
    assert "not in plan" not in res.stdout and "NOT VERIFIED" not in res.stdout

    res = cli("report", str(sd), "--formats", "md,csv", "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 of 2 runs completed" in res.stdout and "did NOT verify" not in res.stdout
    assert "1 more run folder(s) are not in the current plan" in res.stdout
    res = cli("report", str(sd), "--all", "--formats", "md,csv", "--out", str(tmp_path / "all"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 of 3 runs completed" in res.stdout and "did NOT verify" not in res.stdout
    assert "Every number in this report verified" in res.stdout
    assert "1 run(s) are not in the current plan" in res.stdout

    res = cli("run", str(first), cwd=tmp_path)  # back: nothing trains, no plan file is added
    assert res.returncode == 0 and "0 to train" in res.stdout, res.stdout
    assert len(list((sd / "plans").glob("plan-*.json"))) == 2


def test_ls_all_lists_runs_planned_earlier_that_never_ran(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    sd = tmp_path / "results" / "tiny"
    assert cli("run", str(sweep), "--set", "grid.seed=[0,1]", "--dry-run", cwd=tmp_path).returncode == 0
    assert not sd.exists()  # a dry run writes nothing
    from archbench.config import SweepConfig
    from archbench.execution.driver import write_plan
    from archbench.sweep.expand import expand_sweep, load_sweep

    cfg: SweepConfig = load_sweep(sweep, ["grid.seed=[0,1]"])
    write_plan(cfg, expand_sweep(cfg), None)  # planned, then the plan changed before anything ran
    assert cli("run", str(sweep), cwd=tmp_path).returncode == 0
    rows = json.loads(cli("ls", str(sd), "--all", "--format", "json").stdout)
    never = [r for r in rows if r["status"] == "missing"]
    assert len(never) == 1 and never[0]["planned"] == "not in the current plan" and never[0]["seed"] == 1
    assert cli("verify", str(sd)).returncode == 0
