"""Executor and tracking configuration: fast checks with no Ray cluster, no MLflow server, no training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archbench.config import ExecutorSpec, ResourcesSpec
from archbench.sweep.expand import expand_sweep, load_sweep_text
from archbench.tracking import outbox
from archbench.util.errors import ConfigError
from conftest import tiny_sweep
from helpers import cli

BASE = """
name: t
data: {kind: digits}
train: {threads: 2}
grid:
  seed: [0, 1]
"""


def test_executor_and_tracking_sections_parse_and_take_set_overrides() -> None:
    cfg = load_sweep_text(
        BASE + "executor: {kind: ray, resources: {gpu: 0.25}}\ntracking: {mlflow: {uri: 'sqlite:///x.db'}}\n",
        ["executor.max_retries=5", "executor.address=auto"],
    )
    assert cfg.executor.kind == "ray" and cfg.executor.max_retries == 5 and cfg.executor.address == "auto"
    assert cfg.executor.resources.gpu == 0.25
    assert cfg.tracking is not None and cfg.tracking.mlflow is not None
    assert cfg.tracking.mlflow.timeout_s == 10.0
    plain = load_sweep_text(BASE)
    assert [r.run_id for r in expand_sweep(cfg)] == [r.run_id for r in expand_sweep(plain)]  # not identity


def test_bad_executor_section_is_a_config_error_with_the_line() -> None:
    with pytest.raises(ConfigError, match=r"<string>:\d+: executor.kind"):
        load_sweep_text(BASE + "executor: {kind: slurm}\n")
    with pytest.raises(ConfigError, match="executor.resources.gpu"):
        load_sweep_text(BASE + "executor: {resources: {gpu: -1}}\n")


def test_task_resources_default_to_threads_and_a_gpu_only_when_the_cluster_has_one() -> None:
    pytest.importorskip("ray")
    from archbench.execution.ray import task_resources

    run = expand_sweep(load_sweep_text(BASE))[0]
    assert task_resources(ExecutorSpec(), run, cluster_gpus=0) == {"num_cpus": 2.0, "num_gpus": 0.0}
    assert task_resources(ExecutorSpec(), run, cluster_gpus=8) == {"num_cpus": 2.0, "num_gpus": 1.0}
    spec = ExecutorSpec(resources=ResourcesSpec(cpu=4, gpu=0.25))
    assert task_resources(spec, run, cluster_gpus=8) == {"num_cpus": 4.0, "num_gpus": 0.25}


def test_unknown_executor_flag_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path)
    r = cli("run", str(sweep), "--executor", "slurm")
    assert r.returncode == 2 and "expected local or ray" in r.stderr
    assert not (tmp_path / "results").exists()


def test_outbox_survives_a_torn_line_and_clears(tmp_path: Path) -> None:
    outbox.note(tmp_path, "run-a", "ConnectionError: refused", 0.5)
    with (tmp_path / outbox.OUTBOX_NAME).open("a") as f:
        f.write('{"run_id": "run-b", "rea')  # a writer killed mid-line
    outbox.note(tmp_path, "run-c", "timeout", 3.0)
    assert [e["run_id"] for e in outbox.entries(tmp_path)] == ["run-a", "run-c"]
    outbox.clear(tmp_path)
    assert outbox.entries(tmp_path) == []


def test_scoped_env_puts_every_variable_back_even_when_the_block_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ray task sets the driver's forwarded variables for its run only: a reused worker keeps none."""
    from archbench.util.env import scoped_env

    monkeypatch.setenv("ARCHBENCH_T_KEPT", "before")
    monkeypatch.delenv("ARCHBENCH_T_NEW", raising=False)
    monkeypatch.delenv("ARCHBENCH_T_SET_INSIDE", raising=False)
    with pytest.raises(RuntimeError):
        with scoped_env(
            {"ARCHBENCH_T_KEPT": "during", "ARCHBENCH_T_NEW": "x"}, restore=["ARCHBENCH_T_SET_INSIDE"]
        ):
            assert os.environ["ARCHBENCH_T_KEPT"] == "during" and os.environ["ARCHBENCH_T_NEW"] == "x"
            os.environ["ARCHBENCH_T_SET_INSIDE"] = "y"
            raise RuntimeError("the run failed")
    assert os.environ["ARCHBENCH_T_KEPT"] == "before"
    assert "ARCHBENCH_T_NEW" not in os.environ and "ARCHBENCH_T_SET_INSIDE" not in os.environ
