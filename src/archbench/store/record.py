"""The run record: the versioned contract between stages. Owns its schema, its migrations, atomic writing,
trusted reading, the typed stage blocks and `update_stage`; never trains or measures.

Every later stage (ls, report, profile, explain, map) reads records through `read_record`; none reads
live objects. A record is trusted only if it validates and its `spec_hash` matches its own `spec`.
A record written by an older schema is migrated on read (`migrate`), never distrusted for its age:
a completed v1 run is skipped by the next sweep, not retrained.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from archbench.config import RunSpec, spec_hash
from archbench.store.layout import RECORD_NAME, RunLayout
from archbench.util.errors import ArchbenchError
from archbench.util.paths import atomic_write_text

# 1: the first format. 2: typed stage blocks, the `map` stage's folder is stages/map (was stages/maps),
#    `migrations` lists the upgrades a record went through.
SCHEMA_VERSION = 2
Status = Literal["running", "completed", "failed", "killed", "pruned"]  # pruned: tuning trials


class EpochStats(BaseModel):
    model_config = ConfigDict(extra="allow")

    epoch: int
    step: int = Field(description="global optimizer-batch count at the end of this epoch")
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float


class Metrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    top1: float = Field(description="test accuracy as a fraction")
    top5: float | None = None
    loss: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    kappa: float
    per_class_accuracy: list[float | None]
    confusion_matrix: list[list[int]]
    n_test: int
    checkpoint: str = Field(description="which checkpoint was evaluated: best or last")


class DistributedBlock(BaseModel):
    """How a data-parallel run trained (distributed.py); absent for a run on one process."""

    model_config = ConfigDict(extra="allow")

    backend: str = Field(description="nccl (one GPU per process) or gloo (CPU processes)")
    world_size: int = Field(description="processes (DDP ranks) of the attempt that finished the run")
    devices: list[str] = Field(default_factory=list, description="each rank's device, rank 0 first")
    global_batch: int = Field(description="rows per optimizer batch over all ranks (train.batch_size)")
    per_rank_batch: int = Field(description="the most rows one rank takes of a global batch")
    lr: float = Field(description="the learning rate used (train.lr)")
    lr_scaling: str = Field(description="how the lr was scaled for the number of processes")
    data_split: str = Field(description="how each global batch is divided between the ranks")
    gradients: str | None = Field(None, description="how the ranks' gradients are combined")
    validation: str | None = Field(None, description="which rank validates and tests")
    timeout_s: float | None = Field(None, description="the longest a rank waits for the others")


# --- stage blocks: what each post-training stage adds under `record.stages[<name>]` ----------------------


class StageBlock(BaseModel):
    """Any stage's block. Tolerant (`extra="allow"`): a stage may add keys; a failed stage is {error}."""

    model_config = ConfigDict(extra="allow")

    error: str | None = Field(None, description="why the stage failed for this run (it is retried)")


# The profile keys copied from the run's own resolution to the top of its block (what `ls` shows).
PROFILE_HEADLINE_KEYS = (
    "params_total",
    "params_trainable",
    "flops",
    "macs",
    "gmacs",
    "gflops",
    "latency_ms_p50",
    "latency_ms_p90",
    "throughput_img_s",
    "train_step_ms",
    "train_throughput_img_s",
    "peak_memory_mb",
)
# The few of them a results table (`archbench ls`, results.csv) shows.
PROFILE_SUMMARY_KEYS = ("gmacs", "latency_ms_p50", "throughput_img_s", "peak_memory_mb")


class ProfileBlock(StageBlock):
    resolution: int | list[int] | None = None
    params_total: int | None = None
    params_trainable: int | None = None
    flops: float | None = None
    macs: float | None = None
    gmacs: float | None = None
    gflops: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    throughput_img_s: float | None = None
    train_step_ms: float | None = None
    train_throughput_img_s: float | None = None
    peak_memory_mb: float | None = None
    per_resolution: list[dict[str, Any]] = Field(default_factory=list)
    training: dict[str, Any] | None = None
    amp: str | None = None
    channels_last: bool | None = None
    settings: dict[str, Any] | None = None
    summary_error: str | None = None


class ExplainBlock(StageBlock):
    selection: dict[str, Any] | None = None
    target: str | None = None
    input_size: list[int] | None = None
    seconds: float | None = None
    methods_run: list[str] = Field(default_factory=list)
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    skipped: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, Any] = Field(default_factory=dict)
    paths: dict[str, str] | None = None
    error_analysis: dict[str, Any] | None = None
    figures_error: str | None = None


class MapBlock(StageBlock):
    scene: dict[str, Any] | None = None
    map_path: str | None = None
    map_file: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    class_values: list[int] | None = None
    class_names: list[str] | None = None
    scores: dict[str, Any] = Field(default_factory=dict)
    prediction: dict[str, Any] | None = None
    baselines: dict[str, Any] | None = None
    created_at: str | None = None


STAGE_BLOCKS: dict[str, type[StageBlock]] = {
    "profile": ProfileBlock,
    "explain": ExplainBlock,
    "map": MapBlock,
}


def stage_block(name: str, block: dict[str, Any]) -> StageBlock:
    """`block` validated as stage `name`'s block (unknown stages get the tolerant base model)."""
    return STAGE_BLOCKS.get(name, StageBlock).model_validate(block)


class StageIndex(BaseModel):
    """`<sweep>/stages/<name>/index.json`: what the report embeds for a stage (paths relative to it)."""

    model_config = ConfigDict(extra="allow")

    class Figure(BaseModel):
        model_config = ConfigDict(extra="allow")
        path: str
        caption: str = ""

    class Column(BaseModel):
        """How the report shows one CSV column: its header with the unit, the factor the raw value is
        multiplied by (100: a fraction shown in %), the decimals. The CSV keeps the raw values."""

        model_config = ConfigDict(extra="allow")
        label: str | None = None
        scale: float = 1.0
        digits: int | None = Field(None, ge=0, le=12)

    class Table(BaseModel):
        model_config = ConfigDict(extra="allow")
        title: str = ""
        csv: str
        columns: dict[str, StageIndex.Column] | None = None

    title: str
    figures: list[Figure] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def write(self, folder: Path) -> Path:
        """Atomically write `folder/index.json`; returns its path."""
        from archbench.store.layout import INDEX_NAME

        path = folder / INDEX_NAME
        atomic_write_text(path, self.model_dump_json(indent=2, exclude_none=True))
        return path


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    sweep: str
    status: Status
    spec: RunSpec
    spec_hash: str
    axes: dict[str, Any] = Field(default_factory=dict)
    seed: int
    failure_reason: str | None = None
    failure_detail: str | None = None
    data: dict[str, Any] | None = Field(None, description="dataset summary incl. fingerprint and class names")
    data_fingerprint: str | None = None
    class_names: list[str] | None = None
    code_version: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)
    device: dict[str, Any] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    train_seconds: float | None = None
    resumes: int = 0
    events: list[dict[str, Any]] = Field(default_factory=list)
    history: list[EpochStats] = Field(default_factory=list)
    best: dict[str, Any] | None = None
    metrics: Metrics | None = None
    params: dict[str, int] | None = None
    model_build: dict[str, Any] = Field(
        default_factory=dict,
        description="how the network was built for this run's input: a ViT's input_size, native_input_size, "
        "patch_grid, pos_embed_interpolated (empty for models that take any size)",
    )
    distributed: DistributedBlock | None = Field(
        None, description="data-parallel training: backend, world size, global and per-rank batch, lr rule"
    )
    checkpoint_sha256: str | None = None
    artifacts: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of every file the record vouches for, by path relative to the run folder "
        "(checkpoints/best.pt, checkpoints/last.pt, predictions.npz, history.csv); `archbench verify`",
    )
    reproduce: dict[str, Any] | None = Field(
        None,
        description="how `archbench verify --deep` must match when it re-evaluates the checkpoint: "
        "{compare: bitwise, threads} (CPU, deterministic) or {compare: allclose, atol, rtol, device}",
    )
    warnings: int = Field(0, description="library warnings during the run, one line each in warnings.log")
    stages: dict[str, Any] = Field(
        default_factory=dict, description="blocks added by later stages: profile, explain, map"
    )
    tune: dict[str, Any] | None = Field(
        None, description="tuning tags: role (trial | final), study, trial number, params (see tune/)"
    )
    migrations: list[dict[str, Any]] = Field(
        default_factory=list, description="schema upgrades applied on read: {from, to}"
    )
    _migrated_from: int | None = PrivateAttr(default=None)

    # Blocks are validated against their stage's model when written (`update_stage`), not when read: a block
    # that an older stage wrote in another shape must never make the run untrusted (and retrained).

    def stage(self, name: str) -> StageBlock | None:
        """The typed block of stage `name`, or None if the stage has not run on this record."""
        block = self.stages.get(name)
        return stage_block(name, block) if isinstance(block, dict) else None

    @property
    def migrated_from(self) -> int | None:
        """The schema version this record was read from when `read_record` migrated it, else None."""
        return self._migrated_from


# --- migrations: one function per step, from every older version ---------------------------------------


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    stages = dict(out.get("stages") or {})
    if "maps" in stages and "map" not in stages:  # one name per stage: the record key is `map`
        stages["map"] = stages.pop("maps")
    out["stages"] = stages
    return out


MIGRATIONS: dict[int, Any] = {1: _v1_to_v2}


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw record dict of any older schema version brought to `SCHEMA_VERSION` (pure; raises ValueError
    for a version newer than this code or unknown)."""
    version = raw.get("schema_version", 1)
    if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
        raise ValueError(f"record schema_version {version!r}: this archbench reads 1..{SCHEMA_VERSION}")
    out = dict(raw)
    while version < SCHEMA_VERSION:
        out = MIGRATIONS[version](out)
        out["migrations"] = [*out.get("migrations", []), {"from": version, "to": version + 1}]
        version += 1
        out["schema_version"] = version
    return out


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_record(run_dir: Path, record: RunRecord) -> None:
    from archbench.util import faults

    text = record.model_dump_json(indent=2)
    if record.status == "completed" and faults.active("kill@record_write"):
        # Leave half a temp file behind, then die: the canonical record must stay absent or complete.
        (run_dir / f".{RECORD_NAME}.tmp-{os.getpid()}").write_text(text[: len(text) // 2])
        faults.die()
    atomic_write_text(run_dir / RECORD_NAME, text)


def read_record(run_dir: Path) -> RunRecord | None:
    """The run's record if it exists, migrates, validates, and its spec hash is its own; otherwise None."""
    path = run_dir / RECORD_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            return None
        version = raw.get("schema_version", 1)
        rec = RunRecord.model_validate(migrate(raw))
    except (OSError, ValueError, ValidationError):
        return None
    if rec.spec_hash != spec_hash(rec.spec):
        return None
    if version != SCHEMA_VERSION:
        rec._migrated_from = int(version)
    return rec


def update_stage(run_dir: Path, name: str, block: dict[str, Any]) -> RunRecord:
    """Store `block` as `record.stages[name]`: lock the record, re-read it, merge, write atomically.

    Every stage writes its block through here, so two writers (a sweep's stage and `archbench explain`)
    never lose each other's blocks. Raises ArchbenchError when the run has no valid record.
    """
    from archbench.store.lock import record_lock

    stage_block(name, block)  # a malformed block fails here, before the record is touched
    with record_lock(RunLayout(run_dir).record_lock):
        rec = read_record(run_dir)
        if rec is None:
            raise ArchbenchError(f"{run_dir}: no valid {RECORD_NAME} to add the {name} block to")
        rec = rec.model_copy(update={"stages": {**rec.stages, name: block}})
        write_record(run_dir, rec)
    return rec


def is_completed(run_dir: Path, expected_hash: str | None = None) -> bool:
    rec = read_record(run_dir)
    if rec is None or rec.status != "completed":
        return False
    return expected_hash is None or rec.spec_hash == expected_hash


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def code_version() -> dict[str, Any]:
    from archbench import __version__

    return {"archbench": __version__, "git_commit": git_commit()}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "timm", "numpy", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def host_info() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
