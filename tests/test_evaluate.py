"""The numpy metrics agree with scikit-learn's definitions (the evaluator avoids importing scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest

from archbench.engine.evaluate import metrics_from_predictions


def _sklearn_metrics(y: np.ndarray, probs: np.ndarray, k: int) -> dict[str, object]:
    from sklearn.metrics import (
        cohen_kappa_score,
        confusion_matrix,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    labels = np.arange(k)
    pred = probs.argmax(1)
    out: dict[str, object] = {
        "top5": top_k_accuracy_score(y, probs, k=5, labels=labels) if k >= 5 else None,
        "kappa": cohen_kappa_score(y, pred, labels=labels),
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
    }
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        out.update({f"precision_{avg}": p, f"recall_{avg}": r, f"f1_{avg}": f})
    return out


@pytest.mark.parametrize("k,n,absent", [(10, 500, None), (4, 37, 2), (12, 300, 5)])
def test_numpy_metrics_equal_sklearn(k: int, n: int, absent: int | None) -> None:
    rng = np.random.default_rng(k * n)
    y = rng.integers(0, k, n)
    if absent is not None:  # a class missing from the test set, and one never predicted
        y[y == absent] = (absent + 1) % k
    logits = rng.normal(0, 1, (n, k)).astype(np.float32)
    logits[np.arange(n), y] += 1.5
    logits[:, (absent or 0)] -= 10 if absent is not None else 0
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    probs[:3] = np.float32(1.0 / k)  # exact ties decide top-5 by sklearn's order
    ours = metrics_from_predictions(y, probs, k)
    ref = _sklearn_metrics(y, probs, k)
    # The loss is float64 without sklearn's float32-eps clipping (issue 11): -mean log p, and from the
    # logits (log-softmax) when they are given.
    p64 = probs.astype(np.float64)[np.arange(n), y]
    assert ours["loss"] == pytest.approx(float(-np.log(p64).mean()), rel=1e-12)
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    with_logits = metrics_from_predictions(y, probs, k, logits=logits)
    assert with_logits["loss"] == pytest.approx(float(-logp[np.arange(n), y].mean()), rel=1e-12)
    assert ours["confusion_matrix"] == ref["confusion_matrix"]
    for key, v in ref.items():
        if key == "confusion_matrix":
            continue
        if v is None:
            assert ours[key] is None
        else:
            assert ours[key] == pytest.approx(float(v), rel=1e-6, abs=1e-9), key
