"""Test-set evaluation: owns the metrics (via scikit-learn) and `predictions.npz`; never trains.

`metrics_from_predictions` is pure so the report and tests can recompute every number from the saved
predictions and get the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .augment import BatchMaker, DeviceSplit
from .config import RunSpec
from .data.registry import DatasetBundle
from .train import _autocast, amp_enabled, channels_last_enabled


def metrics_from_predictions(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, Any]:
    from sklearn.metrics import (
        cohen_kappa_score,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    labels = np.arange(num_classes)
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(1)
    per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    out: dict[str, Any] = {"top1": float((y_pred == y_true).mean()), "n_test": int(y_true.shape[0])}
    out["top5"] = float(top_k_accuracy_score(y_true, probs, k=5, labels=labels)) if num_classes >= 5 else None
    out["loss"] = float(log_loss(y_true, np.clip(probs, 1e-12, 1.0), labels=labels))
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    kappa = cohen_kappa_score(y_true, y_pred, labels=labels)
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
    split = DeviceSplit(bundle.test, device)
    use_amp = amp_enabled(spec.train, device)
    chunks = []
    for start in range(0, len(split), spec.eval.batch_size):
        xb, _ = maker.eval_batch(split, start, start + spec.eval.batch_size)
        with _autocast(device, use_amp):
            logits = model(xb)
        chunks.append(torch.softmax(logits.float(), dim=1).cpu())
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
