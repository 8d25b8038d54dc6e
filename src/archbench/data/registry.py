"""The dataset registry and the common path every family shares after loading its raw arrays.

A family loader (registered with `@register_dataset("kind")`) only reads files into arrays (uint8 images,
or a raster family's native dtype: uint16, int16, float32) and returns a `RawDataset`. Everything else —
limit per class, the seeded stratified val/test split, the label preflight, normalisation statistics, the
fingerprint — happens once, here, identically for every family.
This module never trains and never touches the device.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.util.errors import ConfigError, DatasetError


@dataclass
class RawDataset:
    """What a family loader returns. Arrays are N×C×H×W (uint8 images; rasters in their native dtype:
    uint8, uint16, int16 or float32) and int64 labels.

    `test_x`/`test_y` are None when the source has no official test split (one is then carved out);
    `val_x`/`val_y` likewise for an official validation split (else carved from the training split).
    `info` is free-form provenance stored in the record (class→index map, skipped files, source paths).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    class_names: list[str]
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    train_ids: list[str] | None = None  # per-sample names (e.g. relative paths); None: "train:<index>"
    test_ids: list[str] | None = None
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    val_ids: list[str] | None = None

    @classmethod
    def from_splits(
        cls,
        x: dict[str, np.ndarray],
        y: dict[str, np.ndarray],
        ids: dict[str, list[str] | None],
        class_names: list[str],
        info: dict[str, Any],
    ) -> RawDataset:
        """From per-split arrays keyed "train" and, when the source has them officially, "val"/"test"."""
        return cls(
            x["train"], y["train"], list(class_names), x.get("test"), y.get("test"), info,
            ids.get("train"), ids.get("test"), x.get("val"), y.get("val"), ids.get("val"),
        )  # fmt: skip


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class SampleIds:
    """Which source rows a split holds: `index` into the source array named by `prefix` ("train", or
    "test" for an official test split), and each row's name when the family has one (relative paths)."""

    index: np.ndarray
    prefix: str
    names: list[str] | None = None

    def labels(self) -> list[str]:
        """One name per sample: the family's name, else `<prefix>:<index>`."""
        if self.names is not None:
            return list(self.names)
        return [f"{self.prefix}:{int(i)}" for i in self.index]


@dataclass
class DatasetBundle:
    """A dataset ready for training: three splits, class names, channel statistics and a fingerprint."""

    kind: str
    class_names: list[str]
    train: Split
    val: Split
    test: Split
    mean: list[float]
    std: list[float]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)
    # How the arrays were obtained (cache key, hit or built, decode seconds); not part of the fingerprint.
    loading: dict[str, Any] = field(default_factory=dict)
    # Which source rows the test split holds (from the plan); stored in predictions.npz for provenance.
    test_ids: SampleIds | None = None

    @property
    def nbytes(self) -> int:
        return int(sum(s.x.nbytes + s.y.nbytes for s in (self.train, self.val, self.test)))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def native_size(self) -> tuple[int, int]:
        return int(self.train.x.shape[2]), int(self.train.x.shape[3])

    def without_test(self) -> DatasetBundle:
        """The same bundle with its test split withheld (tuning trials): any use of it raises."""
        import dataclasses

        return dataclasses.replace(self, test=_WithheldSplit(), test_ids=None)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "in_chans": self.in_chans,
            "native_size": list(self.native_size),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "mean": self.mean,
            "std": self.std,
            "info": self.info,
            "loading": self.loading,
        }


class _WithheldSplit(Split):
    """A test split a tuning trial may not read: touching its arrays or length raises."""

    def __init__(self) -> None:
        pass

    def __getattribute__(self, name: str) -> Any:
        if name in ("x", "y", "__len__"):
            raise DatasetError("the test split is withheld during tuning (trials see train and val only)")
        return object.__getattribute__(self, name)

    def __len__(self) -> int:
        raise DatasetError("the test split is withheld during tuning (trials see train and val only)")


Loader = Callable[[DataSpec], RawDataset]
_REGISTRY: dict[str, Loader] = {}
# Families live in their own modules; importing them registers them. Looked up by name only.
_FAMILY_MODULES = {
    "digits": "digits",
    "imagefolder": "imagefolder",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "mnist": "mnist",
    "fashion_mnist": "mnist",
    "kmnist": "mnist",
    "raster_patches": "raster",
    "raster_folder": "raster_folder",
    "torchgeo": "torchgeo_family",
}


def register_dataset(kind: str) -> Callable[[Loader], Loader]:
    """Register a family loader under `kind`; what it reads is the family module's `LAYOUTS[kind]`."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[kind] = fn
        return fn

    return deco


def dataset_kinds() -> list[str]:
    return sorted(_FAMILY_MODULES)


def describe_datasets() -> list[dict[str, str]]:
    """Every dataset kind: what it is (its loader's first docstring line) and what it reads (`LAYOUTS`)."""
    out = []
    for kind in dataset_kinds():
        fn = _loader(kind)
        doc = (fn.__doc__ or "").strip().splitlines()
        out.append(
            {
                "kind": kind,
                "module": f"archbench.data.{_FAMILY_MODULES[kind]}",
                "description": doc[0] if doc else "",
                "reads": dataset_layout(kind),
            }
        )
    return out


def _loader(kind: str) -> Loader:
    if kind not in _FAMILY_MODULES:
        import difflib

        near = difflib.get_close_matches(kind, dataset_kinds(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(
            f"data.kind: unknown dataset kind '{kind}'{hint} (known: {', '.join(dataset_kinds())})"
        )
    if kind not in _REGISTRY:
        importlib.import_module(f"{__package__}.{_FAMILY_MODULES[kind]}")
    return _REGISTRY[kind]


def family_module(kind: str) -> Any:
    """The module that implements `kind`, for its optional hooks: `preflight(spec)`, `check_files(spec)`,
    `band_names(spec)` (the bands' names in input order, for `model.band_map` at planning), `LAYOUTS`, and
    for the prepared-data cache `PREPARED_CACHE = False` (opt out) and
    `source_identity(spec) -> str` (what identifies the source beyond its files, e.g. a library release)."""
    _loader(kind)
    return importlib.import_module(f"{__package__}.{_FAMILY_MODULES[kind]}")


def preflight_spec(spec: DataSpec) -> None:
    """Cheap checks a family can make at planning time (headers, band counts), before any run starts.

    A family opts in by defining `preflight(spec)` in its module; it must not read the data itself.
    """
    _loader(spec.kind)
    module = importlib.import_module(f"{__package__}.{_FAMILY_MODULES[spec.kind]}")
    check = getattr(module, "preflight", None)
    if check is not None:
        check(spec)


def dataset_layout(kind: str) -> str:
    """The files a kind needs, relative to data.root: each family states it next to its reader (`LAYOUTS`)."""
    _loader(kind)
    module = importlib.import_module(f"{__package__}.{_FAMILY_MODULES[kind]}")
    return str(getattr(module, "LAYOUTS", {}).get(kind, "see the family's module docstring"))


def data_problems(spec: DataSpec) -> list[str]:
    """Everything about a data spec that can be checked before anything is created, as one line per
    problem: the kind, the files it needs (family `check_files(spec)`: found, or missing with the expected
    layout) and the family's header-level `preflight`. Reads no pixels."""
    try:
        _loader(spec.kind)
    except ConfigError as exc:
        return [str(exc)]
    module = importlib.import_module(f"{__package__}.{_FAMILY_MODULES[spec.kind]}")
    check_files = getattr(module, "check_files", None)
    problems: list[str] = list(check_files(spec)) if check_files is not None else []
    if problems:
        return problems
    try:
        preflight_spec(spec)
    except (ConfigError, DatasetError) as exc:
        problems.extend(error_lines(exc))
    return problems


def error_lines(exc: Exception) -> list[str]:
    """An error as one line per problem: "invalid X:\n  a\n  b" becomes "invalid X: a", "invalid X: b"."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return [f"{lines[0]} {line}" for line in lines[1:]]
    return [" ".join(lines)] if lines else [type(exc).__name__]


def check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    """Preflight: every label must be an integer in [0, num_classes) and every class must occur."""
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        first = ", ".join(str(int(i)) for i in bad[:5])
        raise DatasetError(
            f"{where}: {bad.size} label(s) outside [0, {num_classes}) (first at indices {first}; "
            f"values {sorted({int(v) for v in y[bad[:5]]})})"
        )


def _check_classes_present(y: np.ndarray, class_names: list[str], where: str) -> None:
    counts = np.bincount(y, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DatasetError(f"{where}: class(es) with no examples: {', '.join(empty)}")


def _limit_per_class(y: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size > limit:
            idx = np.sort(rng.choice(idx, size=limit, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so each class keeps ~`fraction` of its examples on the held-out side (at least one
    when it has two or more)."""
    held, kept = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = int(round(idx.size * fraction))
        if idx.size >= 2:
            n = min(max(n, 1), idx.size - 1)
        else:
            n = 0
        held.append(idx[:n])
        kept.append(idx[n:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def fingerprint_arrays(*arrays: np.ndarray, extra: str = "", chunk_bytes: int = 64 << 20) -> str:
    """sha256 over dtype, shape and bytes of every array, read in chunks (memory-mapped arrays stay
    mapped, never copied whole)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        rows = max(1, chunk_bytes // max(1, a[:1].nbytes)) if a.ndim else 1
        if a.ndim == 0 or a.shape[0] == 0:
            h.update(np.ascontiguousarray(a).tobytes())
            continue
        for start in range(0, a.shape[0], rows):
            h.update(np.ascontiguousarray(a[start : start + rows]).data.cast("B"))
    h.update(extra.encode())
    return h.hexdigest()


def channel_stats(x: np.ndarray, chunk_bytes: int = 64 << 20) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (two passes over chunks, float64; uint8 scaled to [0, 1])."""
    n = x.shape[0]
    rows = max(1, chunk_bytes // max(1, x[:1].nbytes * 8))
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    count = float(n * x.shape[2] * x.shape[3])
    total = np.zeros(x.shape[1], np.float64)
    for s in range(0, n, rows):
        total += x[s : s + rows].astype(np.float64).sum(axis=(0, 2, 3)) * scale
    mean = total / max(count, 1.0)
    sq = np.zeros(x.shape[1], np.float64)
    for s in range(0, n, rows):
        d = x[s : s + rows].astype(np.float64) * scale - mean[None, :, None, None]
        sq += (d * d).sum(axis=(0, 2, 3))
    std = np.sqrt(sq / max(count, 1.0))
    std = np.where(std < 1e-8, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]


@dataclass
class PlannedSplit:
    """One split before its pixels are gathered: rows `index` of the source array `source`."""

    source: np.ndarray
    index: np.ndarray
    y: np.ndarray
    ids: list[str] | None
    prefix: str = "train"  # which source array the index points into ("train" or "test")

    def gather(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self.source[self.index[start:stop]])


@dataclass
class DataPlan:
    """What the common path decided for a decoded source: the three splits as index arrays, class names
    and provenance. Gathering (in memory, or chunk by chunk into the prepared-data cache) comes after."""

    kind: str
    class_names: list[str]
    splits: dict[str, PlannedSplit]
    info: dict[str, Any]


def _source_ids(ids: list[str] | None, prefix: str, index: np.ndarray) -> list[str] | None:
    """Names of the rows `index` of a source; None when the family names none (the source index, stored
    beside the pixels, then identifies each sample as `<prefix>:<index>`)."""
    if ids is None:
        return None
    return [ids[int(i)] for i in index]


def training_pool(y: np.ndarray, spec: DataSpec) -> np.ndarray:
    """The source rows `plan_dataset` keeps for training (train and the validation split carved from it)
    when the source has no official test split: the same first draw of the `split_seed` stream. For a
    family that derives something from training rows only while it loads (raster chips' nodata fill)."""
    keep, _ = stratified_split(
        np.asarray(y, dtype=np.int64), spec.test_fraction, np.random.default_rng(spec.split_seed)
    )
    return keep


def _val_split(
    raw: RawDataset, spec: DataSpec, rng: np.random.Generator, train_idx: np.ndarray, train_y: np.ndarray
) -> tuple[np.ndarray, PlannedSplit]:
    """(positions in `train_idx` kept for training, the validation split): the family's official
    validation split when it has one, else a stratified `val_fraction` of the training split."""
    if raw.val_x is not None and raw.val_y is not None:
        val_idx = np.arange(raw.val_y.shape[0])
        val_y = raw.val_y.astype(np.int64)
        val = PlannedSplit(raw.val_x, val_idx, val_y, _source_ids(raw.val_ids, "val", val_idx), "val")
        return np.arange(train_y.shape[0]), val
    keep, held = stratified_split(train_y, spec.val_fraction, rng)
    val_ids = _source_ids(raw.train_ids, "train", train_idx[held])
    return keep, PlannedSplit(raw.train_x, train_idx[held], train_y[held], val_ids)


def plan_dataset(spec: DataSpec) -> DataPlan:
    """Decode the source with its family loader and apply the common path (checks, splits, limits)."""
    raw = _loader(spec.kind)(spec)
    n_cls = len(raw.class_names)
    where = f"data.kind={spec.kind}" + (f" root={spec.root}" if spec.root else "")
    if raw.train_x.ndim != 4 or raw.train_x.shape[0] != raw.train_y.shape[0]:
        raise DatasetError(
            f"{where}: train images {raw.train_x.shape} do not match labels {raw.train_y.shape}"
        )
    check_labels(raw.train_y, n_cls, f"{where} (train)")
    for name, labels in (("test", raw.test_y), ("val", raw.val_y)):
        if labels is not None:
            check_labels(labels, n_cls, f"{where} ({name})")
    rng = np.random.default_rng(spec.split_seed)
    src_y = raw.train_y.astype(np.int64)
    train_idx = np.arange(src_y.shape[0])
    info = dict(raw.info)
    if raw.test_x is None or raw.test_y is None:
        # The first draw of the split_seed stream; `training_pool` repeats it.
        keep, held = stratified_split(src_y, spec.test_fraction, rng)
        test_src, test_y, test_idx, test_ids = raw.train_x, src_y[held], train_idx[held], raw.train_ids
        test_prefix = "train"
        train_idx = train_idx[keep]
        info["test_split"] = (
            f"stratified {spec.test_fraction:.0%} of the source, split_seed={spec.split_seed}"
        )
    else:
        test_src, test_y = raw.test_x, raw.test_y.astype(np.int64)
        test_idx, test_ids, test_prefix = np.arange(test_y.shape[0]), raw.test_ids, "test"
        info.setdefault("test_split", "official")
    if spec.test_limit_per_class is not None:
        keep = _limit_per_class(test_y, spec.test_limit_per_class, rng)
        test_idx, test_y = test_idx[keep], test_y[keep]
        info["test_split"] += f", at most {spec.test_limit_per_class} per class"
    train_y = src_y[train_idx]
    if spec.limit_per_class is not None:
        keep = _limit_per_class(train_y, spec.limit_per_class, rng)
        train_idx, train_y = train_idx[keep], train_y[keep]
    _check_classes_present(train_y, raw.class_names, f"{where} (train)")
    keep, val = _val_split(raw, spec, rng, train_idx, train_y)
    if val.prefix == "val":
        info.setdefault("val_split", "official")
    splits = {
        "train": PlannedSplit(
            raw.train_x, train_idx[keep], train_y[keep], _source_ids(raw.train_ids, "train", train_idx[keep])
        ),
        "val": val,
        "test": PlannedSplit(
            test_src, test_idx, test_y, _source_ids(test_ids, test_prefix, test_idx), test_prefix
        ),
    }
    return DataPlan(kind=spec.kind, class_names=list(raw.class_names), splits=splits, info=info)


def bundle_from_splits(
    kind: str, class_names: list[str], splits: dict[str, Split], info: dict[str, Any]
) -> DatasetBundle:
    """Statistics and fingerprint of gathered splits (in memory or memory-mapped: read in chunks)."""
    train, val, test = splits["train"], splits["val"], splits["test"]
    mean, std = channel_stats(train.x)
    fp = fingerprint_arrays(train.x, train.y, val.x, val.y, test.x, test.y, extra="\n".join(class_names))
    return DatasetBundle(
        kind=kind,
        class_names=list(class_names),
        train=train,
        val=val,
        test=test,
        mean=mean,
        std=std,
        fingerprint=fp,
        info=info,
    )


def build_in_memory(spec: DataSpec) -> DatasetBundle:
    """Decode and gather everything in memory (families the prepared-data cache does not hold)."""
    plan = plan_dataset(spec)
    splits = {name: Split(p.gather(), p.y) for name, p in plan.splits.items()}
    bundle = bundle_from_splits(plan.kind, plan.class_names, splits, plan.info)
    test = plan.splits["test"]
    bundle.test_ids = SampleIds(np.asarray(test.index, dtype=np.int64), test.prefix, test.ids)
    return bundle
