"""Training recipes (issue 27): weights EMA, early stopping, exact resume with both, and run ids kept."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from archbench.config import RunSpec, spec_hash
from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli
from helpers import cli, set_args

REPO = Path(__file__).resolve().parents[1]


def recipe_sweep(tmp: Path, train: str, augment: str = "{}", epochs: int = 3, extra: str = "") -> Path:
    """A one-run digits sweep (tiny_cnn, one thread) with the given `train` and `data.augment` extras."""
    path = tmp / "sweep.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: r
        output_dir: {tmp / "results"}
        data: {{kind: digits, augment: {augment}}}
        model: {{name: tiny_cnn}}
        train: {{epochs: {epochs}, batch_size: 64, lr: 0.05, threads: 1, {train}}}
        """)
        + extra
    )
    return path


def refused_at_planning(tmp: Path, config: str, key: str, *sets: str) -> list[str]:
    """Run configs/`config` with `--set` overrides into tmp/out; it must exit 2 having created nothing.
    Returns the lines of its error output that name `key`."""
    args = set_args(f"output_dir={tmp / 'out'}", *sets)
    res = cli("run", str(REPO / "configs" / config), *args, cwd=tmp)
    assert res.returncode == 2, res.stdout + res.stderr
    assert not (tmp / "out").exists()  # refused before anything was created
    return [ln for ln in res.stderr.splitlines() if key in ln]


def only_run(tmp: Path) -> Path:
    (run_dir,) = (tmp / "results" / "r" / "runs").iterdir()
    return run_dir


def test_defaults_keep_every_shipped_run_id() -> None:
    """New keys at their defaults stay out of the identity: the quickstart's ids are the ones from before."""
    res = cli("run", str(REPO / "configs" / "quickstart.yaml"), "--dry-run", cwd=REPO)
    assert res.returncode == 0, res.stderr
    for rid in ("tiny_cnn_sgd_0.05-dded763f50", "resnet18_adam_0.002-62e5d5468d"):
        assert rid in res.stdout
    ident = RunSpec().identity()
    assert "ema" not in ident["train"] and "mixup" not in ident["data"]["augment"] and "recipe" not in ident
    on = RunSpec.model_validate({"train": {"ema": {"decay": 0.9}}})
    assert spec_hash(on) != spec_hash(RunSpec())


def test_ema_and_early_stopping_are_recorded(tmp_path: Path) -> None:
    sweep = recipe_sweep(
        tmp_path, "ema: {decay: 0.9}, early_stopping: {patience: 1, min_delta: 0.5}", epochs=6
    )
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(only_run(tmp_path))
    assert rec is not None and rec.status == "completed"
    # min_delta 0.5 cannot be met after the first epoch: patience 1 stops after epoch 2.
    assert len(rec.history) == 2
    (stop,) = [e for e in rec.events if e["event"] == "early_stopped"]
    assert stop["epoch"] == 2 and "patience 1" in stop["reason"]
    for h in rec.history:
        assert 0.0 <= h.model_extra["ema_val_acc"] <= 1.0
    assert rec.best is not None and rec.best["weights"] in ("raw", "ema")
    assert rec.spec.train.ema is not None and rec.spec.train.ema.decay == 0.9
    state = load_checkpoint(only_run(tmp_path) / "checkpoints" / "last.pt")
    assert state["early_stop"]["stopped"]["epoch"] == 2 and "ema" in state


def _digests(tmp: Path) -> tuple[str, str]:
    state = load_checkpoint(only_run(tmp) / "checkpoints" / "last.pt")
    return state_digest(state["model"]), state_digest(state["ema"])


@pytest.mark.reliability
def test_sigkill_mid_epoch_with_ema_resumes_bitwise(tmp_path: Path) -> None:
    train = "ema: {decay: 0.95}, early_stopping: {patience: 2}"
    ref = tmp_path / "ref"
    ref.mkdir()
    assert cli("run", str(recipe_sweep(ref, train)), cwd=ref).returncode == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    sweep = recipe_sweep(killed, train)
    res = run_cli("run", str(sweep), cwd=killed, env={"ARCHBENCH_FAULT": "kill@step:30"})  # in epoch 2
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    again = run_cli("run", str(sweep), cwd=killed)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _digests(killed) == _digests(ref)
    rec = read_record(only_run(killed))
    assert rec is not None and rec.resumes == 1
