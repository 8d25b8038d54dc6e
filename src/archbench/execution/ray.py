"""The Ray executor: runs the planned runs on a Ray cluster in long-lived workers; owns Ray start-up, the
workers and retries.

Warm workers: one Ray actor (`RunWorker`) per slot — the resources of one run (`task_resources`) — made
when a queued run needs one and kept for the whole sweep, so torch stays imported and the last data spec
stays loaded (execution/datasets.py) from one run to the next. A worker runs one run at a time; the
driver hands it the next run of its shape as soon as it is free, and retires it when no queued run has
that shape while runs of another shape wait for room. As many workers as the cluster's free resources
held when the sweep began (at least one).

Each run calls `runner.execute_run`, the same function the local executor calls, so claiming (a flock in
the run folder), skipping completed runs, resuming from `last.pt` and the record rules are unchanged.
The results folder must therefore be one path that every node sees (a shared filesystem).

Failures: a run whose worker process or node dies is given to a new worker, up to `max_retries` more
times; the new attempt claims the run again (the kernel dropped the dead owner's lock) and resumes from
the last checkpoint. When every attempt died, the driver marks the run `failed` (`worker_died`) and the
other runs go on. Errors inside a run (NaN loss, OOM, a bad file) are not retried: the run's own record
says `failed`, as with the local executor. A stop (SIGTERM/SIGINT) cancels the running runs: each
checkpoints at its next step and ends `killed`. Ray is imported only here, only when `executor.kind: ray`
is asked for.

Data-parallel runs (`resources: {gpu: N}` or `processes: N`): the worker is rank 0 and starts the other
ranks on its node (engine/ddp.py); a rank that dies fails the run's attempt like any error in the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.config import ExecutorSpec, SweepConfig
from archbench.execution.datasets import LoadedDatasets
from archbench.execution.runner import execute_run, mark_run_failed
from archbench.execution.types import ReporterFor, RunOutcome, SilentReporter, SweepContext
from archbench.store.layout import SweepLayout
from archbench.store.record import read_record
from archbench.sweep.expand import PlannedRun
from archbench.util.env import scoped_env

FORWARDED_ENV_PREFIXES = ("ARCHBENCH_", "HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME")
"""Driver environment variables every run sees (fault injection in tests, offline model hubs)."""

STOP_GRACE_S = 8.0
"""After a stop, how long the driver waits for the cancelled runs to checkpoint before it kills their
workers (a killed worker's run is marked `killed` and resumed by the next sweep)."""

Shape = tuple[float, float]  # (CPUs, GPUs) of one run


class RunWorker:
    """One slot of the cluster: a long-lived process (Ray actor) that runs planned runs one at a time and
    keeps what they share — imported libraries, the loaded data — from one run to the next."""

    def __init__(self) -> None:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        self.node = f"{ray.util.get_node_ip_address()}/{node_id[:8]}"
        self.host_extra = {"ray_node_id": node_id, "ray_node": self.node}
        self.datasets = LoadedDatasets()

    def run(
        self,
        cfg: SweepConfig,
        planned: PlannedRun,
        root: str,
        env: dict[str, str],
        reporter_for: ReporterFor | None,
    ) -> RunOutcome:
        """One run with the driver's forwarded environment; `ray.cancel` stops it at its next step."""
        import ray

        with scoped_env(env):
            reporter = reporter_for(planned, SilentReporter()) if reporter_for else None
            out, _ = execute_run(
                cfg,
                planned,
                Path(root),
                reporter=reporter,
                should_stop=ray.get_runtime_context().is_canceled,
                datasets=self.datasets,
                host_extra=self.host_extra,
            )
        out.node = self.node
        return out


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def task_resources(spec: ExecutorSpec, planned: PlannedRun, cluster_gpus: float) -> dict[str, float]:
    """Per-run Ray resources: the config's, else CPUs = train.threads (or 1) per process and one GPU per
    process when the cluster has GPUs and the run may use CUDA. A data-parallel run's worker starts its
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
    """Runs the planned runs on warm Ray workers and collects them as they finish."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self._kept: list[_Slot] | None = None  # within a session: the workers kept between sweeps

    def _connect(self) -> bool:
        """Start or join Ray; True when this call started it (and so must shut it down)."""
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():
            return False
        # ray.init puts in handlers of its own that end the process on SIGTERM: the sweep's handlers go
        # back in, so a stop checkpoints the running runs instead.
        main = threading.current_thread() is threading.main_thread()
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
        ray.init(
            address=self.spec.address,  # None: a local instance sized to this machine
            include_dashboard=False,
            log_to_driver=False,  # worker output would tear the progress display; errors go to records
            configure_logging=False,
        )
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        return True

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep Ray and the warm workers from one `run_all` to the next (tuning's trials, then its final
        runs): neither Ray's start nor a worker's imports and data are paid twice."""
        import ray

        started = self._connect()
        self._kept = []
        try:
            yield
        finally:
            _kill(ray, self._kept)
            self._kept = None
            if started:
                _shutdown(ray)

    def run_all(self, sweep: SweepContext) -> None:
        import ray

        # workers do not share the driver's working directory
        sweep = dataclasses.replace(sweep, root=sweep.root.resolve())
        if self._kept is not None:
            _WorkerPool(ray, self.spec, sweep, self._kept).run()
            return
        started = self._connect()
        workers: list[_Slot] = []
        try:
            _WorkerPool(ray, self.spec, sweep, workers).run()
        finally:
            _kill(ray, workers)
            if started:
                _shutdown(ray)


def _shutdown(ray: Any) -> None:
    """`ray.shutdown()` of the Ray this executor started, less a second: shutdown gives each process it
    started a second to exit after SIGTERM, and the autoscaler's monitor of a local instance always takes
    all of it before its SIGKILL (1.01 of shutdown's 1.34 s, Ray 2.60 on this 2-core machine; 0.33 s with
    this). The monitor has nothing to save, so it gets its SIGKILL first. This reads Ray's private process
    table; where that is not there, shutdown is as before."""
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    for info in getattr(node, "all_processes", {}).get("monitor", []):
        proc = getattr(info, "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    ray.shutdown()


def _kill(ray: Any, slots: list[_Slot]) -> None:
    for slot in slots:
        ray.kill(slot.actor)
    slots.clear()


@dataclass
class _Slot:
    """A worker and the run it is executing (None: idle)."""

    actor: Any
    shape: Shape
    planned: PlannedRun | None = None
    ref: Any = None


class _WorkerPool:
    """One sweep on Ray: the queued runs by shape, the workers, and each run's attempts."""

    def __init__(self, ray: Any, spec: ExecutorSpec, sweep: SweepContext, slots: list[_Slot]) -> None:
        self.ray, self.spec, self.sweep = ray, spec, sweep
        self.slots = slots  # idle workers kept from an earlier sweep of the session, if any; ours are added
        free = ray.available_resources()  # what the cluster has free, plus what our workers hold
        self.capacity: Shape = (
            float(free.get("CPU", 0.0)) + sum(s.shape[0] for s in slots),
            float(free.get("GPU", 0.0)) + sum(s.shape[1] for s in slots),
        )
        self.cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        self.queues: dict[Shape, deque[PlannedRun]] = {}
        self.attempts: dict[str, int] = {}
        self.worker = ray.remote(RunWorker)
        self.env = _forwarded_env()
        for planned in sweep.runs:
            self._enqueue(planned)

    def run(self) -> None:
        """Until every run ended (or a stop): fill the workers, collect what ends. Idle workers stay in
        `slots` for the caller to keep or kill."""
        while any(self.queues.values()) or self._busy():
            if self.sweep.should_stop():
                self._stop()
                return
            self._fill()
            busy = {s.ref: s for s in self._busy()}
            done, _ = self.ray.wait(list(busy), num_returns=1, timeout=0.5)
            for ref in done:
                self._finished(busy[ref])

    def _busy(self) -> list[_Slot]:
        return [s for s in self.slots if s.ref is not None]

    def _shape(self, planned: PlannedRun) -> Shape:
        r = task_resources(self.spec, planned, self.cluster_gpus)
        return (r["num_cpus"], r["num_gpus"])

    def _enqueue(self, planned: PlannedRun, front: bool = False) -> None:
        q = self.queues.setdefault(self._shape(planned), deque())
        q.appendleft(planned) if front else q.append(planned)

    def _fits(self, shape: Shape) -> bool:
        cpu = sum(s.shape[0] for s in self.slots) + shape[0]
        gpu = sum(s.shape[1] for s in self.slots) + shape[1]
        return cpu <= self.capacity[0] + 1e-9 and gpu <= self.capacity[1] + 1e-9

    def _fill(self) -> None:
        """Give each queued run an idle worker of its shape, or a new one while the resources last (with no
        worker at all, one is made anyway: Ray starts it when the cluster has room). When runs wait for
        room, idle workers no queued run can use are retired and their room is used."""
        if self._place() and self._retire_unused():
            self._place()

    def _place(self) -> bool:
        """Start what can start; True when some queued run still waits for room."""
        waiting = False
        for shape, queue in self.queues.items():
            while queue:
                slot = next((s for s in self.slots if s.ref is None and s.shape == shape), None)
                if slot is None and (self._fits(shape) or not self.slots):
                    slot = self._new_worker(shape)
                if slot is None:
                    waiting = True
                    break
                self._submit(slot, queue.popleft())
        return waiting

    def _retire_unused(self) -> bool:
        unused = [s for s in self.slots if s.ref is None and not self.queues.get(s.shape)]
        for slot in unused:
            self.ray.kill(slot.actor)
            self.slots.remove(slot)
        return bool(unused)

    def _new_worker(self, shape: Shape) -> _Slot:
        actor = self.worker.options(num_cpus=shape[0], num_gpus=shape[1], max_restarts=0).remote()
        slot = _Slot(actor, shape)
        self.slots.append(slot)
        return slot

    def _submit(self, slot: _Slot, planned: PlannedRun) -> None:
        slot.planned = planned
        slot.ref = slot.actor.run.options(name=f"archbench:{planned.run_id}").remote(
            self.sweep.cfg, planned, str(self.sweep.root), self.env, self.sweep.reporter_for
        )

    def _finished(self, slot: _Slot) -> None:
        """The outcome of the slot's run; a run whose worker died goes back to the front of its queue until
        its attempts are spent, then is marked failed."""
        planned, ref = slot.planned, slot.ref
        assert planned is not None
        slot.planned = slot.ref = None
        errors = self.ray.exceptions
        try:
            out: RunOutcome = self.ray.get(ref)
        except errors.RayError as exc:
            self.ray.kill(slot.actor)  # dead already, or in a state no later run should inherit
            self.slots.remove(slot)
            tries = self.attempts[planned.run_id] = self.attempts.get(planned.run_id, 0) + 1
            if isinstance(exc, errors.RayActorError) and tries <= self.spec.max_retries:
                self._enqueue(planned, front=True)  # its worker or node died: a new worker resumes it
                return
            out = self._mark_failed(planned, tries, exc)
        self.sweep.summary.add(out)
        run_dir = SweepLayout(self.sweep.root).runs / planned.run_id
        self.sweep.reporter.run_finished(planned, out.outcome, read_record(run_dir))
        if self.sweep.refill is not None:
            for more in self.sweep.refill(out):
                self._enqueue(more)

    def _mark_failed(self, planned: PlannedRun, tries: int, exc: Exception) -> RunOutcome:
        """Every attempt's worker or node died (or the run's call itself broke): the run's record may still
        say "running"; say why it stopped, under its claim."""
        detail = f"{tries} attempt(s); last: {type(exc).__name__}"
        first = str(exc).strip().splitlines()
        if first:
            detail += f": {first[0][:300]}"
        return mark_run_failed(self.sweep.cfg, planned, self.sweep.root, "worker_died", detail)

    def _stop(self) -> None:
        """Cancel the running runs (each checkpoints at its next step and records `killed`), wait a little
        for them; every run not finished counts as killed and resumes next time."""
        busy = self._busy()
        for slot in busy:
            self.ray.cancel(slot.ref)
        if busy:
            self.ray.wait([s.ref for s in busy], num_returns=len(busy), timeout=STOP_GRACE_S)
        left = [s.planned for s in busy] + [p for q in self.queues.values() for p in q]
        for planned in left:
            if planned is not None:
                self.sweep.summary.outcomes[planned.run_id] = "killed"
        self.sweep.summary.stopped = True
        for slot in busy:  # cancelled: no later sweep may inherit it, whether it stopped in time or not
            self.ray.kill(slot.actor)
            self.slots.remove(slot)
