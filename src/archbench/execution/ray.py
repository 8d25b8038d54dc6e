"""The Ray executor: runs each planned run as one Ray task on a cluster; owns Ray start-up and retries.

Each task calls `runner.execute_run`, the same function the local executor calls, so claiming (a flock
in the run folder), skipping completed runs, resuming from `last.pt` and the record rules are unchanged.
The results folder must therefore be one path that every node sees (a shared filesystem).

Failures: a task whose worker process or node dies is retried by Ray (`max_retries`); the retry claims
the run again (the kernel dropped the dead owner's lock) and resumes from the last checkpoint. When every
attempt died, the driver marks the run `failed` (`worker_died`) and the other runs go on. Errors inside a
run (NaN loss, OOM, a bad file) are not retried: the run's own record says `failed`, as with the local
executor. Ray is imported only here, only when `executor.kind: ray` is asked for.

Data-parallel runs (`resources: {gpu: N}` or `processes: N`): the task is rank 0 and starts the other
ranks on its node (engine/ddp.py); a rank that dies fails the run's attempt like any error in the run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from archbench.config import ExecutorSpec, SweepConfig
from archbench.execution.datasets import LoadedDatasets
from archbench.execution.runner import execute_run, mark_run_failed
from archbench.execution.types import RunOutcome, SweepContext
from archbench.store.layout import SweepLayout
from archbench.store.record import read_record
from archbench.sweep.expand import PlannedRun
from archbench.util.env import scoped_env

FORWARDED_ENV_PREFIXES = ("ARCHBENCH_", "HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME")
"""Driver environment variables every task sees (fault injection in tests, offline model hubs)."""

_worker_datasets: LoadedDatasets | None = None  # one per Ray worker process: reused workers keep the data


def run_task(
    cfg: SweepConfig, planned: PlannedRun, root: str, env: dict[str, str]
) -> tuple[RunOutcome, str | None]:
    """The body of one Ray task: set the forwarded environment, then `execute_run`."""
    import ray

    global _worker_datasets
    with scoped_env(env):
        node_id = ray.get_runtime_context().get_node_id()
        node = f"{ray.util.get_node_ip_address()}/{node_id[:8]}"
        _worker_datasets = _worker_datasets or LoadedDatasets()
        out, rec = execute_run(
            cfg,
            planned,
            Path(root),
            datasets=_worker_datasets,
            host_extra={"ray_node_id": node_id, "ray_node": node},
        )
    out.node = node
    return out, rec.status if rec is not None else None


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def task_resources(spec: ExecutorSpec, planned: PlannedRun, cluster_gpus: float) -> dict[str, float]:
    """Per-run Ray resources: the config's, else CPUs = train.threads (or 1) per process and one GPU per
    process when the cluster has GPUs and the run may use CUDA. A data-parallel run's task starts its
    ranks on its own node (engine/ddp.py), so Ray places all its GPUs/CPUs on one node."""
    train = planned.spec.train
    world = spec.resources.world_size
    cpu = spec.resources.cpu if spec.resources.cpu is not None else float((train.threads or 1) * world)
    if spec.resources.gpu is not None:
        gpu = spec.resources.gpu
    else:
        gpu = float(world) if cluster_gpus > 0 and train.device != "cpu" else 0.0
    return {"num_cpus": cpu, "num_gpus": gpu}


class RayExecutor:
    """Submits every planned run as a Ray task and collects them as they finish."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec

    def _connect(self) -> bool:
        """Start or join Ray; True when this call started it (and so must shut it down)."""
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():
            return False
        ray.init(
            address=self.spec.address,  # None: a local instance sized to this machine
            include_dashboard=False,
            log_to_driver=False,  # worker output would tear the progress display; errors go to records
            configure_logging=False,
        )
        return True

    def run_all(self, sweep: SweepContext) -> None:
        import ray

        # workers do not share the driver's working directory
        sweep = dataclasses.replace(sweep, root=sweep.root.resolve())
        started = self._connect()
        try:
            self._run(ray, sweep)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, sweep: SweepContext) -> None:
        pending = self._submit(ray, sweep)
        while pending:
            if sweep.should_stop():
                for ref in pending:
                    ray.cancel(ref)  # KeyboardInterrupt in the task; its run resumes next time
                for planned in pending.values():
                    sweep.summary.outcomes[planned.run_id] = "killed"
                sweep.summary.stopped = True
                return
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                planned = pending.pop(ref)
                out = self._outcome(ray, sweep, ref, planned)
                sweep.summary.add(out)
                run_dir = SweepLayout(sweep.root).runs / planned.run_id
                sweep.reporter.run_finished(planned, out.outcome, read_record(run_dir))

    def _submit(self, ray: Any, sweep: SweepContext) -> dict[Any, PlannedRun]:
        """One task per planned run; returns the pending tasks."""
        task = ray.remote(run_task)
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        env = _forwarded_env()
        pending: dict[Any, PlannedRun] = {}
        for planned in sweep.runs:
            opts = task_resources(self.spec, planned, gpus)
            ref = task.options(
                **opts,
                max_retries=self.spec.max_retries,
                retry_exceptions=False,  # a run's own errors end in its record, as with the local executor
                name=f"archbench:{planned.run_id}",
            ).remote(sweep.cfg, planned, str(sweep.root), env)
            pending[ref] = planned
        return pending

    def _outcome(self, ray: Any, sweep: SweepContext, ref: Any, planned: PlannedRun) -> RunOutcome:
        """The finished task's outcome; a task whose every attempt died marks its run failed."""
        out: RunOutcome
        try:
            out, _status = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # Every attempt's worker or node died (or the task was lost): the run's record may still say
            # "running"; say why it stopped, under its claim.
            detail = f"{self.spec.max_retries + 1} attempt(s); last: {type(exc).__name__}"
            first = str(exc).strip().splitlines()
            if first:
                detail += f": {first[0][:300]}"
            out = mark_run_failed(sweep.cfg, planned, sweep.root, "worker_died", detail)
        return out
