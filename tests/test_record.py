"""The record's write paths: `update_stage` (lock, re-read, merge, atomic write), typed blocks, claims."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from archbench.store.layout import RunLayout, stage_dir, sweep_of
from archbench.store.lock import RunBusy, RunClaim
from archbench.store.record import StageIndex, read_record, update_stage

FIXTURE = Path(__file__).parent / "fixtures" / "record_v1" / "record.json"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sweep" / "runs" / "r1"
    d.mkdir(parents=True)
    shutil.copy(FIXTURE, d / "record.json")
    return d


def test_update_stage_merges_blocks_of_different_writers(run_dir: Path) -> None:
    update_stage(run_dir, "profile", {"resolution": 8, "params_total": 123})
    rec = update_stage(run_dir, "map", {"error": "no scene"})
    on_disk = read_record(run_dir)
    assert on_disk is not None and on_disk.stages == rec.stages
    assert set(on_disk.stages) == {"explain", "profile", "map"}  # the v1 explain block is kept
    profile = on_disk.stage("profile")
    assert profile is not None and profile.params_total == 123 and on_disk.stage("nothing") is None


def test_update_stage_refuses_a_malformed_block_and_changes_nothing(run_dir: Path) -> None:
    before = (run_dir / "record.json").read_bytes()
    with pytest.raises(ValidationError):
        update_stage(run_dir, "explain", {"methods_run": "gradcam"})  # a list, not a string
    assert (run_dir / "record.json").read_bytes() == before


def test_run_claim_context_acquires_and_a_second_claim_is_busy(run_dir: Path) -> None:
    with RunClaim(run_dir) as claim:
        assert claim.fd is not None
        with pytest.raises(RunBusy, match="claimed by"):
            with RunClaim(run_dir):
                pass
    with RunClaim(run_dir):  # released on exit: free again
        pass


def test_layout_knows_a_runs_files_and_its_sweep(run_dir: Path, tmp_path: Path) -> None:
    lay = RunLayout(run_dir)
    assert lay.record == run_dir / "record.json" and lay.checkpoint("best").name == "best.pt"
    assert sweep_of(run_dir) == tmp_path / "sweep" and sweep_of(tmp_path) is None
    assert lay.stage_dir("map") == stage_dir(tmp_path / "sweep", "map") == tmp_path / "sweep/stages/map"


def test_stage_index_round_trip(tmp_path: Path) -> None:
    index = StageIndex.model_validate(
        {"title": "T", "figures": [{"path": "a.png", "caption": "c"}], "tables": [{"csv": "t.csv"}]}
    )
    path = index.write(tmp_path)
    assert StageIndex.model_validate_json(path.read_text()) == index
