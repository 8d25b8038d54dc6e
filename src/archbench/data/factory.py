"""The one door to datasets: `create_dataset(spec)` sits above the family registry and the prepared-data
cache, so neither calls back into the other."""

from __future__ import annotations

from archbench.config import DataSpec
from archbench.data.cache import open_or_prepare
from archbench.data.registry import DatasetBundle, _loader


def create_dataset(spec: DataSpec) -> DatasetBundle:
    """Load a dataset by `spec.kind` and return train/val/test splits ready for the trainer.

    Decoded once into the prepared-data cache (`data/cache/`) and memory-mapped from there afterwards.
    """
    _loader(spec.kind)  # unknown kinds fail here, before any cache folder is touched
    return open_or_prepare(spec)
