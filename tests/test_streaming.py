"""Streaming beyond the memory budget: same batches, same weights, exact resume after SIGKILL."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from archbench.config import AugmentSpec, DataSpec, RunSpec, TrainSpec
from archbench.data import create_dataset
from archbench.engine.augment import DeviceSplit
from archbench.engine.sources import HostSplit, choose_path, open_sources
from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli, tiny_sweep
from helpers import cli


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return create_dataset(DataSpec())


def test_path_choice() -> None:
    cpu = torch.device("cpu")
    assert choose_path(100, cpu, 1000, mappable=True) == "device-resident"
    assert choose_path(1001, cpu, 1000, mappable=True) == "streamed"
    assert choose_path(10**12, cpu, 1000, mappable=False) == "device-resident"  # nothing on disk to read


@pytest.mark.parametrize("streamed", [False, True], ids=["host-mapped", "streamed"])
def test_host_sources_give_the_device_batches(digits, streamed: bool) -> None:  # type: ignore[no-untyped-def]
    cpu = torch.device("cpu")
    ref, src = DeviceSplit(digits.train, cpu), HostSplit(digits.train, cpu, streamed=streamed)
    order = torch.randperm(len(ref), generator=torch.Generator().manual_seed(3))
    src.plan(order, 50, start_batch=2)  # as after a resume: from batch 2 on
    for b in range(2, -(-len(ref) // 50)):
        idx = order[b * 50 : (b + 1) * 50]
        (x0, y0), (x1, y1) = ref.take(idx), src.take(idx)
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    idx = torch.tensor([5, 3, 4, 900, 0, 5])  # off-plan, repeated and consecutive rows
    assert torch.equal(ref.take(idx)[0], src.take(idx)[0])
    assert torch.equal(ref.rows(1200, 1300)[0], src.rows(1200, 1300)[0])  # clipped at the end
    src.close()


def test_streamed_and_in_memory_runs_train_identical_weights(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from archbench.engine.train import train_run

    digests, paths = [], []
    for budget in (None, "20KB"):
        spec = RunSpec(
            data=DataSpec(memory_budget=budget, augment=AugmentSpec(crop_padding=2, hflip=True)),
            train=TrainSpec(epochs=1, batch_size=64, threads=1),
        )
        result = train_run(spec, digits, tmp_path / str(budget))
        digests.append(state_digest(result.model.state_dict()))
        paths.append(result.data_path["path"])
    assert paths == ["device-resident", "streamed"]
    assert digests[0] == digests[1]


def test_streamed_eval_source_is_bounded(digits) -> None:  # type: ignore[no-untyped-def]
    (src,), info = open_sources([digits.test], torch.device("cpu"), "1KB")
    assert info["path"] == "streamed" and info["data_bytes"] > info["memory_budget_bytes"]
    x, y = src.rows(0, len(src))
    assert np.array_equal(x.numpy(), np.asarray(digits.test.x)) and np.array_equal(y.numpy(), digits.test.y)


EPOCHS = 2
BATCHES_PER_EPOCH = 21


def _weights(out: Path) -> tuple[str, Path]:
    (run_dir,) = (out / "tiny" / "runs").iterdir()
    return state_digest(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]), run_dir


@pytest.mark.slow
@pytest.mark.reliability
def test_sigkill_during_streamed_epoch_resumes_bitwise(tmp_path: Path) -> None:
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    res = cli("run", str(tiny_sweep(ref_dir, epochs=EPOCHS, optimizers="[sgd]")), cwd=ref_dir)
    assert res.returncode == 0, res.stderr
    reference, _ = _weights(ref_dir / "results")

    sweep = tiny_sweep(tmp_path, epochs=EPOCHS, optimizers="[sgd]")
    stream = ["--set", "data.memory_budget=20KB"]
    step = random.randint(BATCHES_PER_EPOCH + 1, 2 * BATCHES_PER_EPOCH - 2)  # inside the second epoch
    killed = run_cli("run", str(sweep), *stream, cwd=tmp_path, env={"ARCHBENCH_FAULT": f"kill@step:{step}"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    resumed = cli("run", str(sweep), *stream, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    weights, run_dir = _weights(tmp_path / "results")
    assert weights == reference, f"streamed run resumed after SIGKILL at step {step} differs"
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.resumes == 1
    assert rec.data is not None and rec.data["loading"]["path"] == "streamed"
    assert rec.data["loading"]["cache_hit"] is True and rec.data["loading"]["decode_seconds"] == 0.0
