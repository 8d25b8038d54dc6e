"""Resume and claims with real processes: SIGKILL mid-training, bitwise-equal resume, concurrent sweeps."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli, tiny_sweep

pytestmark = pytest.mark.reliability

EPOCHS = 3
KILL_SEED = 20251202  # the "random" kill step is drawn from this seed, so a failure can be replayed


def _final_weights(out: Path) -> str:
    (run_dir,) = (out / "tiny" / "runs").iterdir()
    return state_digest(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """The uninterrupted run: (final weights digest, batches per epoch read from its record)."""
    tmp = tmp_path_factory.mktemp("ref")
    res = run_cli("run", str(tiny_sweep(tmp, epochs=EPOCHS, optimizers="[sgd]")), cwd=tmp)
    assert res.returncode == 0, res.stderr
    (run_dir,) = (tmp / "results" / "tiny" / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None and len(rec.history) == EPOCHS
    per_epoch = rec.history[0].step
    assert [h.step for h in rec.history] == [per_epoch * e for e in range(1, EPOCHS + 1)]
    return _final_weights(tmp / "results"), per_epoch


@pytest.fixture(scope="module")
def reference(reference_run: tuple[str, int]) -> str:
    return reference_run[0]


@pytest.fixture(scope="module")
def batches_per_epoch(reference_run: tuple[str, int]) -> int:
    return reference_run[1]


def _kill_and_resume(tmp: Path, step: int, env: dict[str, str] | None = None) -> tuple[str, Path]:
    sweep = tiny_sweep(tmp, epochs=EPOCHS, optimizers="[sgd]")
    killed = run_cli("run", str(sweep), cwd=tmp, env={"ARCHBENCH_FAULT": f"kill@step:{step}"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    (run_dir,) = (tmp / "results" / "tiny" / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "running"  # the killed process could not say otherwise
    resumed = run_cli("run", str(sweep), cwd=tmp, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return _final_weights(tmp / "results"), run_dir


def test_sigkill_at_random_step_then_resume_is_bitwise_equal(
    tmp_path: Path, reference: str, batches_per_epoch: int
) -> None:
    bpe = batches_per_epoch
    step = random.Random(KILL_SEED).randint(bpe, 2 * bpe - 1)  # somewhere in epoch 2
    weights, run_dir = _kill_and_resume(tmp_path, step)
    assert weights == reference, f"resumed weights differ after SIGKILL at step {step}"
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.resumes == 1
    assert [h.epoch for h in rec.history] == list(range(1, EPOCHS + 1))  # no duplicated or missing epochs
    assert [h.step for h in rec.history] == [bpe * e for e in range(1, EPOCHS + 1)]
    kinds = [e["event"] for e in rec.events]
    assert kinds.count("owner_died") == 1 and kinds.count("resumed") == 1


@pytest.mark.parametrize("part", ["rng", "scheduler"])
def test_resume_without_restoring_part_differs(
    tmp_path: Path, reference: str, batches_per_epoch: int, part: str
) -> None:
    """Proves the bitwise test guards the scheduler and RNG restore: without them, weights differ."""
    weights, _ = _kill_and_resume(tmp_path, batches_per_epoch + 5, env={"ARCHBENCH_DEBUG_SKIP_RESTORE": part})
    assert weights != reference


def test_sigterm_checkpoints_and_exits_killed_then_resumes(
    tmp_path: Path, reference: str, batches_per_epoch: int
) -> None:
    sweep = tiny_sweep(tmp_path, epochs=EPOCHS, optimizers="[sgd]")
    res = run_cli(
        "run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": f"term@step:{batches_per_epoch + 7}"}
    )
    assert res.returncode == 130, res.stdout + res.stderr
    (run_dir,) = (tmp_path / "results" / "tiny" / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "killed"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    # The signal arrives just before step 28; that step finishes and the run checkpoints at the next boundary.
    assert state["step"] == batches_per_epoch + 8 and state["batch_in_epoch"] == 8
    again = run_cli("run", str(sweep), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _final_weights(tmp_path / "results") == reference
    # The log says the run resumed, where (the epoch it goes on in, the steps done), and only once.
    resumed = [ln[20:] for ln in again.stdout.splitlines() if ln[20:].startswith("resumed ")]
    assert resumed == [f"resumed {run_dir.name} from epoch 2, step {batches_per_epoch + 8}"]
    assert not [ln for ln in res.stdout.splitlines() if ln[20:].startswith("resumed ")]


def test_sigterm_from_outside_stops_at_the_next_step(tmp_path: Path) -> None:
    """SIGTERM mid-run: a checkpoint at the next step boundary, status killed, exit 130 (no wall clock:
    the load on a shared CPU swings timings 10x; `wait(timeout=...)` only guards against a hang)."""
    sweep = tiny_sweep(tmp_path, epochs=50, optimizers="[sgd]")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHBENCH_FAULT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "archbench", "run", str(sweep)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_root = tmp_path / "results" / "tiny" / "runs"
    deadline = time.time() + 600  # a guard against a hang only: a loaded CPU is slow to start
    while time.time() < deadline and not list(run_root.glob("*/checkpoints/last.pt")):
        time.sleep(0.2)
    assert list(run_root.glob("*/checkpoints/last.pt")), "training never reached its first checkpoint"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 130
    (run_dir,) = run_root.iterdir()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "killed"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    (stop,) = [e for e in state["events"] if e["event"] == "stopped_by_signal"]
    # It stopped inside the epoch it was in (at a step boundary), not after finishing the 50 epochs.
    assert stop["epoch"] == state["epoch"] == len(state["history"]) < 50 and stop["step"] == state["step"]
    assert rec.failure_detail == f"stopped at epoch {state['epoch']}, step {state['step']}"


def test_two_concurrent_sweeps_train_each_run_exactly_once(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd, adam, adamw]")
    sweep.write_text(sweep.read_text() + "  seed: [0, 1]\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHBENCH_FAULT", None)
    cmd = [sys.executable, "-m", "archbench", "run", str(sweep)]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        # 3: this sweep skipped runs the other one was training (busy, named in its summary)
        assert p.returncode in (0, 3), out + err
        assert (p.returncode == 3) == ("  busy " in out), out + err
    run_dirs = list((tmp_path / "results" / "tiny" / "runs").iterdir())
    assert len(run_dirs) == 6
    for run_dir in run_dirs:
        rec = read_record(run_dir)
        assert rec is not None and rec.status == "completed"
        assert [e["event"] for e in rec.events].count("started") == 1, rec.events
    # Piped output: each line is "YYYY-MM-DD HH:MM:SS <text>".
    trained_lines = [ln for out, _ in outs for ln in out.splitlines() if ln[20:].startswith("trained")]
    assert len(trained_lines) == 6


# --- checkpoints: cadence, format, in-process resume (fast: a tiny synthetic dataset, no subprocess) ---


def _bundle(n: int = 96) -> Any:
    from archbench.data.registry import DatasetBundle, Split

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 4, n).astype(np.int64)
    small = Split(x[:32], y[:32])
    return DatasetBundle("t", list("abcd"), Split(x, y), small, small, [0.5] * 3, [0.25] * 3, "")


def _spec(**train: Any) -> Any:
    from archbench.config import RunSpec

    base = {"epochs": 3, "batch_size": 16, "threads": 1, "device": "cpu", "log_every": 4}
    return RunSpec.model_validate(
        {"data": {"augment": {"crop_padding": 2, "hflip": True}}, "train": base | train}
    )


def _weights(model: Any) -> str:
    return state_digest(model.state_dict())


def test_checkpoint_every_n_epochs_and_always_at_the_end(tmp_path: Path) -> None:
    from archbench.engine.train import train_run

    seen: list[tuple[int | None, int | None]] = []
    last, best = tmp_path / "checkpoints" / "last.pt", tmp_path / "checkpoints" / "best.pt"

    def on_epoch(stats: dict[str, Any]) -> None:
        saved = load_checkpoint(last) if last.exists() else None
        seen.append((saved["epoch"] if saved else None, stats["epoch"]))
        if saved is not None:  # `best` is written with `last`, and says the same thing
            assert load_checkpoint(best)["best"] == saved["best"]

    res = train_run(_spec(epochs=5, checkpoint={"every_epochs": 2}), _bundle(), tmp_path, on_epoch=on_epoch)
    assert seen == [(None, 1), (2, 2), (2, 3), (4, 4), (5, 5)]
    assert load_checkpoint(best)["best"] == res.best
    ref = train_run(_spec(epochs=5), _bundle(), tmp_path / "every")
    assert _weights(res.model) == _weights(ref.model)  # the cadence changes nothing that is computed


def test_time_cadence_and_stop_mid_epoch_resume_bitwise(tmp_path: Path) -> None:
    """A checkpoint at every step boundary (every_minutes tiny), a stop mid-epoch, a resume in this
    process: the weights equal an uninterrupted run's."""
    from archbench.engine.train import train_run
    from archbench.util.errors import RunKilled

    ref = train_run(_spec(), _bundle(), tmp_path / "ref")
    spec = _spec(checkpoint={"every_minutes": 1e-9})
    run_dir = tmp_path / "run"
    steps_saved: list[int] = []

    def should_stop() -> bool:
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            steps_saved.append(load_checkpoint(last)["step"])
        return len(steps_saved) == 8  # in epoch 2 (6 steps per epoch)

    with pytest.raises(RunKilled):
        train_run(spec, _bundle(), run_dir, should_stop=should_stop)
    # Each boundary wrote `last` (the next one sees it); step 6 twice: the epoch's end, then the boundary.
    assert steps_saved == [0, 1, 2, 3, 4, 6, 6, 7]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 2, 8)
    heard: list[tuple[int, int]] = []
    res = train_run(spec, _bundle(), run_dir, on_resume=lambda epoch, step: heard.append((epoch, step)))
    assert heard == [(2, 8)]  # told once: it goes on in epoch 2 (1-based) after 8 steps
    assert res.resumes == 1 and _weights(res.model) == _weights(ref.model)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref.history]


def test_a_run_ended_by_its_epoch_callback_is_checkpointed(tmp_path: Path) -> None:
    from archbench.engine.train import train_run
    from archbench.util.errors import RunPruned

    def prune(stats: dict[str, Any]) -> None:
        if stats["epoch"] == 1:
            raise RunPruned("pruned at epoch 1")

    with pytest.raises(RunPruned):
        train_run(_spec(checkpoint={"every_epochs": 10}), _bundle(), tmp_path, on_epoch=prune)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["best"]["epoch"] == 1


def _old_format(path: Path, state: dict[str, Any]) -> None:
    """Write `state` as checkpoints were written before the zip-comment digest (`_digest` inside)."""
    old = dict(state)
    old["_digest"] = state_digest(old)
    torch.save(old, path)


def test_old_format_checkpoints_load_verify_and_resume(tmp_path: Path) -> None:
    from archbench.engine.train import train_run
    from archbench.util.errors import CheckpointError, RunKilled

    run_dir = tmp_path / "run"
    with pytest.raises(RunKilled):
        train_run(_spec(), _bundle(), run_dir, should_stop=iter([False] * 8 + [True]).__next__)
    last = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    assert state["batch_in_epoch"] == 2
    # As the older trainer saved it: Python numbers for the sums, no augmentation draws.
    state["sums"] = {"loss": float(state["sums"]["loss"]), "correct": int(state["sums"]["correct"]),
                     "seen": state["sums"]["seen"], "seconds": state["sums"]["seconds"]}  # fmt: skip
    del state["draws"]
    _old_format(last, state)
    again = load_checkpoint(last)
    assert "_digest" not in again and state_digest(again) == state_digest(state)
    res = train_run(_spec(), _bundle(), run_dir)
    assert res.resumes == 1 and [h["epoch"] for h in res.history] == [1, 2, 3]
    # A flipped bit in an old-format file is still caught by its digest.
    _old_format(tmp_path / "old.pt", {"model": {"w": torch.arange(4.0)}, "epoch": 1})
    raw = bytearray((tmp_path / "old.pt").read_bytes())
    i = bytes(raw).find(torch.arange(4.0).numpy().tobytes())
    raw[i + 5] ^= 0x10
    (tmp_path / "old.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(tmp_path / "old.pt")


def test_digest_is_of_the_written_bytes_and_a_damaged_digest_is_caught(tmp_path: Path) -> None:
    import hashlib
    import zipfile

    from archbench.store.checkpoint import save_checkpoint
    from archbench.util.errors import CheckpointError

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(4.0)}, "epoch": 1})
    raw = path.read_bytes()
    comment = zipfile.ZipFile(path).comment
    assert comment.startswith(b"archbench-sha256:")
    # The digest is the sha256 of the file as torch.save wrote it (its zip comment empty).
    unsigned = raw[: -len(comment) - 2] + b"\x00\x00"
    assert comment.split(b":")[1].decode() == hashlib.sha256(unsigned).hexdigest()
    assert torch.load(path, weights_only=True)["epoch"] == 1  # still a plain torch.save file
    damaged = bytearray(raw)
    damaged[-1] = ord("0") if damaged[-1] != ord("0") else ord("1")  # the digest itself
    path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path)
