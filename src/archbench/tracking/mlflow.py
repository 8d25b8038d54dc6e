"""MLflow mirror of run records: owns what an MLflow run of an archbench run contains, and keeping it equal.

One MLflow run per archbench run, found by the tag `archbench.run_id` (run name = run id). Its content is a
pure function of the record (`desired_state`): tags (sweep, spec hash, data fingerprint, git commit),
params (the flattened resolved spec), per-epoch metrics with step = epoch, final metrics at step 0, the
record, history and figures as artifacts, and a status mirroring the record's. `sync_record` makes
MLflow equal to that, changing nothing when it already is (so a second `archbench sync` is a no-op).
`LiveMlflowTracker` sends the same things while a run trains, from a background thread, within a budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.config import MlflowSpec
from archbench.store.layout import CHECKPOINTS_DIR, RunLayout
from archbench.store.record import RunRecord, Status
from archbench.tracking import outbox
from archbench.util.escape import visible
from archbench.util.paths import slugify

TAG_RUN_ID = "archbench.run_id"
# Every record status (store.record.Status) has its MLflow run status; a pruned tuning trial was stopped
# early on purpose: KILLED, with archbench.status saying "pruned".
STATUS: dict[Status, str] = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
    "pruned": "KILLED",
    "running": "RUNNING",
}
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds")
FINAL_KEYS = (
    "top1",
    "top5",
    "loss",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "kappa",
    "n_test",
)
ARTIFACT_SUFFIXES = (".png", ".svg", ".pdf", ".html")
MAX_PARAM_LEN = 6000


def _configure_http(timeout_s: float) -> None:
    # MLflow retries a dead server with back-off for minutes by default: fail fast, the outbox remembers.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(timeout_s))))


def client(uri: str, timeout_s: float = 10.0) -> Any:
    _configure_http(timeout_s)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    value = visible(obj) if isinstance(obj, str) else json.dumps(obj)  # json escapes controls itself
    out[prefix[:-1]] = value[:MAX_PARAM_LEN]
    return out


@dataclass
class DesiredRun:
    """What the MLflow run of one record must hold."""

    run_id: str
    tags: dict[str, str]
    params: dict[str, str]
    series: dict[str, list[tuple[int, float]]]  # metric -> [(step, value)], epoch curves and finals
    status: str
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # (file, artifact dir)
    record_sha256: str = ""


def _artifacts(run_dir: Path) -> list[tuple[Path, str | None]]:
    out: list[tuple[Path, str | None]] = []
    layout = RunLayout(run_dir)
    for file in (layout.record, layout.history):
        if file.is_file():
            out.append((file, None))
    for path in sorted(run_dir.rglob("*")):
        if path.suffix.lower() in ARTIFACT_SUFFIXES and path.is_file() and not path.is_symlink():
            rel = path.parent.relative_to(run_dir)
            if CHECKPOINTS_DIR not in rel.parts:
                out.append((path, str(rel) if str(rel) != "." else None))
    return out


def desired_state(run_dir: Path, record: RunRecord) -> DesiredRun:
    """The MLflow run a record stands for (pure apart from reading the run's files)."""
    tags = {
        TAG_RUN_ID: record.run_id,
        "archbench.sweep": visible(record.sweep),
        "archbench.spec_hash": record.spec_hash,
        "archbench.data_fingerprint": record.data_fingerprint or "",
        "archbench.git_commit": str(record.code_version.get("git_commit") or ""),
        "archbench.status": record.status,
        "archbench.failure_reason": visible(record.failure_reason or ""),
        "mlflow.runName": record.run_id,
    }
    series: dict[str, list[tuple[int, float]]] = {}
    for h in record.history:
        d = h.model_dump()
        for key in EPOCH_KEYS:
            if isinstance(d.get(key), int | float):
                series.setdefault(key, []).append((int(h.epoch), float(d[key])))
    if record.metrics is not None:
        m = record.metrics.model_dump()
        for key in FINAL_KEYS:
            if isinstance(m.get(key), int | float):
                series[f"test_{key}"] = [(0, float(m[key]))]
    if record.train_seconds is not None:
        series["train_seconds"] = [(0, float(record.train_seconds))]
    record_file = RunLayout(run_dir).record
    sha = hashlib.sha256(record_file.read_bytes()).hexdigest() if record_file.is_file() else ""
    return DesiredRun(
        run_id=record.run_id,
        tags=tags,
        params=flatten(record.spec.identity()),
        series=series,
        status=STATUS[record.status],
        artifacts=_artifacts(run_dir),
        record_sha256=sha,
    )


def artifact_root(uri: str) -> str | None:
    """For a `sqlite:///dir/x.db` store, keep artifacts beside it (dir/mlartifacts), not in the cwd."""
    if not uri.startswith("sqlite:///"):
        return None  # a server decides (its --artifacts-destination)
    db = Path(uri[len("sqlite:///") :])
    return (db.resolve().parent / "mlartifacts").as_uri()


def experiment_id(cl: Any, name: str) -> str:
    name = visible(name)  # a sweep's name: shown in the MLflow UI, so never with raw control characters
    exp = cl.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            cl.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    root = artifact_root(str(cl.tracking_uri))
    location = f"{root}/{slugify(name, max_len=64)}" if root else None
    try:
        return str(cl.create_experiment(name, artifact_location=location))
    except Exception:  # another worker created it first
        exp = cl.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def find_runs(cl: Any, exp_id: str, run_id: str) -> list[Any]:
    runs = cl.search_runs(
        [exp_id], filter_string=f"tags.`{TAG_RUN_ID}` = '{run_id}'", order_by=["attributes.start_time ASC"]
    )
    return list(runs)


def _create(cl: Any, exp_id: str, want: DesiredRun) -> Any:
    from mlflow.entities import Param

    run = cl.create_run(exp_id, run_name=want.run_id, tags=want.tags)
    params = [Param(k, v) for k, v in want.params.items()]
    for i in range(0, len(params), 100):
        cl.log_batch(run.info.run_id, params=params[i : i + 100])
    return cl.get_run(run.info.run_id)


def ensure_run(cl: Any, exp_id: str, want: DesiredRun) -> tuple[Any, bool]:
    """The one MLflow run of this archbench run (extra copies deleted), created if missing."""
    runs = find_runs(cl, exp_id, want.run_id)
    for extra in runs[1:]:
        cl.delete_run(extra.info.run_id)
    if runs:
        return runs[0], False
    return _create(cl, exp_id, want), True


def _log_metrics(cl: Any, mlflow_run_id: str, points: list[tuple[str, int, float]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, s) for k, s, v in points]
    for i in range(0, len(metrics), 500):
        cl.log_batch(mlflow_run_id, metrics=metrics[i : i + 500])


def sync_record(cl: Any, exp_id: str, run_dir: Path, record: RunRecord) -> str:
    """Make MLflow equal to this record: 'created', 'updated' or 'unchanged' (nothing written)."""
    want = desired_state(run_dir, record)
    run, created = ensure_run(cl, exp_id, want)
    rid = run.info.run_id
    have_params = dict(run.data.params)
    if any(k in have_params and have_params[k] != v for k, v in want.params.items()):
        # Params cannot be changed in MLflow: a run logged under another spec is replaced.
        cl.delete_run(rid)
        run, created = _create(cl, exp_id, want), True
        rid = run.info.run_id
        have_params = dict(run.data.params)
    changed = created
    missing_params = {k: v for k, v in want.params.items() if k not in have_params}
    if missing_params:
        from mlflow.entities import Param

        cl.log_batch(rid, params=[Param(k, v) for k, v in missing_params.items()])
        changed = True
    tags = dict(run.data.tags)
    for k, v in want.tags.items():
        if tags.get(k) != v:
            cl.set_tag(rid, k, v)
            changed = True
    todo: list[tuple[str, int, float]] = []
    for key, points in want.series.items():
        have = {(m.step, m.value) for m in cl.get_metric_history(rid, key)}
        if have - set(points):
            # MLflow holds a point the record does not (e.g. an epoch from an attempt that was redone with
            # other numbers): history cannot be edited, so start the run again from the record.
            cl.delete_run(rid)
            sync_record(cl, exp_id, run_dir, record)
            return "created"
        todo.extend((key, s, v) for s, v in points if (s, v) not in have)
    if todo:
        _log_metrics(cl, rid, todo)
        changed = True
    if tags.get("archbench.record_sha256") != want.record_sha256:
        for path, art_dir in want.artifacts:
            cl.log_artifact(rid, str(path), art_dir)
        cl.set_tag(rid, "archbench.record_sha256", want.record_sha256)
        changed = True
    status = cl.get_run(rid).info.status
    if status != want.status:
        if want.status == "RUNNING":
            cl.update_run(rid, status="RUNNING")
        else:
            cl.set_terminated(rid, status=want.status)
        changed = True
    if created:
        return "created"
    return "updated" if changed else "unchanged"


class LiveMlflowTracker:
    """Sends one run's events to MLflow from a daemon thread; training never waits for it.

    When the run ends, the final sync is given at most `timeout_s`; a failure or a timeout notes the run
    in the outbox, and later events of this run are not attempted (the next `sync` brings it up to date).
    """

    def __init__(self, spec: MlflowSpec, *, experiment: str, sweep_root: Path) -> None:
        self.spec = spec
        self.experiment = experiment
        self.sweep_root = sweep_root
        self.run_id = ""
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._error: str | None = None
        self._cl: Any = None
        self._exp_id: str | None = None
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
                self._error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            finally:
                self._queue.task_done()

    def _connect(self) -> None:
        if self._cl is None:
            self._cl = client(self.spec.uri, self.spec.timeout_s)
            self._exp_id = experiment_id(self._cl, self.experiment)

    def started(self, record: RunRecord) -> None:
        self.run_id = record.run_id

        def job() -> None:
            self._connect()
            want = desired_state(Path("/nonexistent"), record)
            run, _ = ensure_run(self._cl, str(self._exp_id), want)
            self._mlflow_run = run.info.run_id
            if run.info.status != "RUNNING":
                self._cl.update_run(run.info.run_id, status="RUNNING")

        self._queue.put(job)

    def epoch(self, stats: dict[str, Any]) -> None:
        points = [
            (k, int(stats["epoch"]), float(stats[k]))
            for k in EPOCH_KEYS
            if isinstance(stats.get(k), int | float)
        ]

        def job() -> None:
            if self._mlflow_run is not None:
                _log_metrics(self._cl, self._mlflow_run, points)

        self._queue.put(job)

    def finished(self, run_dir: Path, record: RunRecord) -> None:
        self.run_id = record.run_id

        def job() -> None:
            self._connect()
            sync_record(self._cl, str(self._exp_id), run_dir, record)

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
