"""Maps against the label raster: owns the confusion matrices and the accuracy-assessment numbers.

Counted window by window. Rows of a confusion matrix are the reference (label raster), columns the map.
A labelled pixel the map left as nodata (some band invalid) is not in the matrix; it is counted as
`n_unmapped`. Producer's accuracy is per-class recall (how much of the reference class the map found),
user's accuracy per-class precision (how often a mapped class is right), as in remote-sensing practice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.scene import UNLABELLED, SceneReader, iter_windows

SUBSET_DEFINITIONS = {
    "all_labelled": "every labelled pixel of the reference raster that the map classified",
    "never_in_training": (
        "labelled pixels outside every training-pool patch (train + validation centres, dilated by the "
        "patch radius): the network never saw them, as a centre or inside a patch"
    ),
    "test_blocks": "labelled pixels inside the spatial test blocks (split: block or block_kfold)",
}


def subset_masks(info: dict[str, Any], same: bool) -> dict[str, np.ndarray | None]:
    """The scored subsets of a run's training data block `info` as grid masks (None: every labelled pixel);
    the never-in-training and test-block subsets only when the mapped scene is the one the run trained on."""
    from archbench.data.raster import block_mask, dilate, unpack_mask

    subsets: dict[str, np.ndarray | None] = {"all_labelled": None, "never_in_training": None}
    if same:
        covered = dilate(unpack_mask(info["train_pixels"]), int(info["halo"]))
        subsets["never_in_training"] = ~covered
        if info.get("split") in ("block", "block_kfold"):
            h, w = (int(v) for v in info["train_pixels"]["shape"])
            subsets["test_blocks"] = block_mask((h, w), int(info["block_size"]), info["test_blocks"])
    return subsets


def confusion_matrices(
    reader: SceneReader,
    map_path: Path,
    subsets: dict[str, np.ndarray | None],
    window: int = 512,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Confusion matrices (K×K int64) per subset (a grid mask, or None for all) and unmapped counts."""
    import rasterio
    from rasterio.windows import Window

    scene = reader.scene
    k = len(scene.class_values)
    lut = np.full(256, UNLABELLED, dtype=np.uint8)
    lut[np.asarray(scene.class_values)] = np.arange(k, dtype=np.uint8)
    cms = {name: np.zeros((k, k), dtype=np.int64) for name in subsets}
    unmapped = dict.fromkeys(subsets, 0)
    g = scene.grid
    with rasterio.open(map_path) as src:
        for r0, c0, h, w in iter_windows(g.height, g.width, window):
            ref = reader.read_labels(r0, c0, h, w, reference=True)
            pred = lut[src.read(1, window=Window(c0, r0, w, h))]
            labelled = ref != UNLABELLED
            for name, mask in subsets.items():
                m = labelled if mask is None else labelled & mask[r0 : r0 + h, c0 : c0 + w]
                ok = m & (pred != UNLABELLED)
                unmapped[name] += int((m & ~ok).sum())
                flat = ref[ok].astype(np.int64) * k + pred[ok]
                cms[name] += np.bincount(flat, minlength=k * k).reshape(k, k)
    return cms, unmapped


def _safe_div(a: np.ndarray, b: np.ndarray) -> list[float | None]:
    return [None if d == 0 else float(n / d) for n, d in zip(a, b, strict=True)]


def scores_from_confusion(cm: np.ndarray, n_unmapped: int = 0) -> dict[str, Any]:
    """OA, Cohen's kappa, per-class producer's/user's accuracy and F1 from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    diag, rows, cols = np.diag(cm), cm.sum(1), cm.sum(0)
    oa: float | None = None
    kappa: float | None = None
    if n:
        oa = float(diag.sum() / n)
        pe = float((rows * cols).sum() / n**2)  # chance agreement from the marginals
        kappa = 0.0 if pe >= 1.0 else (oa - pe) / (1.0 - pe)
    prod, user = _safe_div(diag, rows), _safe_div(diag, cols)
    f1: list[float | None] = []
    for p, u, r in zip(prod, user, rows, strict=True):
        if r == 0:
            f1.append(None)
        elif not p or not u:
            f1.append(0.0)
        else:
            f1.append(2 * p * u / (p + u))
    present = [v for v in f1 if v is not None]
    return {
        "n_pixels": n,
        "n_unmapped": int(n_unmapped),
        "overall_accuracy": oa,
        "kappa": kappa,
        "f1_macro": float(np.mean(present)) if present else None,
        "producers_accuracy": prod,
        "users_accuracy": user,
        "f1": f1,
        "support": [int(v) for v in rows],
        "confusion_matrix": cm.tolist(),
    }


def score_map(
    reader: SceneReader, map_path: Path, subsets: dict[str, np.ndarray | None]
) -> dict[str, dict[str, Any]]:
    cms, unmapped = confusion_matrices(reader, map_path, subsets)
    return {name: scores_from_confusion(cms[name], unmapped[name]) for name in subsets}
