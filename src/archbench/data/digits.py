"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): the offline default."""

from __future__ import annotations

import numpy as np

from ..config import DataSpec
from .registry import RawDataset, register_dataset


@register_dataset("digits", layout="bundled with scikit-learn; no data.root")
def load_digits(spec: DataSpec) -> RawDataset:
    """scikit-learn's 8×8 handwritten digits: 1,797 grayscale images, 10 classes (offline, no files)."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    # Pixel values are 0..16; scale to the uint8 range every other family uses.
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    y = d.target.astype(np.int64)
    return RawDataset(
        train_x=x,
        train_y=y,
        class_names=[str(c) for c in d.target_names],
        info={
            "source": "sklearn.datasets.load_digits",
            "class_to_idx": {str(c): int(c) for c in d.target_names},
        },
    )
