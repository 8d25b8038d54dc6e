"""Test-set evaluation: owns the metrics (numpy, sklearn definitions) and `predictions.npz`; never trains.

`metrics_from_predictions` is pure so the report and tests can recompute every number from the saved
predictions and get the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .augment import BatchMaker
from .config import RunSpec
from .data.registry import DatasetBundle
from .runtime import amp_enabled, autocast, channels_last_enabled


def metrics_from_predictions(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, Any]:
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
    # log loss as sklearn computes it: clip to the dtype's eps, -log of the true class's probability
    p = np.clip(np.clip(probs, 1e-12, 1.0), np.finfo(probs.dtype).eps, 1 - np.finfo(probs.dtype).eps)
    out["loss"] = float(np.average(-np.log(p[np.arange(n), y_true])))
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


@torch.no_grad()
def predict(model: nn.Module, spec: RunSpec, bundle: DatasetBundle, device: torch.device) -> np.ndarray:
    """Class probabilities for the test split (float32, N×K)."""
    model.eval()
    cl = channels_last_enabled(spec.train, device)
    maker = BatchMaker(bundle, device, spec.data.resolution, spec.data.augment, channels_last=cl)
    from .sources import open_sources

    (split,), _ = open_sources(
        [bundle.test], device, spec.data.memory_budget, bundle.loading.get("prepared_bytes")
    )
    use_amp = amp_enabled(spec.train, device)
    chunks = []
    for start in range(0, len(split), spec.eval.batch_size):
        xb, _ = maker.eval_batch(split, start, start + spec.eval.batch_size)
        with autocast(device, use_amp):
            logits = model(xb)
        chunks.append(torch.softmax(logits.float(), dim=1).cpu())
    split.close()
    return torch.cat(chunks).numpy().astype(np.float32)


def evaluate_run(
    model: nn.Module, spec: RunSpec, bundle: DatasetBundle, run_dir: Path, device: torch.device
) -> dict[str, Any]:
    """Evaluate on the test split, save predictions.npz beside the record, return the metrics block."""
    from .paths import atomic_write_bytes

    probs = predict(model, spec, bundle, device)
    y_true = bundle.test.y.astype(np.int64)
    metrics = metrics_from_predictions(y_true, probs, bundle.num_classes)
    metrics["checkpoint"] = spec.eval.checkpoint
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, y_true=y_true, y_pred=probs.argmax(1).astype(np.int64), probs=probs)
    atomic_write_bytes(run_dir / "predictions.npz", buf.getvalue())
    return metrics
