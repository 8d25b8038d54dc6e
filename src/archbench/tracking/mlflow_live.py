"""The live MLflow tracker of one run: owns sending its events while it trains, never making training wait.

It sends what mlflow.py defines (`desired_state`, `sync_record`) from a daemon thread: the run's MLflow run
when it starts, each epoch's metrics, and the final record when it ends, given at most `timeout_s`; what
could not be sent is noted in the sweep's outbox (the next `archbench run` or `sync` sends it).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archbench.config import MlflowSpec
from archbench.store.record import RunRecord
from archbench.tracking import outbox
from archbench.tracking.mlflow import (
    EPOCH_KEYS,
    SweepTarget,
    client,
    describe,
    desired_state,
    ensure_run,
    log_metrics,
    open_sweep,
    sync_record,
)
from archbench.util import faults


class LiveMlflowTracker:
    """Sends one run's events to MLflow from a daemon thread; training never waits for it.

    When the run ends, the final sync is given at most `timeout_s`; a failure or a timeout notes the run
    in the outbox, and later events of this run are not attempted (the next `sync` brings it up to date).
    """

    def __init__(self, spec: MlflowSpec, *, experiment: str, sweep_root: Path, sweep_name: str) -> None:
        self.spec = spec
        self.experiment = experiment
        self.sweep_root = sweep_root
        self.sweep_name = sweep_name
        self.run_id = ""
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._error: str | None = None
        self._target: SweepTarget | None = None
        self._mlflow_run: str | None = None
        self._thread = threading.Thread(target=self._work, name="archbench-mlflow", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except Exception as exc:  # the server is down, refused, timed out...
                self._error = describe(exc)
            finally:
                self._queue.task_done()

    def _connect(self) -> SweepTarget:
        if self._target is None:
            cl = client(self.spec.uri, self.spec.timeout_s)
            self._target = open_sweep(
                cl, self.experiment, self.sweep_root, self.sweep_name, log_models=self.spec.log_models
            )
        return self._target

    def started(self, record: RunRecord) -> None:
        self.run_id = record.run_id

        def job() -> None:
            target = self._connect()
            run, _ = ensure_run(target, desired_state(Path("/nonexistent"), record, target))
            self._mlflow_run = run.info.run_id
            if run.info.status != "RUNNING":
                target.cl.update_run(run.info.run_id, status="RUNNING")

        self._queue.put(job)

    def epoch(self, stats: dict[str, Any]) -> None:
        points = [
            (k, int(stats["epoch"]), float(stats[k]))
            for k in EPOCH_KEYS
            if isinstance(stats.get(k), int | float)
        ]

        def job() -> None:
            if self._mlflow_run is not None and self._target is not None:
                log_metrics(self._target.cl, self._mlflow_run, points)

        self._queue.put(job)

    def finished(self, run_dir: Path, record: RunRecord) -> None:
        # kill@tracking_final: the record is final, MLflow has not heard of it (the next run catches up).
        if faults.active("kill@tracking_final"):
            faults.die()
        self.run_id = record.run_id

        def job() -> None:
            sync_record(self._connect(), run_dir, record)

        t0 = time.monotonic()
        self._queue.put(job)
        self._queue.put(None)
        self._thread.join(timeout=self.spec.timeout_s)
        waited = time.monotonic() - t0
        if self._thread.is_alive():
            reason = f"no answer within timeout_s={self.spec.timeout_s}"
        else:
            reason = self._error or ""
        if reason:
            try:
                outbox.note(self.sweep_root, record.run_id, reason, waited)
            except OSError:
                pass  # the record is the truth; a sync over all records still finds this run
