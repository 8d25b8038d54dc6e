"""Tampered results are caught (RELIABILITY.md case 25): an edited metric, a copied record, a flipped or
swapped checkpoint, truncated predictions, a deleted history, a record planted with another spec hash.
`verify` and `ls` name exactly the damaged run, the report leaves it out, a re-run rebuilds what can be
rebuilt from the checkpoint and never resumes from another run's weights. Each test damages a copy of one
finished sweep (`verified_sweep`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import copy_sweep
from helpers import cli

pytestmark = pytest.mark.reliability


def _edit_metric(sgd: Path, adam: Path) -> None:
    rec = json.loads((sgd / "record.json").read_text())
    rec["metrics"]["top1"] = min(1.0, rec["metrics"]["top1"] + 0.01)
    (sgd / "record.json").write_text(json.dumps(rec, indent=2))


def _copy_record(sgd: Path, adam: Path) -> None:
    shutil.copy(adam / "record.json", sgd / "record.json")


def _bitflip_checkpoint(sgd: Path, adam: Path) -> None:
    p = sgd / "checkpoints" / "best.pt"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _swap_checkpoint(sgd: Path, adam: Path) -> None:
    shutil.copy(adam / "checkpoints" / "best.pt", sgd / "checkpoints" / "best.pt")


def _truncate_predictions(sgd: Path, adam: Path) -> None:
    p = sgd / "predictions.npz"
    p.write_bytes(p.read_bytes()[:500])


def _delete_history(sgd: Path, adam: Path) -> None:
    (sgd / "history.csv").unlink()


TAMPER = {
    "metric_edited": _edit_metric,
    "record_copied_from_other_run": _copy_record,
    "checkpoint_bitflip": _bitflip_checkpoint,
    "checkpoint_swapped": _swap_checkpoint,
    "predictions_truncated": _truncate_predictions,
    "history_deleted": _delete_history,
}


def test_verify_passes_on_an_untouched_sweep(verified_sweep: Path) -> None:
    res = cli("verify", str(verified_sweep / "results" / "tiny"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all 2 runs verified" in res.stdout and res.stdout.count("│ verified") == 2
    rec = json.loads(
        next((verified_sweep / "results" / "tiny" / "runs").iterdir()).joinpath("record.json").read_text()
    )
    assert set(rec["artifacts"]) == {
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "predictions.npz",
        "history.csv",
    }


@pytest.mark.parametrize("damage", sorted(TAMPER))
def test_verify_and_ls_name_exactly_the_tampered_run(
    verified_sweep: Path, tmp_path: Path, damage: str
) -> None:
    sweep, sd, sgd, adam = copy_sweep(verified_sweep, tmp_path)
    TAMPER[damage](sgd, adam)
    res = cli("verify", str(sd))
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"1 of 2 runs NOT verified: {sgd.name}" in res.stdout
    assert f"{adam.name}: " not in res.stdout.split("NOT verified:", 1)[1]
    res = cli("ls", str(sd))
    assert res.returncode == 0, res.stderr
    assert f"NOT verified (see `archbench verify`): {sgd.name}" in res.stdout
    csv_rows = {r.split(",")[0]: r for r in (sd / "results.csv").read_text().splitlines()[1:]}
    assert ",NO," in csv_rows[sgd.name] or csv_rows[sgd.name].endswith(",NO") or ",NO" in csv_rows[sgd.name]
    assert ",yes" in csv_rows[adam.name]


def test_report_leaves_out_and_lists_runs_that_do_not_verify(verified_sweep: Path, tmp_path: Path) -> None:
    from archbench.report import build_report

    _, sd, sgd, adam = copy_sweep(verified_sweep, tmp_path)
    good = build_report(sd, tmp_path / "good", ("md",))
    assert any("Every number in this report verified" in w for w in good.warnings)
    _edit_metric(sgd, adam)
    bad = build_report(sd, tmp_path / "bad", ("md",))
    assert any(sgd.name in w and "did NOT verify" in w for w in bad.warnings), bad.warnings
    assert not any("Every number in this report verified" in w for w in bad.warnings)
    md = (tmp_path / "bad" / "report.md").read_text()
    edited = json.loads((sgd / "record.json").read_text())["metrics"]["top1"]
    assert f"{100 * edited:.2f}" not in md  # the edited number is never used


def test_rerun_rebuilds_damaged_derived_files_from_the_checkpoint(
    verified_sweep: Path, tmp_path: Path
) -> None:
    sweep, sd, sgd, adam = copy_sweep(verified_sweep, tmp_path)
    before = json.loads((sgd / "record.json").read_text())
    _truncate_predictions(sgd, adam)
    _delete_history(adam, sgd)
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert cli("verify", str(sd)).returncode == 0
    after = json.loads((sgd / "record.json").read_text())
    assert after["metrics"] == before["metrics"]  # rebuilt from the same weights, not retrained
    assert after["history"] == before["history"]
    assert any(e["event"] == "redone" and "predictions.npz" in e["detail"] for e in after["events"])
    assert (adam / "history.csv").exists()


def test_resume_refuses_a_checkpoint_of_another_run(verified_sweep: Path, tmp_path: Path) -> None:
    sweep, sd, sgd, adam = copy_sweep(verified_sweep, tmp_path)
    # sgd is unfinished (record gone) and holds adam's last.pt and best.pt.
    (sgd / "record.json").unlink()
    for name in ("last.pt", "best.pt", "last.prev.pt", "best.prev.pt"):
        (sgd / "checkpoints" / name).unlink(missing_ok=True)
    shutil.copy(adam / "checkpoints" / "last.pt", sgd / "checkpoints" / "last.pt")
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = json.loads((sgd / "record.json").read_text())
    notes = [e["detail"] for e in rec["events"] if e["event"] == "checkpoint_set_aside"]
    assert notes and "belongs to another run" in notes[0]
    assert rec["resumes"] == 0  # trained from scratch, not from adam's weights
    assert (sgd / "checkpoints" / "last.pt.bad-0").exists()
    assert cli("verify", str(sd)).returncode == 0


def test_planted_record_with_wrong_hash_is_not_trusted(verified_sweep: Path, tmp_path: Path) -> None:
    sweep, _, run_dir, _ = copy_sweep(verified_sweep, tmp_path)
    data = json.loads((run_dir / "record.json").read_text())
    data["spec_hash"] = "0" * 64
    data["metrics"]["top1"] = 0.999
    (run_dir / "record.json").write_text(json.dumps(data))
    assert read_record(run_dir) is None
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0 and "1 trained, 1 skipped" in res.stdout, res.stdout
    rec = read_record(run_dir)
    assert rec is not None and rec.metrics is not None and rec.metrics.top1 != 0.999
    assert (run_dir / "record.json.untrusted-0").exists()
