"""MLflow mirror of run records: owns what an MLflow run of an archbench run contains, and keeping it equal.

One MLflow run per archbench run, found by two tags: `archbench.sweep_key` (a hash of the resolved sweep
folder) and `archbench.run_id` (run name = run id). The same sweep run into two output folders therefore
keeps two sets of runs: neither folder ever deletes, replaces or merges the other's. The runs of one folder
are the children of one parent run (`archbench.role: sweep`, `mlflow.parentRunId` on each child).

A run's content is a pure function of its record and folder (`desired_state`): tags (sweep, folder, spec hash,
data fingerprint, archbench version, git commit; never an empty one), params (the flattened resolved spec),
per-epoch metrics with step = epoch, final metrics at step 0, the record, history and figures as artifacts
(with `log_models`, also the evaluated checkpoint as a PyTorch model: mlflow_model.py), and a status
mirroring the record's. `sync_record` makes MLflow equal to that, changing nothing when it already is (so a
second `archbench sync` is a no-op); the tag `archbench.record_sha256`, set last, says that MLflow holds
this exact record. The live tracker (mlflow_live.py) sends the same things while a run trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.config import MlflowSpec
from archbench.store.layout import CHECKPOINTS_DIR, RunLayout, SweepLayout
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
TAG_SWEEP_KEY = "archbench.sweep_key"
TAG_ROLE = "archbench.role"  # "sweep" on the parent run of a sweep folder
TAG_RECORD_SHA = "archbench.record_sha256"
# MLflow 3's UI opens an experiment on its GenAI overview unless the experiment says it holds model
# training: this is the tag (and the value) its own experiment-type selector writes. UIs from 3.5 on also
# have a workflow switch (kept in the browser) that overrides it: see the README.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def _configure_http(timeout_s: float) -> None:
    # MLflow retries a dead server with back-off for minutes by default: fail fast, the outbox remembers.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(timeout_s))))


def client(uri: str, timeout_s: float = 10.0) -> Any:
    _configure_http(timeout_s)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def describe(exc: BaseException) -> str:
    """An MLflow failure in one short line (the server is down, refused, timed out...)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    value = visible(obj) if isinstance(obj, str) else json.dumps(obj)  # json escapes controls itself
    out[prefix[:-1]] = value[:MAX_PARAM_LEN]
    return out


def sweep_key(sweep_root: Path) -> str:
    """The MLflow key of a sweep folder: its resolved path, hashed (a value safe in a search filter)."""
    return hashlib.sha256(str(sweep_root.resolve()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepTarget:
    """Where the runs of one sweep folder live in MLflow: client, experiment, folder, key and parent run."""

    cl: Any
    exp_id: str
    root: Path
    key: str
    parent_id: str
    log_models: bool = False


def open_sweep(
    cl: Any, experiment: str, sweep_root: Path, sweep_name: str, *, log_models: bool = False
) -> SweepTarget:
    """The experiment (created if missing) and the sweep folder's parent run (created if missing)."""
    exp_id = experiment_id(cl, experiment)
    root = sweep_root.resolve()
    key = sweep_key(root)
    return SweepTarget(cl, exp_id, root, key, _ensure_parent(cl, exp_id, root, key, sweep_name), log_models)


def _ensure_parent(cl: Any, exp_id: str, root: Path, key: str, sweep_name: str) -> str:
    """The one parent run of this sweep folder; a copy made by a process that raced us is deleted."""
    runs = cl.search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_SWEEP_KEY}` = '{key}' and tags.`{TAG_ROLE}` = 'sweep'",
        order_by=["attributes.start_time ASC"],
    )
    for extra in runs[1:]:
        cl.delete_run(extra.info.run_id)
    if runs:
        return str(runs[0].info.run_id)
    tags = {
        TAG_ROLE: "sweep",
        TAG_SWEEP_KEY: key,
        "archbench.sweep": visible(sweep_name),
        "archbench.sweep_dir": visible(root),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": visible(SweepLayout(root).sweep_file),
    }
    run = cl.create_run(exp_id, run_name=visible(f"{root.parent.name}/{root.name}"), tags=tags)
    cl.set_terminated(run.info.run_id, status="FINISHED")  # a folder of runs: its children carry the status
    return str(run.info.run_id)


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
    absent_tags: tuple[str, ...] = ()  # tags this record has no value for: removed when MLflow has them


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


def _run_tags(record: RunRecord, target: SweepTarget) -> dict[str, str]:
    """Every tag this module owns on a child run; an empty value means 'not set' (see desired_state)."""
    commit = str(record.code_version.get("git_commit") or "")
    return {
        TAG_RUN_ID: record.run_id,
        TAG_SWEEP_KEY: target.key,
        "archbench.sweep": visible(record.sweep),
        "archbench.sweep_dir": visible(target.root),
        "archbench.spec_hash": record.spec_hash,
        "archbench.data_fingerprint": record.data_fingerprint or "",
        "archbench.version": str(record.code_version.get("archbench") or ""),
        "archbench.git_commit": commit,
        "archbench.status": record.status,
        "archbench.failure_reason": visible(record.failure_reason or ""),
        "mlflow.runName": record.run_id,
        "mlflow.parentRunId": target.parent_id,
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": visible(SweepLayout(target.root).sweep_file),
        "mlflow.source.git.commit": commit.removesuffix("-dirty"),
    }


def record_sha256(run_dir: Path) -> str:
    """The sha256 of the run's record file ('' when there is none)."""
    record_file = RunLayout(run_dir).record
    return hashlib.sha256(record_file.read_bytes()).hexdigest() if record_file.is_file() else ""


def desired_state(run_dir: Path, record: RunRecord, target: SweepTarget) -> DesiredRun:
    """The MLflow run a record stands for (pure apart from reading the run's files)."""
    all_tags = _run_tags(record, target)
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
    return DesiredRun(
        run_id=record.run_id,
        tags={k: v for k, v in all_tags.items() if v},
        params=flatten(record.spec.identity()),
        series=series,
        status=STATUS[record.status],
        artifacts=_artifacts(run_dir),
        record_sha256=record_sha256(run_dir),
        absent_tags=tuple(k for k, v in all_tags.items() if not v),
    )


def artifact_root(uri: str) -> str | None:
    """For a `sqlite:///dir/x.db` store, keep artifacts beside it (dir/mlartifacts), not in the cwd."""
    if not uri.startswith("sqlite:///"):
        return None  # a server decides (its --artifacts-destination)
    db = Path(uri[len("sqlite:///") :])
    return (db.resolve().parent / "mlartifacts").as_uri()


def experiment_id(cl: Any, name: str) -> str:
    """The experiment's id (created, or restored when deleted); it is marked as model training, unless
    someone already chose its type."""
    name = visible(name)  # a sweep's name: shown in the MLflow UI, so never with raw control characters
    exp = cl.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            cl.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND[0] not in (exp.tags or {}):
            cl.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return str(exp.experiment_id)
    root = artifact_root(str(cl.tracking_uri))
    location = f"{root}/{slugify(name, max_len=64)}" if root else None
    try:
        return str(cl.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND])))
    except Exception:  # another worker created it first
        exp = cl.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def find_runs(target: SweepTarget, run_id: str) -> list[Any]:
    """The MLflow runs tagged with this run id in the experiment, of any folder (oldest first)."""
    runs = target.cl.search_runs(
        [target.exp_id],
        filter_string=f"tags.`{TAG_RUN_ID}` = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


def folder_runs(target: SweepTarget) -> dict[str, list[dict[str, str]]]:
    """The tags of every child run of this sweep folder, per archbench run id (one request per 1000 runs)."""
    out: dict[str, list[dict[str, str]]] = {}
    token = None
    while True:
        page = target.cl.search_runs(
            [target.exp_id],
            filter_string=f"tags.`{TAG_SWEEP_KEY}` = '{target.key}'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            tags = dict(run.data.tags)
            if TAG_RUN_ID in tags:
                out.setdefault(tags[TAG_RUN_ID], []).append(tags)
        token = page.token
        if not token:
            return out


def _create(target: SweepTarget, want: DesiredRun) -> Any:
    from mlflow.entities import Param

    cl = target.cl
    run = cl.create_run(target.exp_id, run_name=want.run_id, tags=want.tags)
    params = [Param(k, v) for k, v in want.params.items()]
    for i in range(0, len(params), 100):
        cl.log_batch(run.info.run_id, params=params[i : i + 100])
    return cl.get_run(run.info.run_id)


def ensure_run(target: SweepTarget, want: DesiredRun) -> tuple[Any, bool]:
    """The one MLflow run of this archbench run in this folder (extra copies of it deleted), created if
    missing. Runs of other folders are never touched. A run logged before runs had folder keys is adopted
    when it holds this very record (same record sha256); otherwise it is left alone."""
    runs = find_runs(target, want.run_id)
    ours = [r for r in runs if r.data.tags.get(TAG_SWEEP_KEY) == target.key]
    if not ours and want.record_sha256:
        ours = [
            r
            for r in runs
            if TAG_SWEEP_KEY not in r.data.tags and r.data.tags.get(TAG_RECORD_SHA) == want.record_sha256
        ][:1]
    for extra in ours[1:]:
        target.cl.delete_run(extra.info.run_id)
    if ours:
        return ours[0], False
    return _create(target, want), True


def log_metrics(cl: Any, mlflow_run_id: str, points: list[tuple[str, int, float]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, s) for k, s, v in points]
    for i in range(0, len(metrics), 500):
        cl.log_batch(mlflow_run_id, metrics=metrics[i : i + 500])


def _sync_params_and_tags(cl: Any, rid: str, run: Any, want: DesiredRun) -> bool:
    """Add the params MLflow lacks; set, change or remove tags to match. True when anything was written."""
    have_params = dict(run.data.params)
    missing = {k: v for k, v in want.params.items() if k not in have_params}
    if missing:
        from mlflow.entities import Param

        cl.log_batch(rid, params=[Param(k, v) for k, v in missing.items()])
    tags = dict(run.data.tags)
    changed = bool(missing)
    for k, v in want.tags.items():
        if tags.get(k) != v:
            cl.set_tag(rid, k, v)
            changed = True
    for k in want.absent_tags:
        if k in tags:
            cl.delete_tag(rid, k)
            changed = True
    return changed


def _metrics_todo(cl: Any, rid: str, want: DesiredRun) -> list[tuple[str, int, float]] | None:
    """The metric points MLflow lacks; None when it holds a point the record does not."""
    todo: list[tuple[str, int, float]] = []
    for key, points in want.series.items():
        have = {(m.step, m.value) for m in cl.get_metric_history(rid, key)}
        if have - set(points):
            return None
        todo.extend((key, s, v) for s, v in points if (s, v) not in have)
    return todo


def sync_record(target: SweepTarget, run_dir: Path, record: RunRecord) -> str:
    """Make MLflow equal to this record: 'created', 'updated' or 'unchanged' (nothing written)."""
    from archbench.tracking.mlflow_model import TAG_MODEL_SHA, log_model, model_checkpoint_sha

    cl = target.cl
    want = desired_state(run_dir, record, target)
    run, created = ensure_run(target, want)
    if any(k in run.data.params and run.data.params[k] != v for k, v in want.params.items()):
        # Params cannot be changed in MLflow: this folder's run, logged under another spec, is replaced.
        cl.delete_run(run.info.run_id)
        run, created = _create(target, want), True
    rid = run.info.run_id
    changed = _sync_params_and_tags(cl, rid, run, want) or created
    todo = _metrics_todo(cl, rid, want)
    if todo is None:
        # MLflow holds a point the record does not (e.g. an epoch from an attempt that was redone with other
        # numbers): history cannot be edited, so this folder's run starts again from the record.
        cl.delete_run(rid)
        sync_record(target, run_dir, record)
        return "created"
    if todo:
        log_metrics(cl, rid, todo)
        changed = True
    tags = dict(run.data.tags)
    if tags.get(TAG_RECORD_SHA) != want.record_sha256:
        for path, art_dir in want.artifacts:
            cl.log_artifact(rid, str(path), art_dir)
        changed = True
    model_sha = model_checkpoint_sha(record) if target.log_models else None
    if model_sha is not None and tags.get(TAG_MODEL_SHA) != model_sha:
        log_model(cl, rid, run_dir, record, model_sha)
        changed = True
    if cl.get_run(rid).info.status != want.status:
        if want.status == "RUNNING":
            cl.update_run(rid, status="RUNNING")
        else:
            cl.set_terminated(rid, status=want.status)
        changed = True
    if tags.get(TAG_RECORD_SHA) != want.record_sha256:
        cl.set_tag(rid, TAG_RECORD_SHA, want.record_sha256)  # last: MLflow now holds this exact record
    if created:
        return "created"
    return "updated" if changed else "unchanged"


def holds_record(
    tags: list[dict[str, str]] | None, run_dir: Path, record: RunRecord, log_models: bool
) -> bool:
    """Does MLflow (the tags of this run's MLflow copies in its folder) hold this exact record, and its model
    when models are logged?"""
    from archbench.tracking.mlflow_model import TAG_MODEL_SHA, model_checkpoint_sha

    if not tags or len(tags) != 1:
        return False  # missing, or copies to clean up
    if tags[0].get(TAG_RECORD_SHA) != record_sha256(run_dir):
        return False
    model_sha = model_checkpoint_sha(record) if log_models else None
    return model_sha is None or tags[0].get(TAG_MODEL_SHA) == model_sha


@dataclass
class CatchUp:
    """What `catch_up` did: the runs it sent, those it could not send and the first error, or that MLflow
    could not be reached at all."""

    sent: list[str] = field(default_factory=list)
    not_sent: list[str] = field(default_factory=list)
    first_error: str | None = None
    unreachable: bool = False


def catch_up(spec: MlflowSpec, experiment: str, sweep_root: Path, sweep_name: str) -> CatchUp:
    """Before a sweep runs: send MLflow what it has not seen of the sweep folder (outbox and records).

    A final record can be missing from MLflow, or stale there: the server was down (the outbox lists the
    run), or the process died after writing the record and before MLflow heard of it (SIGKILL, a lost node).
    One search asks which record (sha256) MLflow holds for each run of this folder; every record it lacks
    or holds another version of is synced, and every run in the outbox. Records of runs still running are
    left to the process that runs them. Stops at the first failure (the caller prints the `sync` command)."""
    from archbench.store.results import iter_records

    records = [(d, r) for d, r, _ in iter_records(sweep_root) if r is not None and r.status != "running"]
    try:
        target = open_sweep(
            client(spec.uri, spec.timeout_s), experiment, sweep_root, sweep_name, log_models=spec.log_models
        )
        seen = folder_runs(target)
    except Exception as exc:
        return CatchUp(first_error=describe(exc), unreachable=True)
    behind = {e["run_id"] for e in outbox.entries(sweep_root)}
    todo = [
        (d, r)
        for d, r in records
        if r.run_id in behind or not holds_record(seen.get(r.run_id), d, r, spec.log_models)
    ]
    out = CatchUp()
    for i, (run_dir, rec) in enumerate(todo):
        try:
            if sync_record(target, run_dir, rec) != "unchanged":
                out.sent.append(rec.run_id)
        except Exception as exc:
            out.first_error = f"{rec.run_id}: {describe(exc)}"
            out.not_sent = [r.run_id for _, r in todo[i:]]
            return out
    outbox.clear(sweep_root)
    return out
