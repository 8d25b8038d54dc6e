"""Schema migrations: a record written by the previous schema version is read, migrated and skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archbench.config import spec_hash
from archbench.store.record import SCHEMA_VERSION, RunRecord, migrate, read_record
from helpers import cli

FIXTURE = Path(__file__).parent / "fixtures" / "record_v1" / "record.json"
SWEEP = """
name: v1-fixture
output_dir: {out}
data: {{kind: digits, limit_per_class: 20}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, batch_size: 64, threads: 1}}
seed: 0
"""


def test_migrate_v1_is_pure_and_reaches_current_version() -> None:
    raw = json.loads(FIXTURE.read_text())
    assert raw["schema_version"] == 1
    before = json.dumps(raw, sort_keys=True)
    out = migrate(raw)
    assert json.dumps(raw, sort_keys=True) == before  # the input is not modified
    assert out["schema_version"] == SCHEMA_VERSION
    assert out["migrations"][0] == {"from": 1, "to": 2}
    rec = RunRecord.model_validate(out)
    assert rec.spec_hash == spec_hash(rec.spec)
    explain = rec.stage("explain")
    assert explain is not None and explain.methods_run == ["saliency"]


def test_migrate_refuses_a_newer_version() -> None:
    with pytest.raises(ValueError, match="schema_version"):
        migrate({"schema_version": SCHEMA_VERSION + 1})


def test_v1_record_is_read_migrated_and_skipped_not_retrained(tmp_path: Path) -> None:
    raw = json.loads(FIXTURE.read_text())
    run_dir = tmp_path / "results" / "v1-fixture" / "runs" / raw["run_id"]
    run_dir.mkdir(parents=True)
    shutil.copy(FIXTURE, run_dir / "record.json")
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.migrated_from == 1

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.format(out=tmp_path / "results"))
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 skipped" in res.stdout and "trained" not in res.stdout.split("runs:")[-1]
    assert not (run_dir / "checkpoints").exists()  # nothing was trained
    on_disk = json.loads((run_dir / "record.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION  # stored back in today's format
    assert on_disk["migrations"] == [{"from": 1, "to": 2}]
    assert on_disk["metrics"] == raw["metrics"] and on_disk["stages"] == raw["stages"]
    assert not list(run_dir.glob("record.json.untrusted-*"))
