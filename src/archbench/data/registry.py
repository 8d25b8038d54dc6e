"""The dataset registry and the common path every family shares after loading its raw arrays.

A family loader (registered with `@register_dataset("kind")`) only reads files into uint8 arrays and
returns a `RawDataset`. Everything else — limit per class, the seeded stratified val/test split, the label
preflight, normalisation statistics, the fingerprint — happens once, here, identically for every family.
This module never trains and never touches the device.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import DataSpec
from ..errors import ConfigError, DatasetError


@dataclass
class RawDataset:
    """What a family loader returns. Arrays are N×C×H×W (uint8, or float32 for rasters) and int64 labels.

    `test_x`/`test_y` are None when the source has no official test split (one is then carved out).
    `info` is free-form provenance stored in the record (class→index map, skipped files, source paths).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    class_names: list[str]
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


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

        return dataclasses.replace(self, test=_WithheldSplit())

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
}


_LAYOUTS: dict[str, str] = {}


def register_dataset(kind: str, layout: str = "") -> Callable[[Loader], Loader]:
    """Register a family loader under `kind`; `layout` says in one line what it reads (for `datasets`)."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[kind] = fn
        _LAYOUTS[kind] = layout
        return fn

    return deco


def dataset_kinds() -> list[str]:
    return sorted(_FAMILY_MODULES)


def describe_datasets() -> list[dict[str, str]]:
    """Every dataset kind: what it is (its loader's first docstring line) and what it reads (`layout`)."""
    out = []
    for kind in dataset_kinds():
        fn = _loader(kind)
        doc = (fn.__doc__ or "").strip().splitlines()
        out.append(
            {
                "kind": kind,
                "module": f"archbench.data.{_FAMILY_MODULES[kind]}",
                "description": doc[0] if doc else "",
                "reads": _LAYOUTS.get(kind, ""),
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


def preflight_spec(spec: DataSpec) -> None:
    """Cheap checks a family can make at planning time (headers, band counts), before any run starts.

    A family opts in by defining `preflight(spec)` in its module; it must not read the data itself.
    """
    _loader(spec.kind)
    module = importlib.import_module(f"{__package__}.{_FAMILY_MODULES[spec.kind]}")
    check = getattr(module, "preflight", None)
    if check is not None:
        check(spec)


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


def fingerprint_arrays(*arrays: np.ndarray, extra: str = "") -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(extra.encode())
    return h.hexdigest()


def _channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    xf = x.astype(np.float64)
    if x.dtype == np.uint8:
        xf /= 255.0
    mean = xf.mean(axis=(0, 2, 3))
    std = xf.std(axis=(0, 2, 3))
    std = np.where(std < 1e-8, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]


def create_dataset(spec: DataSpec) -> DatasetBundle:
    """Load a dataset by `spec.kind` and return train/val/test splits ready for the trainer."""
    raw = _loader(spec.kind)(spec)
    n_cls = len(raw.class_names)
    where = f"data.kind={spec.kind}" + (f" root={spec.root}" if spec.root else "")
    if raw.train_x.ndim != 4 or raw.train_x.shape[0] != raw.train_y.shape[0]:
        raise DatasetError(
            f"{where}: train images {raw.train_x.shape} do not match labels {raw.train_y.shape}"
        )
    check_labels(raw.train_y, n_cls, f"{where} (train)")
    if raw.test_y is not None:
        check_labels(raw.test_y, n_cls, f"{where} (test)")
    rng = np.random.default_rng(spec.split_seed)
    train_x, train_y = raw.train_x, raw.train_y.astype(np.int64)
    info = dict(raw.info)
    if raw.test_x is None or raw.test_y is None:
        keep, held = stratified_split(train_y, spec.test_fraction, rng)
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[keep], train_y[keep]
        info["test_split"] = (
            f"stratified {spec.test_fraction:.0%} of the source, split_seed={spec.split_seed}"
        )
    else:
        test_x, test_y = raw.test_x, raw.test_y.astype(np.int64)
        info.setdefault("test_split", "official")
    if spec.test_limit_per_class is not None:
        keep = _limit_per_class(test_y, spec.test_limit_per_class, rng)
        test_x, test_y = test_x[keep], test_y[keep]
        info["test_split"] += f", at most {spec.test_limit_per_class} per class"
    if spec.limit_per_class is not None:
        keep = _limit_per_class(train_y, spec.limit_per_class, rng)
        train_x, train_y = train_x[keep], train_y[keep]
    _check_classes_present(train_y, raw.class_names, f"{where} (train)")
    keep, held = stratified_split(train_y, spec.val_fraction, rng)
    val = Split(train_x[held], train_y[held])
    train = Split(train_x[keep], train_y[keep])
    test = Split(test_x, test_y)
    mean, std = _channel_stats(train.x)
    fp = fingerprint_arrays(train.x, train.y, val.x, val.y, test.x, test.y, extra="\n".join(raw.class_names))
    return DatasetBundle(
        kind=spec.kind,
        class_names=list(raw.class_names),
        train=train,
        val=val,
        test=test,
        mean=mean,
        std=std,
        fingerprint=fp,
        info=info,
    )
