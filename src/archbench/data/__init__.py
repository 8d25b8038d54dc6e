"""Datasets: `create_dataset(spec)` is the only door; each family registers a loader in one place."""

from archbench.data.factory import create_dataset
from archbench.data.registry import (
    DatasetBundle,
    RawDataset,
    Split,
    dataset_kinds,
    describe_datasets,
    register_dataset,
)

__all__ = [
    "DatasetBundle",
    "RawDataset",
    "Split",
    "create_dataset",
    "dataset_kinds",
    "describe_datasets",
    "register_dataset",
]
