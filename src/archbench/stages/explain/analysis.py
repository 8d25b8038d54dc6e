"""Error analysis of one run from its saved predictions: pure numpy, no model, no files.

Every number here can be recomputed from `predictions.npz` (y_true, probs): per-class accuracy with the
best and worst classes, the most-confused (true, predicted) pairs, the most confident mistakes, and
calibration (a reliability diagram over equal-width confidence bins and the expected calibration error).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15  # Guo et al. 2017 use 15 equal-width bins
TOP_CLASSES = 3  # best and worst classes listed
TOP_PAIRS = 10  # most-confused pairs listed
TOP_MISTAKES = 10  # most confident mistakes listed


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Reliability diagram and ECE. Bin b holds confidences in (b/bins, (b+1)/bins]; bin 0 also holds 0.

    ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|; MCE is the largest gap over non-empty bins.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    conf_sum = np.bincount(which, weights=confidence.astype(np.float64), minlength=bins)
    nonempty = count > 0
    accuracy = np.where(nonempty, acc_sum / np.maximum(count, 1), np.nan)
    mean_conf = np.where(nonempty, conf_sum / np.maximum(count, 1), np.nan)
    gaps = np.abs(accuracy - mean_conf)
    n = max(int(confidence.shape[0]), 1)
    ece = float(np.sum(np.where(nonempty, gaps * count / n, 0.0)))
    mce = float(np.max(gaps[nonempty])) if nonempty.any() else 0.0
    return {
        "bins": bins,
        "ece": ece,
        "mce": mce,
        "bin_edges": [float(e) for e in edges],
        "bin_count": [int(c) for c in count],
        "bin_accuracy": [None if np.isnan(a) else float(a) for a in accuracy],
        "bin_confidence": [None if np.isnan(c) else float(c) for c in mean_conf],
    }


def _class_entry(index: int, names: list[str], accuracy: float | None, support: int) -> dict[str, Any]:
    return {"class": names[index], "index": index, "accuracy": accuracy, "support": support}


def error_analysis(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The `error_analysis` record block of one run (see the module docstring); ties break by index."""
    k = len(class_names)
    y_true = y_true.astype(np.int64)
    y_pred = probs.argmax(1).astype(np.int64)
    confidence = probs.max(1).astype(np.float64)
    correct = y_pred == y_true
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    support = cm.sum(1)

    per_class = [
        _class_entry(c, class_names, float(cm[c, c] / support[c]) if support[c] else None, int(support[c]))
        for c in range(k)
    ]
    scored = [e for e in per_class if e["accuracy"] is not None]
    best = sorted(scored, key=lambda e: (-e["accuracy"], e["index"]))[:TOP_CLASSES]
    worst = sorted(scored, key=lambda e: (e["accuracy"], e["index"]))[:TOP_CLASSES]

    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(off[t, p]), t, p) for t in range(k) for p in range(k) if off[t, p] > 0]
    pairs.sort(key=lambda e: (-e[0], e[1], e[2]))
    confused = [
        {
            "true": class_names[t],
            "true_index": t,
            "predicted": class_names[p],
            "predicted_index": p,
            "count": n,
            "share_of_true": float(n / support[t]),
        }
        for n, t, p in pairs[:TOP_PAIRS]
    ]

    wrong = np.flatnonzero(~correct)
    order = wrong[np.lexsort((wrong, -confidence[wrong]))][:TOP_MISTAKES]
    mistakes = [
        {
            "index": int(i),
            "true": class_names[int(y_true[i])],
            "true_index": int(y_true[i]),
            "predicted": class_names[int(y_pred[i])],
            "predicted_index": int(y_pred[i]),
            "confidence": float(confidence[i]),
        }
        for i in order
    ]
    return {
        "n_test": int(y_true.shape[0]),
        "n_mistakes": int(wrong.size),
        "top1": float(correct.mean()) if y_true.size else 0.0,
        "per_class": per_class,
        "best_classes": best,
        "worst_classes": worst,
        "confused_pairs": confused,
        "confident_mistakes": mistakes,
        "calibration": calibration_bins(confidence, correct),
    }
