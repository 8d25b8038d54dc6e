"""The sweep file's schema (pydantic, extra='forbid'): owns what a valid config is, never how it runs.

A `SweepConfig` is what the YAML says, with its relative input paths resolved (sweep/paths.py);
`RunSpec` is one fully resolved configuration (defaults filled in). Every field here is part of a run's
identity except `name`, `output_dir`, where the data lives (`data.memory_budget`, `data.cache_dir`) and how
often a run reports and checkpoints (`train.log_every`, `train.checkpoint`); a path is hashed as it was
written, not as it resolved (`RunSpec.written_paths`); see `RunSpec.identity`. Keys added later
(`train.keep_checkpoints`, `train.ema`, …) are part of it only when not at their defaults (LATER_KEYS), so
runs made before a key existed keep their ids.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from archbench.config.base import SEED_MAX, _Strict
from archbench.config.recipe import (
    LATER_AUGMENT_KEYS,
    AugmentSpec,
    EarlyStoppingSpec,
    EmaSpec,
    RandAugmentSpec,
    ResizedCropSpec,
    recipe_settings,
)
from archbench.config.stages import (
    ExplainSpec,
    MapSpec,
    ProfileSpec,
)
from archbench.config.tracking import MlflowSpec, TrackingSpec

__all__ = ["AugmentSpec", "EarlyStoppingSpec", "EmaSpec", "MlflowSpec", "RandAugmentSpec", "ResizedCropSpec"]

from archbench.util.units import parse_bytes

DEFAULT_MAX_RUNS = 100_000


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
    augment: AugmentSpec = Field(
        default_factory=AugmentSpec, description="batched, on-device augmentation of the training split"
    )
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


# Where the data lives, not what it is: left out of a run's identity (its id and spec hash).
NON_IDENTITY_DATA_KEYS = frozenset({"memory_budget", "cache_dir"})
# How often a run reports and checkpoints, not what it computes: also left out.
NON_IDENTITY_TRAIN_KEYS = frozenset({"log_every", "checkpoint"})
# Keys added after records existed, left out of the identity while at these values, so a record written
# before them (which lacks them) keeps its spec hash. A key is its path in the run spec.
LATER_KEYS: dict[tuple[str, ...], Any] = {
    ("train", "compile"): False,
    ("train", "keep_checkpoints"): "both",
    ("train", "ema"): None,
    ("train", "early_stopping"): None,
    ("train", "layer_decay"): None,
    ("recipe",): None,
    ("model", "band_map"): None,
    **LATER_AUGMENT_KEYS,
}
# `deterministic: auto` replaced the default `true` and computes the same wherever records were made (CPU);
# on CUDA it trades bitwise repeatability for autotuned kernels, which no run id ever pinned (`device: auto`
# spans devices too). So `auto` is hashed as `true`: a sweep re-run after the change skips its old runs.
IDENTITY_ALIASES = {("train", "deterministic", "auto"): True}


class ModelSpec(_Strict):
    name: str = Field("tiny_cnn", description="registry name, or timm:NAME for any timm model")
    pool: Literal["avg", "max"] = Field("avg", description="global pooling before the head")
    stem: Literal["imagenet", "cifar"] = Field(
        "imagenet", description="cifar: 3x3 stride-1 stem, no max-pool"
    )
    freeze: int = Field(0, ge=0, description="number of early stages whose weights are frozen")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the final linear layer")
    pretrained: str | None = Field(
        None, description="null, a local weights file (relative to the sweep file), or 'imagenet'"
    )
    band_map: dict[Literal["red", "green", "blue"], str] | None = Field(
        None, description="which dataset band gets each pretrained RGB filter, e.g. {red: nir}; null: by name"
    )


class CheckpointSpec(_Strict):
    """When a run writes `last.pt` (and `best.pt` when it improved); always also at its end and on
    SIGTERM/SIGINT. Resume is exact from any of them."""

    every_epochs: int = Field(1, ge=1, description="at the end of every N-th epoch")
    every_minutes: float | None = Field(
        None, gt=0, description="also at the first step boundary this many minutes after the last one"
    )


class TrainSpec(_Strict):
    epochs: int = Field(5, ge=1, description="passes over the training split")
    batch_size: int = Field(
        64, ge=1, description="images per optimizer batch (a data-parallel run's global batch)"
    )
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "sgd", description="sgd (with momentum, nesterov), adam or adamw"
    )
    lr: float = Field(0.05, gt=0.0, description="peak learning rate (not scaled with processes)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    nesterov: bool = Field(False, description="SGD with Nesterov momentum")
    weight_decay: float = Field(
        5e-4, ge=0.0, description="L2 penalty (SGD, Adam) or decoupled weight decay (AdamW)"
    )
    schedule: Literal["none", "step", "cosine", "onecycle"] = Field(
        "cosine", description="learning-rate schedule over the run (step: step_size, gamma)"
    )
    warmup_epochs: float = Field(
        0.0, ge=0.0, description="linear warm-up; capped at half the run when epochs is smaller"
    )
    step_size: int = Field(30, ge=1, description="epochs between lr drops (schedule: step)")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="lr factor at each drop (schedule: step)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of the training loss")
    grad_accum: int = Field(1, ge=1, description="optimizer step every this many batches")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global grad norm to this value")
    amp: Literal["auto", "on", "off"] = Field("auto", description="auto: bf16 on CUDA, off on CPU")
    channels_last: Literal["auto", "on", "off"] = Field("auto", description="auto: on for CUDA conv nets")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU")
    deterministic: Literal["auto"] | bool = Field(
        "auto",
        description="auto: deterministic (bitwise) on CPU, cuDNN autotuning on CUDA; true: deterministic "
        "algorithms everywhere; false: never",
    )
    compile: bool = Field(False, description="torch.compile the model for training (compile time kept apart)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null leaves torch's default")
    best_metric: Literal["val_acc", "val_loss"] = Field(
        "val_acc", description="which epoch's weights are `best`: highest val_acc or lowest val_loss"
    )
    log_every: int = Field(
        50, ge=1, description="steps between reads of the running loss/accuracy (the only device syncs)"
    )
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, description="when a run writes its checkpoints (not part of its id)"
    )
    ema: EmaSpec | None = Field(None, description="weights EMA; null: off")
    early_stopping: EarlyStoppingSpec | None = Field(None, description="null: train every epoch")
    layer_decay: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="layer-wise lr decay (timm models with layer groups): the lr of the k-th group below "
        "the head is lr * layer_decay**k; null: one lr",
    )
    keep_checkpoints: Literal["both", "best", "last"] = Field(
        "both",
        description="which checkpoints a completed run keeps (the rollback copies *.prev.pt are always "
        "removed once its record is written); it must keep the one eval.checkpoint names",
    )

    @property
    def kept_checkpoints(self) -> tuple[str, ...]:
        """The checkpoint names (`best`, `last`) a completed run keeps."""
        return ("best", "last") if self.keep_checkpoints == "both" else (self.keep_checkpoints,)

    @field_validator("amp", "channels_last", mode="before")
    @classmethod
    def _yaml_on_off(cls, v: Any) -> Any:
        """YAML 1.1 reads an unquoted `on`/`off` as true/false: take them as the words they were."""
        return ("on" if v else "off") if isinstance(v, bool) else v


class EvalSpec(_Strict):
    batch_size: int = Field(256, ge=1, description="images per evaluation batch")
    checkpoint: Literal["best", "last"] = Field(
        "best", description="which weights are evaluated on the test split"
    )


class WrittenPath(_Strict):
    """A relative path as the sweep file (or `--set`) wrote it, and the path it resolved to."""

    written: str = Field(description="the path as the sweep file (or --set) wrote it")
    resolved: str = Field(description="the absolute path it resolved to")


# The sections a sweep file and a run's spec share.
DATA_DOC = "what the run trains and tests on (dataset kind, folder, splits, size)"
MODEL_DOC = "the network: a registry name or timm:NAME, and how it is built"
TRAIN_DOC = "how the run trains: epochs, batch, optimizer, schedule, precision, device"
EVAL_DOC = "how the test split is evaluated"
SEED_DOC = "model init, data order and augmentation (0 ≤ seed < 2^63); the split has its own seed"


RECIPE_HELP = "a named recipe (config/recipes/NAME.yaml): sets data.augment and its train keys; null: none"


class RunSections(_Strict):
    """The sections that say what a run trains and how: a sweep file's base settings and each run's spec."""

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, name: str | None) -> str | None:
        if name is not None:
            recipe_settings(name)  # ValueError naming the known ones
        return name

    data: DataSpec = Field(default_factory=DataSpec, description=DATA_DOC)
    model: ModelSpec = Field(default_factory=ModelSpec, description=MODEL_DOC)
    train: TrainSpec = Field(default_factory=TrainSpec, description=TRAIN_DOC)
    eval: EvalSpec = Field(default_factory=EvalSpec, description=EVAL_DOC)
    seed: int = Field(0, ge=0, le=SEED_MAX, description=SEED_DOC)
    recipe: str | None = Field(None, description=RECIPE_HELP)


class RunSpec(RunSections):
    """One fully resolved configuration: what a run trains and how."""

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
        for (*sections, leaf), value in LATER_KEYS.items():
            node = out
            for part in sections:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and leaf in node and node[leaf] == value:
                del node[leaf]
        for (section, key, alias), value in IDENTITY_ALIASES.items():
            if out[section].get(key) == alias:
                out[section][key] = value
        return out


def kept_checkpoint_problem(train: TrainSpec, evaluation: EvalSpec) -> str | None:
    """Why `train.keep_checkpoints` cannot be used with `eval.checkpoint` (None: it can). A completed run
    must keep the checkpoint it was evaluated with: verify, the stages and `archbench explain` read it."""
    if evaluation.checkpoint in train.kept_checkpoints:
        return None
    return (
        f"train.keep_checkpoints: {train.keep_checkpoints} would delete the evaluated checkpoint "
        f"(eval.checkpoint: {evaluation.checkpoint}); keep both or {evaluation.checkpoint}, or set "
        f"eval.checkpoint: {train.keep_checkpoints}"
    )


def canonical_json(obj: Any) -> str:
    """The one serialisation that identities are hashed from (sorted keys, no spaces, ASCII)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def spec_hash(spec: RunSpec) -> str:
    """A run's identity: sha256 of its resolved spec (`RunSpec.identity`), as stored in its record."""
    return hashlib.sha256(canonical_json(spec.identity()).encode()).hexdigest()


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
    oversubscribe: bool = Field(
        False,
        description="allow more CPU processes than this machine's usable cores (refused at planning "
        "otherwise); GPUs are never shared: one process per visible GPU",
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
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="what one run asks for: CPUs, GPUs, data-parallel processes",
    )
    max_retries: int = Field(
        2, ge=0, le=100, description="ray: re-runs of a run whose worker or node died (resumes from `last`)"
    )
    connect_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="ray: the longest planning waits to reach `address` before refusing the sweep",
    )


class TuneParam(_Strict):
    """One dimension of a `tune.space`: a distribution over the value of a dotted run-spec key."""

    type: Literal["loguniform", "uniform", "int", "categorical"] = Field(
        description="the distribution; categorical takes `choices`, the others `low` and `high`"
    )
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
    pruner: Literal["median", "successive_halving", "none"] = Field(
        "median", description="stops weak trials early on the per-epoch validation metric"
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        max_length=100,
        description="seeds of the final runs of each compared cell's best configuration",
    )
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


class SweepConfig(RunSections):
    """A whole sweep file: base settings plus a grid of dotted keys mapped to lists of values."""

    name: str = Field(
        ..., min_length=1, max_length=1000, description="the sweep's name: its folder is <output_dir>/<name>/"
    )
    output_dir: str = Field("results", description="where <name>/ goes; relative to the sweep file")
    max_runs: int = Field(
        DEFAULT_MAX_RUNS, ge=1, description="refuse a grid whose product has more runs than this"
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted key -> list of values; the runs are the cartesian product of the lists",
    )
    exclude: list[dict[str, Any]] = Field(
        default_factory=list,
        description="partial specs (dotted key -> value): grid runs matching one are left out",
    )
    profile: ProfileSpec | None = Field(None, description="profile every completed run (null: no profiling)")
    explain: ExplainSpec | None = Field(
        None, description="explain every completed run (null: no explanations)"
    )
    executor: ExecutorSpec = Field(
        default_factory=ExecutorSpec, description="where runs execute (local or Ray); not part of any run id"
    )
    tune: TuneSpec | None = Field(
        None, description="tune every compared cell with the same budget, then repeat its best over seeds"
    )
    tracking: TrackingSpec | None = Field(None, description="mirror runs into MLflow; not part of any run id")
    map: MapSpec | None = Field(None, description="map every completed raster_patches run (null: no maps)")
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


RUN_SECTIONS = ("data", "model", "train", "eval", "seed", "recipe")
