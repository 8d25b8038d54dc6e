"""A run is its spec: the spec hash is a run's identity, its folder name a label (sweep/identity.py).

Real CLI runs of a tiny digits sweep: a finished sweep extended with a seed axis trains only the new specs,
reverted trains nothing and verifies, reordered axes retrain nothing, and a folder made before the rule
(main's layout: no plans/, records without `keep_checkpoints`) keeps its runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from archbench.config import RunSpec, spec_hash
from archbench.store.record import read_record
from conftest import tiny_sweep
from helpers import cli


def _records(sweep_dir: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "record.json").read_text()) for d in (sweep_dir / "runs").iterdir()}


def _each_spec_completed_once(sweep_dir: Path) -> None:
    """Every spec has exactly one folder, and every run was started once (trained once)."""
    recs = _records(sweep_dir)
    hashes = [r["spec_hash"] for r in recs.values()]
    assert len(hashes) == len(set(hashes)), sorted(recs)
    for name, rec in recs.items():
        assert rec["status"] == "completed", name
        assert [e["event"] for e in rec["events"]].count("started") == 1, (name, rec["events"])


def test_seed_axis_added_trains_only_new_specs_reverted_trains_nothing(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1)
    sd = tmp_path / "results" / "tiny"
    assert cli("run", str(sweep), cwd=tmp_path).returncode == 0
    first = sorted(p.name for p in (sd / "runs").iterdir())

    res = cli("run", str(sweep), "--set", "grid.seed=[0,1]", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep: 4 runs, 2 already done, 2 to train" in res.stdout
    assert "2 trained, 2 skipped" in res.stdout
    change = [ln for ln in res.stdout.splitlines() if ln.startswith("plan of ")]
    assert len(change) == 1 and "adds 2 run(s)" in change[0] and "no longer plans" not in change[0]
    plan = json.loads((sd / "plan.json").read_text())
    assert set(first) <= {r["run_id"] for r in plan["runs"]}  # the seed-0 specs keep their folders
    _each_spec_completed_once(sd)
    assert len(_records(sd)) == 4

    res = cli("run", str(sweep), cwd=tmp_path)  # back to the first file
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep: 2 runs, 2 already done, 0 to train" in res.stdout and "2 skipped" in res.stdout
    assert "no longer plans 2" in res.stdout and "NOT verified" not in res.stdout
    _each_spec_completed_once(sd)
    res = cli("verify", str(sd))
    assert res.returncode == 0, res.stdout
    assert res.stdout.count("verified (not in the current plan)") == 2

    reordered = tmp_path / "reordered.yaml"
    text = sweep.read_text().replace("  model.name: [tiny_cnn]\n", "")
    reordered.write_text(text.replace("grid:\n", "grid:\n  seed: [1, 0]\n") + "  model.name: [tiny_cnn]\n")
    res = cli("run", str(reordered), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep: 4 runs, 4 already done, 0 to train" in res.stdout
    _each_spec_completed_once(sd)


def test_a_folder_made_before_the_rule_keeps_its_runs(tmp_path: Path) -> None:
    """Migration: main's layout (plan.json only, records without the new key) extended with an axis."""
    sweep = tiny_sweep(tmp_path, epochs=1)
    sd = tmp_path / "results" / "tiny"
    assert cli("run", str(sweep), cwd=tmp_path).returncode == 0
    shutil.rmtree(sd / "plans")
    (sd / ".plan.lock").unlink()
    for d in (sd / "runs").iterdir():
        raw = json.loads((d / "record.json").read_text())
        del raw["spec"]["train"]["keep_checkpoints"]  # what an older archbench wrote
        (d / "record.json").write_text(json.dumps(raw, indent=2))
        assert read_record(d) is not None  # same spec hash without the key
    old = {d.name: (d / "record.json").read_text() for d in (sd / "runs").iterdir()}

    res = cli("run", str(sweep), "--set", "grid.seed=[0,1]", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 already done, 2 to train" in res.stdout
    for name, text in old.items():
        assert (
            json.loads((sd / "runs" / name / "record.json").read_text())["metrics"]
            == json.loads(text)["metrics"]
        )
    versions = sorted((sd / "plans").glob("plan-*.json"))
    assert len(versions) == 2  # the plan found in plan.json was filed before the new one
    _each_spec_completed_once(sd)
    assert cli("verify", str(sd)).returncode == 0


def test_specs_that_read_differently_but_resolve_alike_are_one_run() -> None:
    from archbench.sweep.expand import expand_sweep, load_sweep_text

    cfg = load_sweep_text("name: x\ngrid:\n  train.deterministic: [auto, true]\n")
    assert len(expand_sweep(cfg)) == 1  # `auto` is hashed as `true`: the same spec


def test_keep_checkpoints_default_leaves_spec_hashes_unchanged() -> None:
    spec = RunSpec()
    assert "keep_checkpoints" not in spec.identity()["train"]
    kept_best = RunSpec.model_validate({"train": {"keep_checkpoints": "best"}})
    assert spec_hash(kept_best) != spec_hash(spec)
    assert spec_hash(RunSpec.model_validate({"train": {"keep_checkpoints": "both"}})) == spec_hash(spec)
