"""One run on several processes (DistributedDataParallel, gloo on CPU, 127.0.0.1): same weights as one
process, the record's `distributed` block, a killed driver or rank, SIGTERM, and bad resources (exit 2).

The model is timm's `test_efficientnet_gn` (GroupNorm, no BatchNorm): BatchNorm normalises each rank's rows
with their own statistics, so only a model without it can train to one process's weights.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from archbench.config import ResourcesSpec
from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import RunRecord, read_record
from archbench.sweep.expand import load_sweep_text
from archbench.util.errors import ConfigError
from conftest import REPO, run_cli
from helpers import cli

EPOCHS = 2
BATCH = 64
LOG_EVERY = 5  # a data-parallel run agrees on a stop every log_every steps
SWEEP = """
name: ddp
output_dir: {out}
data: {{kind: digits, augment: {{crop_padding: 2, hflip: true}}}}  # draws are sliced per rank too
model: {{name: "timm:test_efficientnet_gn"}}
train: {{epochs: {epochs}, batch_size: {batch}, lr: 0.05, threads: 1, device: cpu, log_every: {log_every}}}
executor: {{resources: {{processes: {processes}}}}}
"""


def ddp_sweep(tmp: Path, processes: int, name: str = "sweep.yaml") -> Path:
    path = tmp / name
    text = SWEEP.format(
        out=tmp / "results", epochs=EPOCHS, batch=BATCH, processes=processes, log_every=LOG_EVERY
    )
    path.write_text(textwrap.dedent(text))
    return path


def the_run(tmp: Path) -> tuple[Path, RunRecord]:
    (run_dir,) = (tmp / "results" / "ddp" / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None
    return run_dir, rec


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])


def trained(tmp: Path, processes: int) -> Path:
    """The run folder of an uninterrupted run on `processes` processes (one: in this process; more: the
    driver in a subprocess of its own, as a user starts it, with its rank processes)."""
    run = cli if processes == 1 else run_cli
    res = run("run", str(ddp_sweep(tmp, processes)), cwd=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    return the_run(tmp)[0]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory.mktemp("one"), 1)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory.mktemp("two"), 2)


# --- configuration ---------------------------------------------------------------------------------------


def test_processes_default_to_whole_gpus_and_bad_combinations_are_config_errors() -> None:
    assert ResourcesSpec().world_size == 1
    assert ResourcesSpec(gpu=4).world_size == 4
    assert ResourcesSpec(gpu=0.25).world_size == 1
    assert ResourcesSpec(gpu=1).world_size == 1
    assert ResourcesSpec(processes=3).world_size == 3
    assert ResourcesSpec(gpu=4, processes=2).world_size == 2
    base = "name: t\ndata: {kind: digits}\n"
    with pytest.raises(ConfigError, match=r"<string>:\d+: executor.resources.*needs whole GPUs"):
        load_sweep_text(base + "executor: {resources: {gpu: 0.5, processes: 2}}\n")
    with pytest.raises(ConfigError, match="processes: 4 is more than gpu: 2"):
        load_sweep_text(base + "executor: {resources: {gpu: 2, processes: 4}}\n")
    with pytest.raises(ConfigError, match="executor.resources.processes"):
        load_sweep_text(base + "executor: {resources: {processes: 0}}\n")


def test_bad_resources_exit_2_with_one_line_and_create_nothing(tmp_path: Path) -> None:
    sweep = ddp_sweep(tmp_path, 2)
    res = cli("run", str(sweep), "--set", "executor.resources.gpu=0.5", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "needs whole GPUs" in line
    assert not (tmp_path / "results").exists()


# --- training --------------------------------------------------------------------------------------------


def test_two_gloo_processes_train_the_weights_of_one_process(one_process: Path, two_processes: Path) -> None:
    one, two = last_weights(one_process), last_weights(two_processes)
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    rec1, rec2 = read_record(one_process), read_record(two_processes)
    assert rec1 is not None and rec2 is not None and rec2.status == "completed"
    assert rec1.distributed is None
    for h1, h2 in zip(rec1.history, rec2.history, strict=True):  # epoch sums are added over the ranks
        assert h2.step == h1.step and h2.train_loss == pytest.approx(h1.train_loss, rel=1e-5)
        assert h2.train_acc == h1.train_acc and h2.val_acc == h1.val_acc
    assert rec2.metrics is not None and rec1.metrics is not None
    assert rec2.metrics.n_test == rec1.metrics.n_test
    block = rec2.distributed
    assert block is not None
    assert (block.backend, block.world_size, block.devices) == ("gloo", 2, ["cpu", "cpu"])
    assert (block.global_batch, block.per_rank_batch, block.lr) == (BATCH, BATCH // 2, 0.05)
    assert block.lr_scaling.startswith("none") and "rank r trains on rows r, r+W" in block.data_split


@pytest.mark.slow
def test_driver_sigkilled_mid_run_then_rerun_resumes_and_finishes(
    tmp_path: Path, two_processes: Path
) -> None:
    sweep = ddp_sweep(tmp_path, 2)
    step = 30  # in epoch 2 (21 batches an epoch): the run resumes from epoch 1's `last`
    killed = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": f"kill@step:{step}#/rank0"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    run_dir, rec = the_run(tmp_path)
    assert rec.status == "running" and len(rec.history) == 1
    resumed = run_cli("run", str(sweep), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run_dir, rec = the_run(tmp_path)
    assert rec.status == "completed" and rec.resumes == 1 and len(rec.history) == EPOCHS
    # Every rank resumed from the same rank-independent checkpoint: the uninterrupted run's weights.
    assert state_digest(last_weights(run_dir)) == state_digest(last_weights(two_processes))


@pytest.mark.slow
def test_sigterm_stops_every_rank_at_the_same_step_and_resumes_with_another_world_size(
    tmp_path: Path, one_process: Path
) -> None:
    sweep = ddp_sweep(tmp_path, 2)
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "term@step:30"})
    assert res.returncode == 130, res.stdout + res.stderr
    run_dir, rec = the_run(tmp_path)
    assert rec.status == "killed"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 35  # the signal came before step 30; both ranks stopped at the next agreement
    assert state["sums"]["seen"] == state["batch_in_epoch"] * BATCH  # both ranks' rows, saved by rank 0
    # The checkpoint holds nothing rank-specific: one process finishes what two started.
    res = run_cli("run", str(sweep), "--set", "executor.resources.processes=1", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir, rec = the_run(tmp_path)
    assert rec.status == "completed" and rec.distributed is None
    one = last_weights(one_process)
    for key, value in last_weights(run_dir).items():
        torch.testing.assert_close(value, one[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "timeout_s", "reason", "detail"),
    [
        ("kill@step:5#/rank1", 1800, "rank_died", "rank 1 was killed by SIGKILL"),
        ("nan@step:5#/rank1", 1800, "non_finite_loss@5", "non-finite at step 5"),
        ("hang@step:5#/rank1", 5, "rank_timeout", "waited over 5s"),
    ],
)
def test_a_rank_that_fails_fails_the_run_with_its_reason(
    tmp_path: Path, fault: str, timeout_s: int, reason: str, detail: str
) -> None:
    sweep = ddp_sweep(tmp_path, 2)
    over = f"executor.resources.timeout_s={timeout_s}"
    res = run_cli("run", str(sweep), "--set", over, cwd=tmp_path, env={"ARCHBENCH_FAULT": fault})
    assert res.returncode == 1, res.stdout + res.stderr
    _, rec = the_run(tmp_path)
    assert rec.status == "failed" and rec.failure_reason == reason
    assert rec.failure_detail is not None and detail in rec.failure_detail


def _netns_ok() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _netns_ok(), reason="unshare -n (private network namespace) not permitted")
def test_a_ray_task_is_rank_0_and_trains_what_the_local_executor_trains(
    tmp_path: Path, two_processes: Path
) -> None:
    """The Ray task claims the run, asks Ray for 2 CPUs and starts rank 1 on its node (Ray inside a private
    network namespace with only the loopback up, as in test_ray_executor.py)."""
    sweep = ddp_sweep(tmp_path, 2)
    argv = [sys.executable, "-m", "archbench", "run", str(sweep), "--executor", "ray"]
    res = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && exec " + " ".join(argv)],
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(REPO / "src"),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir, rec = the_run(tmp_path)
    assert rec.host.get("ray_node") and rec.distributed is not None and rec.distributed.world_size == 2
    assert state_digest(last_weights(run_dir)) == state_digest(last_weights(two_processes))
