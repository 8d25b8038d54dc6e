"""The Random-Forest baseline: owns fitting scikit-learn's forest on per-pixel band values.

It learns from the band values of exactly the centre pixels a run's training pool used (train +
validation, decoded from the record), with no spatial context, then maps the scene through the same
windowed predictor (a 1×1 "patch") and is scored the same way as the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from archbench.data.scene import SceneReader, gather_patches
from archbench.stages.map.predict import Classifier

N_ESTIMATORS = 100  # scikit-learn's default; enough for 6 bands, and fast on two cores
N_JOBS = 2


@dataclass
class ForestBaseline:
    classify: Classifier
    info: dict[str, Any]


def fit_forest(
    reader: SceneReader,
    train_mask: np.ndarray,
    seed: int = 0,
    n_estimators: int = N_ESTIMATORS,
    n_jobs: int = N_JOBS,
) -> ForestBaseline:
    """Fit on the band values at `train_mask`'s pixels, labelled by the scene's label raster."""
    import time

    from sklearn.ensemble import RandomForestClassifier

    rows, cols = np.nonzero(train_mask)
    labels = reader.label_grid()
    y = labels[rows, cols].astype(np.int64)
    x = gather_patches(reader, rows, cols, patch=1)[:, :, 0, 0]
    keep = np.isfinite(x).all(1) & (y != 255)
    x, y = x[keep], y[keep]
    t0 = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=n_estimators, n_jobs=n_jobs, random_state=seed)
    forest.fit(x, y)
    fit_s = time.perf_counter() - t0

    def classify(patches: np.ndarray) -> np.ndarray:
        return np.asarray(forest.predict(patches.reshape(patches.shape[0], -1)), dtype=np.int64)

    info = {
        "model": "random_forest",
        "library": "scikit-learn RandomForestClassifier",
        "n_estimators": n_estimators,
        "n_jobs": n_jobs,
        "random_state": seed,
        "features": "per-pixel band values (raw), no spatial context",
        "n_train_pixels": int(y.size),
        "train_counts": np.bincount(y, minlength=len(reader.scene.class_values)).tolist(),
        "fit_seconds": fit_s,
    }
    return ForestBaseline(classify, info)
