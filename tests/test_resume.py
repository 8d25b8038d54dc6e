"""Resume after a process dies (RELIABILITY.md cases 1, 4, 6, 7): SIGKILL at a random step, while a
checkpoint or the record is written, SIGTERM from a fault or from outside; the next run resumes and ends
bitwise equal to an uninterrupted run, with a control that proves the comparison can fail. The process
that dies is a real subprocess; the resume and the reference run in-process."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import pytest

from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli, start_cli, tiny_sweep
from helpers import cli, only_run, wait_until

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
    res = cli("run", str(tiny_sweep(tmp, epochs=EPOCHS, optimizers="[sgd]")), cwd=tmp)
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
    resumed = cli("run", str(sweep), cwd=tmp, env=env)
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
    again = cli("run", str(sweep), cwd=tmp_path)
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
    proc = start_cli("run", str(sweep), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_root = tmp_path / "results" / "tiny" / "runs"
    wait_until(lambda: list(run_root.glob("*/checkpoints/last.pt")), 600, "the first checkpoint", alive=proc)
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


def test_sigkill_while_writing_checkpoint_keeps_previous_complete_file(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=3, optimizers="[sgd]")
    # Epoch 1 writes best.pt and last.pt (writes 1 and 2); die half-way through write 3 (epoch 2).
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "kill@checkpoint_write:3"})
    assert res.returncode == -9, res.stdout + res.stderr
    run_dir = only_run(tmp_path / "results")
    # The canonical files are the previous complete ones; the half-written data stays in a temp file.
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 1
    load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert list((run_dir / "checkpoints").glob(".*.tmp-*")), "the half-written temp file stays a temp file"
    assert cli("run", str(sweep), cwd=tmp_path).returncode == 0
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.resumes == 1


@pytest.mark.parametrize("fault", ["kill@record_write", "kill@after_checkpoint"])
def test_kill_around_the_record_never_leaves_a_broken_record(tmp_path: Path, fault: str) -> None:
    sweep = tiny_sweep(tmp_path, epochs=2, optimizers="[sgd]")
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": fault})
    assert res.returncode == -9
    run_dir = only_run(tmp_path / "results")
    text = (run_dir / "record.json").read_text()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "running", text[:200]  # complete and valid, but not done
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed"
    # Finished without retraining: both epochs come from the first process, the resume trained nothing.
    assert [h.epoch for h in rec.history] == [1, 2]
    resumed = [e for e in rec.events if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["epoch"] == 2
