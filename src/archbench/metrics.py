"""Test-set metrics from saved predictions: owns every number the record stores about the test split, and
the paired-test primitives (exact McNemar, Holm) that the report and the map stage share.

Pure numpy with scikit-learn's definitions (checked against it in tests/test_evaluate.py; no torch), so
evaluation, `archbench verify` and the report compute the same values from `predictions.npz`. The loss is
float64 — from the logits when they are stored, else from the probabilities — with no float32-eps clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def cross_entropy(y_true: np.ndarray, probs: np.ndarray, logits: np.ndarray | None = None) -> float:
    """Mean cross-entropy in float64 (log-softmax of the logits, or log of the probabilities)."""
    y = np.asarray(y_true, dtype=np.int64)
    if y.size == 0:
        return float("nan")
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(y.size), y].mean())
    p = np.asarray(probs, dtype=np.float64)[np.arange(y.size), y]
    # Only an exact zero is bounded (float64's smallest normal), so the value stays finite.
    return float(-np.log(np.maximum(p, np.finfo(np.float64).tiny)).mean())


def metrics_from_predictions(
    y_true: np.ndarray, probs: np.ndarray, num_classes: int, logits: np.ndarray | None = None
) -> dict[str, Any]:
    """Top-1/top-5, log loss, precision/recall/F1 (macro, weighted), Cohen's kappa, per-class accuracy and
    the confusion matrix, in numpy (scikit-learn's definitions; `test_evaluate` checks them against it —
    importing scikit-learn costs seconds of start-up)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    k = num_classes
    y_pred = probs.argmax(1)
    n = int(y_true.shape[0])
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm).astype(np.float64)
    per_class = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
    out: dict[str, Any] = {"top1": float((y_pred == y_true).mean()), "n_test": n}
    if k >= 5:
        # sklearn's tie order: a stable ascending sort, reversed (among equal scores the higher index wins)
        order = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :5]
        out["top5"] = float((order == y_true[:, None]).any(axis=1).mean())
    else:
        out["top5"] = None
    out["loss"] = cross_entropy(y_true, probs, logits)  # float64, no float32-eps clipping
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(k), where=(support + predicted) > 0)
    weights = {"macro": None, "weighted": support}
    for avg, w in weights.items():
        if w is not None and w.sum() == 0:
            out[f"precision_{avg}"] = out[f"recall_{avg}"] = out[f"f1_{avg}"] = 0.0
            continue
        out[f"precision_{avg}"] = float(np.average(precision, weights=w))
        out[f"recall_{avg}"] = float(np.average(recall, weights=w))
        out[f"f1_{avg}"] = float(np.average(f1, weights=w))
    expected = np.outer(cm.sum(1), cm.sum(0)) / max(int(cm.sum()), 1)
    off = 1 - np.eye(k)
    denom_kappa = float((off * expected).sum())
    kappa = 1 - float((off * cm).sum()) / denom_kappa if denom_kappa > 0 else 0.0
    out["kappa"] = float(0.0 if np.isnan(kappa) else kappa)
    out["per_class_accuracy"] = [None if np.isnan(v) else float(v) for v in per_class]
    out["confusion_matrix"] = cm.astype(int).tolist()
    return out


def mcnemar_p_values(b: Any, c: Any) -> Any:
    """Exact two-sided McNemar p-values for arrays of discordant counts, in one vectorised call.

    Binomial(b + c, 1/2) is symmetric, so the two-sided p is 2·P(X ≤ min(b, c)), capped at 1 (b = c: 1).
    """
    from scipy.special import bdtr  # the binomial CDF (scipy.stats.binom.cdf), without scipy.stats

    b, c = np.asarray(b, dtype=np.int64), np.asarray(c, dtype=np.int64)
    n = b + c
    p = np.minimum(1.0, 2.0 * bdtr(np.minimum(b, c), n, 0.5))
    return np.where(n == 0, 1.0, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


__all__ = ["metrics_from_predictions", "cross_entropy", "mcnemar_p_values", "holm"]
