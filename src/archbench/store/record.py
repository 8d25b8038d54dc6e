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
from archbench.store.layout import INDEX_NAME, RECORD_NAME, RunLayout
from archbench.util.errors import ArchbenchError
from archbench.util.paths import atomic_write_text

# 1: the first format. 2: typed stage blocks, the `map` stage's folder is stages/map (was stages/maps),
#    `migrations` lists the upgrades a record went through.
SCHEMA_VERSION = 2
Status = Literal["running", "completed", "failed", "killed", "pruned"]  # pruned: tuning trials


class EpochStats(BaseModel):
    model_config = ConfigDict(extra="allow")

    epoch: int = Field(description="1-based epoch number")
    step: int = Field(description="global optimizer-batch count at the end of this epoch")
    train_loss: float = Field(description="mean training loss of the epoch")
    train_acc: float = Field(description="training accuracy of the epoch (augmented batches), a fraction")
    val_loss: float = Field(description="validation loss after the epoch")
    val_acc: float = Field(description="validation accuracy after the epoch, a fraction")
    lr: float = Field(description="learning rate at the end of the epoch")
    seconds: float = Field(description="training seconds of the epoch (compile time excluded)")
    images_per_s: float = Field(description="training images per second over the epoch")


class Metrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    top1: float = Field(description="test accuracy as a fraction")
    top5: float | None = Field(None, description="top-5 accuracy (null with fewer than 6 classes)")
    loss: float = Field(description="test cross-entropy, computed in float64 from the logits")
    precision_macro: float = Field(description="unweighted mean of the per-class precisions")
    recall_macro: float = Field(description="unweighted mean of the per-class recalls")
    f1_macro: float = Field(description="unweighted mean of the per-class F1 scores")
    precision_weighted: float = Field(description="per-class precision weighted by class support")
    recall_weighted: float = Field(description="per-class recall weighted by class support")
    f1_weighted: float = Field(description="per-class F1 weighted by class support")
    kappa: float = Field(description="Cohen's kappa")
    per_class_accuracy: list[float | None] = Field(description="accuracy per class (null: class absent)")
    confusion_matrix: list[list[int]] = Field(description="counts, rows true class, columns predicted")
    n_test: int = Field(description="test examples evaluated")
    checkpoint: str = Field(description="which checkpoint was evaluated: best or last")


class DistributedBlock(BaseModel):
    """How a data-parallel run trained (engine/ddp.py); absent for a run on one process."""

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


def _opt(description: str) -> Any:
    """An optional stage-block field (None until the stage sets it), with what it holds."""
    return Field(None, description=description)


class ProfileHeadline(StageBlock):
    """The profile numbers copied from the run's own resolution to the top of its block (what `ls` shows)."""

    params_total: int | None = _opt("parameters")
    params_trainable: int | None = _opt("parameters that train (not frozen)")
    flops: float | None = _opt("FLOPs per image (2 per multiply-add), batch 1")
    macs: float | None = _opt("multiply-adds per image")
    gmacs: float | None = _opt("macs / 1e9")
    gflops: float | None = _opt("flops / 1e9")
    latency_ms_p50: float | None = _opt("median latency at batch 1 (ms)")
    latency_ms_p90: float | None = _opt("90th-percentile latency at batch 1 (ms)")
    throughput_img_s: float | None = _opt("inference images/s at the largest batch")
    train_step_ms: float | None = _opt("one training step at the largest batch (ms)")
    train_throughput_img_s: float | None = _opt("training images/s at the largest batch")
    peak_memory_mb: float | None = _opt("peak memory (CUDA allocator, or a CPU subprocess's RSS), MB")


PROFILE_HEADLINE_KEYS = tuple(k for k in ProfileHeadline.model_fields if k not in StageBlock.model_fields)
# The few of them a results table (`archbench ls`, results.csv) shows.
PROFILE_SUMMARY_KEYS = ("gmacs", "latency_ms_p50", "throughput_img_s", "peak_memory_mb")


class ProfileBlock(ProfileHeadline):
    resolution: int | list[int] | None = _opt("the run's own input size (px)")
    per_resolution: list[dict[str, Any]] = Field(
        default_factory=list, description="the same measurements for every profiled resolution"
    )
    training: dict[str, Any] | None = _opt("the run's own training cost: wall time, images/s, time to best")
    amp: str | None = _opt("autocast used while measuring")
    channels_last: bool | None = _opt("memory format used while measuring")
    settings: dict[str, Any] | None = _opt("the profile: settings measured with")
    summary_error: str | None = _opt("why the sweep-level summary could not be written")


class ExplainBlock(StageBlock):
    selection: dict[str, Any] | None = _opt("which test images were explained (shared by every run)")
    target: str | None = _opt("the class each heatmap explains (the prediction)")
    input_size: list[int] | None = _opt("input size of the explained images")
    seconds: float | None = _opt("time spent explaining")
    methods_run: list[str] = Field(default_factory=list, description="methods that produced heatmaps")
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per method: its details")
    skipped: dict[str, Any] = Field(default_factory=dict, description="method -> why it was skipped")
    errors: dict[str, Any] = Field(default_factory=dict, description="method -> the error it raised")
    paths: dict[str, str] | None = _opt("files written (heatmaps.npz), relative to the run folder")
    error_analysis: dict[str, Any] | None = _opt("per-class accuracy, confused pairs, calibration")
    figures_error: str | None = _opt("why the sweep's figures could not be drawn")


class MapBlock(StageBlock):
    scene: dict[str, Any] | None = _opt("the scene mapped: name, file, grid")
    map_path: str | None = _opt("the map GeoTIFF")
    map_file: str | None = _opt("its file name in the map folder")
    checkpoint: str | None = _opt("which checkpoint mapped it")
    checkpoint_sha256: str | None = _opt("sha256 of that checkpoint")
    class_values: list[int] | None = _opt("raster value of each class")
    class_names: list[str] | None = _opt("class names in output order")
    scores: dict[str, Any] = Field(
        default_factory=dict, description="per scored subset: OA, kappa, per-class F1, confusion matrix"
    )
    prediction: dict[str, Any] | None = _opt("how it was predicted: windows, pixels/s")
    baselines: dict[str, Any] | None = _opt("the Random-Forest baseline's scores (map.rf)")
    created_at: str | None = _opt("ISO 8601 time the map was written")


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
        path = folder / INDEX_NAME
        atomic_write_text(path, self.model_dump_json(indent=2, exclude_none=True))
        return path


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(SCHEMA_VERSION, description="record format version (older ones migrate)")
    run_id: str = Field(description="readable slug of the grid values + 10 hex digits of the spec hash")
    sweep: str = Field(description="the sweep's name")
    status: Status = Field(description="running, completed, failed, killed, or pruned (tuning trials)")
    spec: RunSpec = Field(description="the fully resolved configuration the run trained with")
    spec_hash: str = Field(description="sha256 of the spec's identity (RunSpec.identity)")
    axes: dict[str, Any] = Field(default_factory=dict, description="the grid values of this run")
    seed: int = Field(description="the run's seed")
    failure_reason: str | None = Field(None, description="why the run failed: non_finite_loss@17, oom, …")
    failure_detail: str | None = Field(None, description="the error message behind the reason")
    data: dict[str, Any] | None = Field(None, description="dataset summary incl. fingerprint and class names")
    data_fingerprint: str | None = Field(None, description="sha256 over every split's pixels and labels")
    class_names: list[str] | None = Field(None, description="class names in output order")
    code_version: dict[str, Any] = Field(default_factory=dict, description="archbench version, git commit")
    libraries: dict[str, str] = Field(default_factory=dict, description="versions of torch, numpy, …")
    device: dict[str, Any] = Field(default_factory=dict, description="device, threads, precision as resolved")
    host: dict[str, Any] = Field(default_factory=dict, description="hostname, platform (and Ray node)")
    started_at: str | None = Field(None, description="ISO 8601 time the run (first) started")
    ended_at: str | None = Field(None, description="ISO 8601 time the run ended")
    train_seconds: float | None = Field(None, description="seconds spent in the training loops")
    resumes: int = Field(0, description="how many times the run resumed from a checkpoint")
    events: list[dict[str, Any]] = Field(default_factory=list, description="resumes, set-asides, retries")
    history: list[EpochStats] = Field(default_factory=list, description="one entry per finished epoch")
    best: dict[str, Any] | None = Field(
        None, description="the epoch whose weights are best.pt, and its metric"
    )
    metrics: Metrics | None = Field(None, description="test metrics of the evaluated checkpoint")
    params: dict[str, int] | None = Field(None, description="total and trainable parameter counts")
    model_build: dict[str, Any] = Field(
        default_factory=dict,
        description="how the network was built for this run's input: a ViT's input_size, native_input_size, "
        "patch_grid, pos_embed_interpolated; for pretrained first convs on named or non-RGB bands, "
        "input_bands (band -> pretrained channel or 'mean RGB'), input_bands_from, input_conv_scale",
    )
    distributed: DistributedBlock | None = Field(
        None, description="data-parallel training: backend, world size, global and per-rank batch, lr rule"
    )
    checkpoint_sha256: str | None = Field(None, description="sha256 of the evaluated checkpoint")
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
    path = RunLayout(run_dir).record
    if record.status == "completed" and faults.active("kill@record_write"):
        # Leave half a temp file behind, then die: the canonical record must stay absent or complete.
        path.with_name(f".{path.name}.tmp-{os.getpid()}").write_text(text[: len(text) // 2])
        faults.die()
    atomic_write_text(path, text)


def read_record(run_dir: Path) -> RunRecord | None:
    """The run's record if it exists, migrates, validates, and its spec hash is its own; otherwise None."""
    path = RunLayout(run_dir).record
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
    from archbench.store.lock import file_lock

    stage_block(name, block)  # a malformed block fails here, before the record is touched
    with file_lock(RunLayout(run_dir).record_lock):
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
