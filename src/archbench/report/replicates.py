"""What makes runs replicates of one configuration: owns the seed and the spatial k-fold's fold.

Runs that differ only by their seed, or (with `data.options.split: block_kfold`) by their fold, are one
configuration: its mean and spread are over folds × seeds. Pure functions of a run's spec dict.
"""

from __future__ import annotations

from typing import Any

KFOLD_SPLIT = "block_kfold"
FOLD_AXIS = "data.options.fold"


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    opts = (spec.get("data") or {}).get("options")
    return opts if isinstance(opts, dict) else {}


def fold_of(spec: dict[str, Any]) -> int | None:
    """The run's fold of a spatial k-fold cross-validation, else None (every other split)."""
    opts = _options(spec)
    fold = opts.get("fold")
    return fold if opts.get("split") == KFOLD_SPLIT and isinstance(fold, int) else None


def folds_in(data_block: dict[str, Any] | None) -> int | None:
    """The number of folds a k-fold run's record states (its data block), else None."""
    info = (data_block or {}).get("info")
    info = info if isinstance(info, dict) else {}
    folds = info.get("folds")
    return folds if info.get("split") == KFOLD_SPLIT and isinstance(folds, int) else None


def without_replicate(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without what distinguishes replicates: its seed and, for a k-fold run, its fold."""
    out = {k: v for k, v in spec.items() if k != "seed"}
    if fold_of(spec) is not None:
        data = dict(out["data"])
        data["options"] = {k: v for k, v in _options(spec).items() if k != "fold"}
        out["data"] = data
    return out


def is_replicate_axis(key: str, spec: dict[str, Any] | None) -> bool:
    """A grid axis that only repeats a configuration (left out of its label and axes)."""
    return key == "seed" or (key == FOLD_AXIS and spec is not None and fold_of(spec) is not None)
