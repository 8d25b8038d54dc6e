"""Data-parallel training of ONE run on several processes: owns the rank plan (and the record's words for
it), the launcher (rank 0's side: start, watch and stop ranks 1..N-1) and each other rank's entry point;
never decides what a run trains, and never writes a record. The collectives are collectives.py's.

How a run with `executor.resources: {gpu: N}` (or `processes: N`) trains:
- The process that claimed the run (the local executor's, or the Ray task) is rank 0. It starts ranks
  1..N-1 as fresh Python processes on the same machine, each calling the same `train_run` with its
  `RankContext`; they meet through a TCP store on 127.0.0.1 that rank 0 hosts (a free port, so runs on one
  machine never collide). Backend: NCCL when the run's device is CUDA (rank r on cuda:r), gloo on CPU.
- Global batch = `train.batch_size`, as the config says. Every rank draws the SAME epoch permutation (and
  augmentation) from the run's seeded generator and trains on rows r, r+N, r+2N, ... of each global batch.
  DDP averages the gradients; each rank's loss is weighted by (its rows x N / global rows), so a step is
  the step one process takes on the whole batch (exact up to float rounding for models without BatchNorm:
  BatchNorm normalises each rank's rows by their own statistics). The lr is therefore used unchanged.
- Only rank 0 validates, writes checkpoints, predictions, stages and the record; the others only train.
  Every rank resumes from the same `last` checkpoint, which holds nothing rank-specific, so a run killed
  with N processes may resume with another number (same global batch, same math).
- A rank that dies fails the run with its reason (`rank_died`, or the rank's own error such as a
  non-finite loss); no rank waits longer than `resources.timeout_s` for the others. A stop (SIGTERM) is
  decided by rank 0 and agreed at the epoch's start and every `train.log_every` steps (where the device is
  read anyway, so the step stays free of syncs), so every rank stops at the same step.

Why not Ray Train's `TorchTrainer` or `torchrun`: the claim (flock), skip, resume and record rules live in
the one process that owns the run; a trainer that starts its own workers would move ownership elsewhere.
This launcher works the same under the local executor and inside a Ray task (which asks Ray for N GPUs or
N CPUs, so its ranks fit on its node). Ranks are started with `subprocess` (a `python -c` entry) rather
than `multiprocessing` spawn, so they never re-import the parent's main module (the CLI, a Ray worker).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.engine.collectives import RankContext
from archbench.engine.rankstop import StopWatch
from archbench.store.layout import RunLayout
from archbench.util import faults
from archbench.util.errors import RunFailure, RunKilled

if TYPE_CHECKING:
    import torch

    from archbench.config import ResourcesSpec, RunSpec
    from archbench.data.registry import DatasetBundle
    from archbench.engine.train import TrainResult
    from archbench.store.record import DistributedBlock

HOST = "127.0.0.1"  # every rank of a run is on the machine that claimed it
LOOPBACK_IFNAME = "lo"  # gloo binds to the interface its hostname resolves to unless told; tests run offline
READY_KEY = "archbench/ready/{rank}"
ERROR_KEY = "archbench/error/{rank}"
# What each record's `distributed.data_split` says (one wording, in one place).
DATA_SPLIT = (
    "each epoch every rank draws the same permutation (and augmentation) from the run's seeded generator, "
    "then rank r trains on rows r, r+W, r+2W, ... of each global batch of train.batch_size rows"
)
GRADIENTS = (
    "DDP averages the ranks' gradients; each rank's mean loss is weighted by its rows x W / global rows, "
    "so a step equals one process's step on the whole batch (exact without BatchNorm)"
)


@dataclass(frozen=True)
class RankPlan:
    """How many processes a run trains on, with which backend, on which devices."""

    world_size: int
    backend: str
    devices: tuple[str, ...]
    timeout_s: float

    @classmethod
    def for_run(cls, resources: ResourcesSpec, device: torch.device) -> RankPlan:
        """The plan for a run on `device` (the one the runner resolved); one process unless asked for more.

        Raises RunFailure (`distributed_config`) when CUDA runs ask for more processes than visible GPUs."""
        world = resources.world_size
        if device.type == "cuda":
            import torch

            seen = torch.cuda.device_count()
            if world > seen:
                raise RunFailure(
                    "distributed_config",
                    f"{world} processes need {world} GPUs but this process sees {seen}; set "
                    f"executor.resources.processes (or gpu) to at most {seen}",
                )
            return cls(world, "nccl", tuple(f"cuda:{i}" for i in range(world)), resources.timeout_s)
        return cls(world, "gloo", ("cpu",) * world, resources.timeout_s)

    def block(self, spec: RunSpec) -> DistributedBlock:
        """The record's `distributed` block for a run trained under this plan."""
        from archbench.store.record import DistributedBlock

        batch = spec.train.batch_size
        return DistributedBlock(
            backend=self.backend,
            world_size=self.world_size,
            devices=list(self.devices),
            global_batch=batch,
            per_rank_batch=math.ceil(batch / self.world_size),
            lr=spec.train.lr,
            lr_scaling="none: the global batch is train.batch_size, whatever the number of processes",
            data_split=DATA_SPLIT,
            gradients=GRADIENTS,
            validation="rank 0, the whole validation split; the test split after training likewise",
            timeout_s=self.timeout_s,
        )


# --- the launcher (rank 0's side) -------------------------------------------------------------------------


def train_on_ranks(
    plan: RankPlan,
    spec: RunSpec,
    bundle: DatasetBundle,
    run_dir: Path,
    *,
    device: torch.device,
    **kwargs: Any,
) -> TrainResult:
    """`train_run(spec, bundle, run_dir, device=device, **kwargs)` as rank 0 of `plan`, with ranks 1..
    started beside it; one process: just the call.

    Raises the rank's own failure when another rank failed, `rank_died` when one was killed."""
    from archbench.engine.train import train_run

    if plan.world_size == 1:
        return train_run(spec, bundle, run_dir, device=device, **kwargs)
    import torch
    import torch.distributed as dist

    timeout = timedelta(seconds=plan.timeout_s)
    saved_env = {k: os.environ.get(k) for k in ("GLOO_SOCKET_IFNAME",)}
    _loopback_for_gloo(plan.backend)
    store = dist.TCPStore(HOST, 0, plan.world_size, is_master=True, timeout=timeout, wait_for_workers=False)
    ranks = _RankProcesses(plan, store.port, spec, run_dir)
    run_id = run_dir.name
    threads = torch.get_num_threads()
    watch = StopWatch(kwargs.get("should_stop", lambda: False), ranks.stop)  # a stop ends within ~10 s
    try:
        watch.start()
        ranks.start()
        ranks.wait_ready(store)
        if spec.train.threads is None and plan.backend == "gloo":
            torch.set_num_threads(_threads_per_rank(plan.world_size))
        dist.init_process_group(
            plan.backend, store=store, rank=0, world_size=plan.world_size, timeout=timeout
        )
        faults.set_run(f"{run_id}/rank0")  # `#/rank1` scopes a fault to one rank in the tests
        ctx = RankContext(0, plan.world_size, plan.backend)
        try:
            result = train_run(spec, bundle, run_dir, device=device, ranks=ctx, **kwargs)
        except RuntimeError as exc:
            # A collective that failed because another rank died: that rank's story is the run's. One that
            # timed out while every rank still runs: a rank is stuck (a hang, a far slower device).
            if not isinstance(exc, torch.cuda.OutOfMemoryError):
                failure = ranks.failure(store, wait_s=10.0)
                if failure is None and _is_collective_error(exc):
                    failure = RunFailure(
                        "rank_timeout",
                        f"rank 0 waited over {plan.timeout_s:g}s (executor.resources.timeout_s) for ranks "
                        f"{sorted(ranks.procs)}: {' '.join(str(exc).split())[:300]}",
                    )
                if failure is not None:
                    raise failure from exc
            raise
        failure = ranks.join(store, plan.timeout_s)
        if failure is not None:
            raise failure
        return result
    except Exception as exc:
        killed = watch.killed()  # the ranks were killed for a stop: whatever failed after is that stop
        if killed is None:
            raise
        raise killed from exc
    finally:
        watch.stop()
        faults.set_run(run_id)
        ranks.stop()
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _threads_per_rank(world: int) -> int:
    return max(1, (os.cpu_count() or 1) // world)


def _loopback_for_gloo(backend: str) -> None:
    """gloo picks the interface its hostname resolves to; all ranks are on 127.0.0.1, so use loopback."""
    if backend != "gloo" or "GLOO_SOCKET_IFNAME" in os.environ:
        return
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return
    if LOOPBACK_IFNAME in names:
        os.environ["GLOO_SOCKET_IFNAME"] = LOOPBACK_IFNAME


_SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


class _RankProcesses:
    """Ranks 1..N-1 of one run: start, readiness, failure reports (through the store), stop."""

    def __init__(self, plan: RankPlan, port: int, spec: RunSpec, run_dir: Path) -> None:
        self.plan, self.port, self.spec, self.run_dir = plan, port, spec, run_dir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        env = dict(os.environ)
        if self.spec.train.threads is None and self.plan.backend == "gloo":
            env["OMP_NUM_THREADS"] = str(_threads_per_rank(self.plan.world_size))
        for rank in range(1, self.plan.world_size):
            payload = json.dumps(  # plain JSON: a rank unpickles nothing
                {
                    "rank": rank,
                    "plan": dataclasses.asdict(self.plan),
                    "port": self.port,
                    "spec": self.spec.model_dump(mode="json"),
                    "run_dir": str(self.run_dir),
                    "sys_path": sys.path,
                }
            )
            log = _open_log(self._log(rank))
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _ENTRY, str(os.getpid())],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=False,
                )
            finally:
                os.close(log)
            assert proc.stdin is not None
            proc.stdin.write(payload.encode())
            proc.stdin.close()
            self.procs[rank] = proc

    def wait_ready(self, store: Any) -> None:
        """Until every rank has joined the store; a rank that exits first fails the run at once."""
        deadline = time.monotonic() + self.plan.timeout_s
        keys = {r: READY_KEY.format(rank=r) for r in self.procs}
        while keys:
            for r in list(keys):
                if store.check([keys[r]]):
                    del keys[r]
            for r, proc in self.procs.items():
                if proc.poll() is not None:
                    raise self._failure_of(store, r) or RunFailure(
                        "rank_died", f"rank {r} exited before training started (see {self._log(r)})"
                    )
            if keys and time.monotonic() > deadline:
                raise RunFailure(
                    "rank_timeout", f"ranks {sorted(keys)} did not start in {self.plan.timeout_s}s"
                )
            time.sleep(0.05)

    def _log(self, rank: int) -> Path:
        return RunLayout(self.run_dir).rank_log(rank)

    def _failure_of(self, store: Any, rank: int) -> RunFailure | None:
        """What rank `rank` reported, or how it died; None while it runs or after a clean exit."""
        key = ERROR_KEY.format(rank=rank)
        code = self.procs[rank].poll()
        if store.check([key]):
            report = json.loads(store.get(key).decode())
            return RunFailure(report["reason"], f"rank {rank}: {report['detail']}")
        if code is not None and code < 0:
            name = _SIGNAL_NAMES.get(-code, str(-code))
            return RunFailure("rank_died", f"rank {rank} was killed by {name}; see {self._log(rank)}")
        if code:
            return RunFailure("rank_died", f"rank {rank} exited with code {code}; see {self._log(rank)}")
        return None

    def failure(self, store: Any, wait_s: float) -> RunFailure | None:
        """The failure of another rank that explains rank 0's failed collective (its own error first,
        then a death by signal; errors that are themselves failed collectives come last)."""
        deadline = time.monotonic() + wait_s
        while True:
            found = [f for r in self.procs if (f := self._failure_of(store, r)) is not None]
            primary = [f for f in found if f.reason != "collective"]
            if primary or time.monotonic() > deadline:
                return (primary or found)[0] if found else None
            time.sleep(0.1)

    def join(self, store: Any, timeout_s: float) -> RunFailure | None:
        """After rank 0 trained: every rank has finished (or how one did not)."""
        deadline = time.monotonic() + timeout_s
        for r, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return RunFailure("rank_timeout", f"rank {r} did not finish within {timeout_s}s of rank 0")
            failure = self._failure_of(store, r)
            if failure is not None:
                return failure
        return None

    def stop(self) -> None:
        """Kill whatever rank still runs (rank 0 failed or stopped; they hold no files and no claim)."""
        for proc in list(self.procs.values()):  # list: also called from rank 0's stop watch (rankstop.py)
            if proc.poll() is None:
                proc.kill()
        for proc in list(self.procs.values()):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


def _open_log(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags, 0o644)


# --- ranks 1..N-1 (their own processes) -------------------------------------------------------------------

# Linux: the kernel SIGKILLs a rank when rank 0 dies (a killed driver leaves no ranks behind). Asked for
# first, before any slow import, and then checked: a rank 0 that died before that has nothing to join. Then
# the parent's sys.path first, so a rank imports the same archbench (and target) as its parent.
_ENTRY = """
import os, sys
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
import json
args = json.loads(sys.stdin.buffer.read())
sys.path[:0] = args["sys_path"]
from archbench.engine.ddp import rank_main
rank_main(args)
"""


def _is_collective_error(exc: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in ("gloo", "nccl", "connection"))
    )


def rank_main(args: dict[str, Any]) -> None:
    """A rank other than 0: join the store and the process group, load the data, train, report failures.

    SIGINT and SIGTERM are ignored here: rank 0 decides a stop and every rank agrees on it (RunKilled)."""
    # A terminal's Ctrl-C reaches the whole process group: rank 0 decides and every rank stops with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch
    import torch.distributed as dist

    from archbench.config import RunSpec

    rank, plan, spec = args["rank"], RankPlan(**args["plan"]), RunSpec.model_validate(args["spec"])
    plan = dataclasses.replace(plan, devices=tuple(plan.devices))
    run_dir = Path(args["run_dir"])

    timeout = timedelta(seconds=plan.timeout_s)
    store = dist.TCPStore(HOST, args["port"], plan.world_size, is_master=False, timeout=timeout)
    code = 0
    try:
        device = torch.device(plan.devices[rank])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        store.set(READY_KEY.format(rank=rank), "1")
        dist.init_process_group(
            plan.backend, store=store, rank=rank, world_size=plan.world_size, timeout=timeout
        )
        faults.set_run(f"{run_dir.name}/rank{rank}")
        from archbench.data import create_dataset
        from archbench.engine.train import train_run  # after joining: a rank's start-up is timed (timeout_s)

        bundle = create_dataset(spec.data).without_test()  # ranks other than 0 never evaluate
        ctx = RankContext(rank, plan.world_size, plan.backend)
        train_run(spec, bundle, run_dir, device=device, ranks=ctx)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to rank 0, then the rank exits
        if isinstance(exc, RunKilled):
            code = 0  # rank 0 asked every rank to stop at this step
        else:
            code = 1
            if isinstance(exc, RunFailure):
                reason, detail = exc.reason, exc.detail
            else:
                reason = "collective" if _is_collective_error(exc) else "rank_error"
                detail = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            try:
                store.set(ERROR_KEY.format(rank=rank), json.dumps({"reason": reason, "detail": detail}))
            except Exception:  # noqa: BLE001 - rank 0 (the store) is gone: nobody to tell
                pass
            import traceback

            traceback.print_exc()
    if code == 0 and dist.is_initialized():
        dist.destroy_process_group()  # after a failure the group may be broken: exit without it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
