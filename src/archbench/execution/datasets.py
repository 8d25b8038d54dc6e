"""Datasets loaded in this process: owns keeping the last decoded dataset in memory for the next run.

Not the on-disk prepared-data cache (data/cache.py): this only saves a sweep process (or a reused Ray
worker) from loading the same data spec again for each of its runs.
"""

from __future__ import annotations

from typing import Any

from archbench.config import DataSpec


class LoadedDatasets:
    """Loads each distinct data spec once per sweep process; keeps only the last one (datasets can be
    large)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def get(self, spec: DataSpec) -> Any:
        from archbench.data import create_dataset
        from archbench.data.identity import decode_identity

        key = decode_identity(spec)
        if key not in self._loaded:
            self._loaded = {key: create_dataset(spec)}
        return self._loaded[key]
