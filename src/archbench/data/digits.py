"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): the offline default."""

from __future__ import annotations

import numpy as np

from archbench.config import DataSpec
from archbench.data.registry import RawDataset, register_dataset

LAYOUTS = {"digits": "no files: scikit-learn's bundled copy (data.root is not used)"}
OPTIONS: dict[str, frozenset[str]] = {"digits": frozenset()}  # data.options keys (checked at planning)


def source_identity(spec: DataSpec) -> str:
    """What identifies the source beyond its files (there are none): the scikit-learn release whose
    bundled copy is read. The prepared-data cache adds it to the source fingerprint."""
    from importlib.metadata import version

    return f"sklearn {version('scikit-learn')}"


@register_dataset("digits")
def load_digits(spec: DataSpec) -> RawDataset:
    """scikit-learn's 8×8 handwritten digits: 1,797 grayscale images, 10 classes (offline, no files)."""
    data = _read_digits_csv()
    images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    # Pixel values are 0..16; scale to the uint8 range every other family uses.
    x = np.round(images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    names = list(range(10))
    return RawDataset(
        train_x=x,
        train_y=target,
        class_names=[str(c) for c in names],
        info={
            "source": "sklearn.datasets.load_digits",
            "class_to_idx": {str(c): int(c) for c in names},
        },
    )


def _read_digits_csv() -> np.ndarray:
    """The file `sklearn.datasets.load_digits` reads, read the same way (float rows: 64 pixels, label)
    without importing scikit-learn, which costs seconds of start-up; falls back to it if the file moved."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # locates the package without executing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                return np.loadtxt(f, delimiter=",")
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    return np.concatenate([d.data, d.target[:, None]], axis=1)
