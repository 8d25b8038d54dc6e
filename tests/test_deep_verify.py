"""Deep verify (RELIABILITY 41): `archbench verify --deep` re-evaluates each completed run's checkpoint on
its stored test samples, so a run whose predictions, metrics and artifact hashes were all replaced
consistently by another run's — which plain `verify` cannot see — is named, exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import tiny_sweep
from helpers import cli

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-run sweep (digits, tiny_cnn, sgd and adam, 1 epoch), never modified."""
    base = tmp_path_factory.mktemp("deep")
    res = cli("run", str(tiny_sweep(base, epochs=1)), cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    return base / "results" / "tiny"


def _runs(sweep_dir: Path) -> tuple[Path, Path]:
    runs = sorted((sweep_dir / "runs").iterdir())
    return next(r for r in runs if "_sgd-" in r.name), next(r for r in runs if "_adam-" in r.name)


def test_every_untouched_run_reproduces_bitwise(finished: Path) -> None:
    """The control: the same check passes on honest runs, so a failure below is the swap, not noise."""
    sgd, _ = _runs(finished)
    rec = read_record(sgd)
    assert rec is not None and rec.reproduce == {"compare": "bitwise", "threads": 1}
    res = cli("verify", str(finished), "--deep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "every checkpoint re-evaluates to its predictions" in res.stdout


def test_a_consistent_swap_passes_plain_verify_and_is_named_by_deep_verify(
    finished: Path, tmp_path: Path
) -> None:
    shutil.copytree(finished, tmp_path / "tiny")
    sgd, adam = _runs(tmp_path / "tiny")
    shutil.copy(adam / "predictions.npz", sgd / "predictions.npz")
    rec, other = (json.loads((d / "record.json").read_text()) for d in (sgd, adam))
    rec["metrics"] = other["metrics"]
    rec["artifacts"]["predictions.npz"] = other["artifacts"]["predictions.npz"]
    (sgd / "record.json").write_text(json.dumps(rec, indent=2))
    plain = cli("verify", str(tmp_path / "tiny"))
    assert plain.returncode == 0, plain.stdout + plain.stderr  # every hash and metric is consistent
    deep = cli("verify", str(tmp_path / "tiny"), "--deep")
    assert deep.returncode == 1, deep.stdout + deep.stderr
    assert f"1 of 2 runs NOT verified: {sgd.name}" in deep.stdout
    assert f"{sgd.name}: NOT VERIFIED: deep: logits differ from predictions.npz (bitwise rule" in deep.stdout
    assert f"{adam.name}: NOT" not in deep.stdout
