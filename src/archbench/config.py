"""The sweep file's schema (pydantic, extra='forbid'): owns what a valid config is, never how it runs.

A `SweepConfig` is what the YAML says, with its relative input paths resolved (sweep/paths.py);
`RunSpec` is one fully resolved configuration (defaults filled in). Every field here is part of a run's
identity except `name`, `output_dir`, where the data lives (`data.memory_budget`, `data.cache_dir`) and how
often a run reports and checkpoints (`train.log_every`, `train.checkpoint`); a path is hashed as it was
written, not as it resolved (`RunSpec.written_paths`); see `RunSpec.identity`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

SEED_MAX = 2**63 - 1  # seeds go into torch/numpy generators as signed 64-bit integers
DEFAULT_MAX_RUNS = 100_000


class _Strict(BaseModel):
    # inf/nan are refused in every float field (they would be stored as null and break the record).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AugmentSpec(_Strict):
    """Batched, on-device augmentation of the training split (never applied to val/test)."""

    crop_padding: int = Field(0, ge=0, le=64, description="random crop after zero-padding by this many px")
    hflip: bool = Field(False, description="random horizontal flip with probability 0.5")


class DataSpec(_Strict):
    kind: str = Field("digits", description="dataset family, looked up in the dataset registry")
    root: str | None = Field(
        None,
        description="folder holding the dataset files (not needed for digits); relative to the sweep file",
    )
    resolution: int | None = Field(None, ge=4, le=4096, description="square input size; null keeps native")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.9, description="stratified share of train kept for val")
    test_fraction: float = Field(
        0.2, gt=0.0, lt=0.9, description="stratified share held out as test when there is no test split"
    )
    limit_per_class: int | None = Field(None, ge=1, description="use at most this many train images/class")
    test_limit_per_class: int | None = Field(
        None, ge=1, description="evaluate on at most this many test images/class (quick looks only)"
    )
    split_seed: int = Field(
        0, ge=0, le=SEED_MAX, description="seed of the val/test split (fixed across run seeds)"
    )
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    on_bad_file: Literal["fail", "skip"] = Field("fail", description="undecodable images: fail or skip")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="images larger than this are refused (decompression bombs)"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword options of the dataset kind (see its docstring)"
    )
    memory_budget: int | str | None = Field(
        None,
        description="bytes the dataset may hold in memory (e.g. 8GB, 512MiB); beyond it batches are "
        "streamed from the prepared-data cache. null: half the available host (and device) memory",
    )
    cache_dir: str | None = Field(
        None, description="prepared-data cache folder; null: $ARCHBENCH_CACHE or ~/.cache/archbench/data"
    )

    @field_validator("memory_budget")
    @classmethod
    def _budget_parses(cls, v: int | str | None) -> int | str | None:
        if v is not None:
            parse_bytes(v)
        return v


_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(v: int | str) -> int:
    """`123`, `"512MB"`, `"1.5GiB"` → bytes (ValueError with what is accepted otherwise)."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v <= 0:
            raise ValueError(f"expected a positive number of bytes, got {v}")
        return v
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(v))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"expected bytes such as 2000000000, '8GB' or '512MiB', got {v!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


# Where the data lives, not what it is: left out of a run's identity (its id and spec hash).
NON_IDENTITY_DATA_KEYS = frozenset({"memory_budget", "cache_dir"})
# How often a run reports and checkpoints, not what it computes: also left out.
NON_IDENTITY_TRAIN_KEYS = frozenset({"log_every", "checkpoint"})
# Keys added after records existed, left out of the identity while at these values, so a record written
# before them (which lacks them) keeps its spec hash.
LATER_TRAIN_KEYS = {"compile": False}
# `deterministic: auto` replaced the default `true` and computes the same wherever records were made (CPU);
# on CUDA it trades bitwise repeatability for autotuned kernels, which no run id ever pinned (`device: auto`
# spans devices too). So `auto` is hashed as `true`: a sweep re-run after the change skips its old runs.
IDENTITY_ALIASES = {("train", "deterministic", "auto"): True}


class ModelSpec(_Strict):
    name: str = Field("tiny_cnn", description="registry name, or timm:NAME for any timm model")
    pool: Literal["avg", "max"] = "avg"
    stem: Literal["imagenet", "cifar"] = Field(
        "imagenet", description="cifar: 3x3 stride-1 stem, no max-pool"
    )
    freeze: int = Field(0, ge=0, description="number of early stages whose weights are frozen")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    pretrained: str | None = Field(
        None, description="null, a local weights file (relative to the sweep file), or 'imagenet'"
    )


class CheckpointSpec(_Strict):
    """When a run writes `last.pt` (and `best.pt` when it improved); always also at its end and on
    SIGTERM/SIGINT. Resume is exact from any of them."""

    every_epochs: int = Field(1, ge=1, description="at the end of every N-th epoch")
    every_minutes: float | None = Field(
        None, gt=0, description="also at the first step boundary this many minutes after the last one"
    )


class TrainSpec(_Strict):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["none", "step", "cosine", "onecycle"] = "cosine"
    warmup_epochs: float = Field(
        0.0, ge=0.0, description="linear warm-up; capped at half the run when epochs is smaller"
    )
    step_size: int = Field(30, ge=1, description="epochs between lr drops (schedule: step)")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    grad_accum: int = Field(1, ge=1, description="optimizer step every this many batches")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global grad norm to this value")
    amp: Literal["auto", "on", "off"] = Field("auto", description="auto: bf16 on CUDA, off on CPU")
    channels_last: Literal["auto", "on", "off"] = Field("auto", description="auto: on for CUDA conv nets")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: Literal["auto"] | bool = Field(
        "auto",
        description="auto: deterministic (bitwise) on CPU, cuDNN autotuning on CUDA; true: deterministic "
        "algorithms everywhere; false: never",
    )
    compile: bool = Field(False, description="torch.compile the model for training (compile time kept apart)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null leaves torch's default")
    best_metric: Literal["val_acc", "val_loss"] = "val_acc"
    log_every: int = Field(
        50, ge=1, description="steps between reads of the running loss/accuracy (the only device syncs)"
    )
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)


class EvalSpec(_Strict):
    batch_size: int = Field(256, ge=1)
    checkpoint: Literal["best", "last"] = "best"


class WrittenPath(_Strict):
    """A relative path as the sweep file (or `--set`) wrote it, and the path it resolved to."""

    written: str
    resolved: str


class RunSpec(_Strict):
    """One fully resolved configuration: what a run trains and how."""

    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    written_paths: dict[str, WrittenPath] = Field(
        default_factory=dict,
        description="dotted key -> each relative path of this spec as written; not part of the identity",
    )

    def identity(self) -> dict[str, Any]:
        """The canonical content that defines a run (hashed into its id). A path is hashed as it was
        written (relative to its sweep file, or to where `--set` gave it): where a sweep runs from never
        changes a run's id, and a sweep run from its own folder keeps the ids it had when paths resolved
        against the working directory."""
        out = self.model_dump(mode="json")
        for key, path in out.pop("written_paths").items():
            *sections, leaf = key.split(".")
            node: Any = out
            for part in sections:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get(leaf) == path["resolved"]:
                node[leaf] = path["written"]
        for key in NON_IDENTITY_DATA_KEYS:
            out["data"].pop(key, None)
        for key in NON_IDENTITY_TRAIN_KEYS:
            out["train"].pop(key, None)
        for key, value in LATER_TRAIN_KEYS.items():
            if key in out["train"] and out["train"][key] == value:
                del out["train"][key]
        for (section, key, alias), value in IDENTITY_ALIASES.items():
            if out[section].get(key) == alias:
                out[section][key] = value
        return out


def canonical_json(obj: Any) -> str:
    """The one serialisation that identities are hashed from (sorted keys, no spaces, ASCII)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def spec_hash(spec: RunSpec) -> str:
    """A run's identity: sha256 of its resolved spec (`RunSpec.identity`), as stored in its record."""
    return hashlib.sha256(canonical_json(spec.identity()).encode()).hexdigest()


STAGE_DEVICE = "null: the device the run trained on (archbench.stages.base owns the rule)"


class ProfileSpec(_Strict):
    """`profile:` in a sweep file: measure every completed run (record block `stages.profile`)."""

    enabled: bool = True
    resolutions: list[int] | None = Field(None, description="null: the run's own resolution")
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 64], description="latency at the first, throughput at the last"
    )
    warmup: int = Field(3, ge=0)
    iters: int = Field(10, ge=1)
    memory: bool = Field(True, description="peak memory (CUDA allocator, or a CPU subprocess's peak RSS)")
    train_step: bool = Field(True, description="also time a training step")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description=STAGE_DEVICE)


ExplainMethod = Literal["gradcam", "ig", "saliency", "attention"]
_DEFAULT_METHODS: tuple[ExplainMethod, ...] = ("gradcam", "ig", "saliency")


class ExplainSpec(_Strict):
    """`explain:` in a sweep file: explanations on the same test images for every model."""

    enabled: bool = True
    methods: list[ExplainMethod] = Field(default_factory=lambda: list(_DEFAULT_METHODS))
    images: int = Field(8, ge=1, le=256)
    select: Literal["mistakes", "correct", "random", "per-class"] = "random"
    seed: int = Field(0, ge=0, le=SEED_MAX)


class ResourcesSpec(_Strict):
    """What one run asks the executor for (Ray: `num_cpus`/`num_gpus` of its task; fractions share a GPU),
    and how many data-parallel processes it trains with (see distributed.py)."""

    cpu: float | None = Field(
        None, gt=0, description="CPUs per run; null: train.threads (else 1) times the run's processes"
    )
    gpu: float | None = Field(
        None, ge=0, description="GPUs per run (0.25 lets four small runs share one); null: 1 on a GPU cluster"
    )
    processes: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="data-parallel processes (DDP ranks) of one run: one per GPU on CUDA (NCCL), or CPU "
        "processes (gloo); null: gpu when gpu is a whole number above 1, else 1",
    )
    timeout_s: float = Field(
        1800.0,
        gt=0,
        le=86_400,
        description="the longest a rank waits for the others (rank 0 validates alone) before the run fails",
    )

    @model_validator(mode="after")
    def _processes_fit_gpus(self) -> ResourcesSpec:
        gpu, n = self.gpu, self.processes
        if n is None or n == 1 or gpu is None or gpu == 0:
            return self
        if not float(gpu).is_integer():
            raise ValueError(
                f"processes: {n} needs whole GPUs (one per process); found gpu: {gpu}. Use gpu: {n}, "
                "or processes: 1 to share a GPU"
            )
        if n > gpu:
            raise ValueError(
                f"processes: {n} is more than gpu: {int(gpu)}; each process trains on a GPU of its own "
                f"(use gpu: {n}, or leave gpu unset for CPU processes)"
            )
        return self

    @property
    def world_size(self) -> int:
        """Data-parallel processes per run (the default rule of `processes`)."""
        if self.processes is not None:
            return self.processes
        gpu = self.gpu or 0
        return int(gpu) if float(gpu).is_integer() and gpu > 1 else 1


class ExecutorSpec(_Strict):
    """`executor:` in a sweep file: where runs execute. Not part of any run's identity."""

    kind: Literal["local", "ray"] = Field("local", description="local: one run at a time in this process")
    address: str | None = Field(
        None, description="ray: null starts a local Ray sized to this machine; 'auto' or HOST:PORT joins one"
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_retries: int = Field(
        2, ge=0, le=100, description="ray: re-runs of a run whose worker or node died (resumes from `last`)"
    )


class TuneParam(_Strict):
    """One dimension of a `tune.space`: a distribution over the value of a dotted run-spec key."""

    type: Literal["loguniform", "uniform", "int", "categorical"]
    low: float | None = Field(None, description="lower bound (loguniform, uniform, int)")
    high: float | None = Field(None, description="upper bound, inclusive (loguniform, uniform, int)")
    choices: list[str | int | float | bool | None] | None = Field(None, description="categorical values")

    @model_validator(mode="after")
    def _bounds(self) -> TuneParam:
        if self.type == "categorical":
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("type categorical takes a non-empty `choices` list and no low/high")
            return self
        if self.choices is not None or self.low is None or self.high is None:
            raise ValueError(f"type {self.type} takes `low` and `high` (and no choices)")
        if not self.low < self.high:
            raise ValueError(f"low must be below high; found low={self.low}, high={self.high}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0; found low={self.low}")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"type int needs whole-number bounds; found {self.low}, {self.high}")
        return self


class TuneSpec(_Strict):
    """`tune:` in a sweep file: tune every compared grid cell with the same budget, then repeat the best."""

    space: dict[str, TuneParam] = Field(..., min_length=1, description="dotted key -> distribution")
    compare: list[str] | None = Field(
        None, description="grid axes that define the compared cells; null: the model.* axes (or all)"
    )
    trials: int = Field(6, ge=1, le=10_000, description="Optuna trials per compared cell")
    epochs: int | None = Field(
        None, ge=1, description="optional cap on training epochs spent by all trials of one cell"
    )
    metric: Literal["val_acc", "val_loss"] = Field("val_acc", description="validation split only")
    pruner: Literal["median", "successive_halving", "none"] = "median"
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=100)
    storage: str | None = Field(
        None,
        description="the studies' file: SQLite (WAL), or Optuna's journal when it ends in .journal (for a "
        "cluster whose nodes share only a network filesystem); null: <sweep>/tune/optuna.db",
    )
    parallel: int = Field(
        1,
        ge=1,
        le=1024,
        description="trials trained at once on the executor (ray); the local executor trains one at a time. "
        "Not part of any run's identity",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct non-negative integers; found {seeds}")
        return seeds


class MlflowSpec(_Strict):
    """`tracking.mlflow`: mirror every run into MLflow (the local record stays the truth)."""

    uri: str = Field(
        ..., min_length=1, description="tracking URI: http://host:5000 or sqlite:///path/mlflow.db"
    )
    experiment: str | None = Field(None, description="MLflow experiment; null: the sweep's name")
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="the most a run waits for MLflow when it ends; the rest goes to the outbox",
    )


class TrackingSpec(_Strict):
    """`tracking:` in a sweep file. Not part of any run's identity."""

    mlflow: MlflowSpec | None = None


class MapSpec(_Strict):
    """`map:` in a sweep file: a land-cover map per completed raster_patches run (block `stages.map`)."""

    enabled: bool = True
    scene: str | None = Field(None, description="scene YAML to map; null: the scene each run trained on")
    root: str | None = Field(None, description="folder of the scene's rasters (overrides the scene's root)")
    rf: bool = Field(False, description="also fit, map and score the Random-Forest baseline")
    rf_trees: int = Field(100, ge=1, description="trees in the Random Forest")
    window: int = Field(256, ge=16, description="read/write window side in pixels")
    batch_size: int = Field(2048, ge=1, description="patches per forward pass")
    threads: int | None = Field(None, ge=1, description="torch threads while mapping; null: train.threads")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description=STAGE_DEVICE)


class SweepConfig(_Strict):
    """A whole sweep file: base settings plus a grid of dotted keys mapped to lists of values."""

    name: str = Field(..., min_length=1, max_length=1000)
    output_dir: str = Field("results", description="where <name>/ goes; relative to the sweep file")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    max_runs: int = Field(
        DEFAULT_MAX_RUNS, ge=1, description="refuse a grid whose product has more runs than this"
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    profile: ProfileSpec | None = None
    explain: ExplainSpec | None = None
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    tune: TuneSpec | None = None
    tracking: TrackingSpec | None = None
    map: MapSpec | None = None
    # dotted key -> {resolved path: path as written}, filled by sweep/paths.py (for RunSpec.written_paths,
    # grid labels and --dry-run); not a key of the file.
    _written_paths: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    @field_validator("grid")
    @classmethod
    def _grid_lists_nonempty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if len(values) == 0:
                raise ValueError(f"grid key '{key}' has an empty list; give at least one value")
        return grid


RUN_SECTIONS = ("data", "model", "train", "eval", "seed")
