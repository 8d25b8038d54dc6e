"""Test-set evaluation: owns predicting the test split and `predictions.npz`; never trains.

The metrics are metrics.py's (pure, computed from the predictions), so `archbench verify`, the report
and tests recompute every number from the saved predictions and get the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from archbench.config import RunSpec
from archbench.data.registry import DatasetBundle
from archbench.engine.augment import BatchMaker
from archbench.engine.runtime import amp_enabled, autocast, channels_last_enabled
from archbench.metrics import metrics_from_predictions
from archbench.store.layout import RunLayout


@torch.no_grad()
def predict(
    model: nn.Module, spec: RunSpec, bundle: DatasetBundle, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and logits for the test split (float32, N×K each)."""
    model.eval()
    cl = channels_last_enabled(spec.train, device)
    maker = BatchMaker(bundle, device, spec.data.resolution, spec.data.augment, channels_last=cl)
    from archbench.engine.sources import open_sources

    (split,), _ = open_sources(
        [bundle.test], device, spec.data.memory_budget, bundle.loading.get("prepared_bytes")
    )
    use_amp = amp_enabled(spec.train, device)
    chunks = []
    for start in range(0, len(split), spec.eval.batch_size):
        xb, _ = maker.eval_batch(split, start, start + spec.eval.batch_size)
        with autocast(device, use_amp):
            logits = model(xb)
        chunks.append(logits.float().cpu())
    split.close()
    all_logits = torch.cat(chunks)
    probs = torch.softmax(all_logits, dim=1)
    return probs.numpy().astype(np.float32), all_logits.numpy().astype(np.float32)


def evaluate_run(
    model: nn.Module, spec: RunSpec, bundle: DatasetBundle, run_dir: Path, device: torch.device
) -> dict[str, Any]:
    """Evaluate on the test split, save predictions.npz beside the record, return the metrics block."""
    from archbench.util.paths import atomic_write_bytes

    probs, logits = predict(model, spec, bundle, device)
    y_true = bundle.test.y.astype(np.int64)
    metrics = metrics_from_predictions(y_true, probs, bundle.num_classes, logits=logits)
    metrics["checkpoint"] = spec.eval.checkpoint
    import io

    # Provenance: which test examples these are (rows of the source array named by test_source, whose
    # content the data fingerprint covers, and their names), so a peer can re-evaluate exactly these.
    ids = bundle.test_ids
    if ids is None:
        from archbench.data.registry import SampleIds

        ids = SampleIds(np.arange(len(y_true), dtype=np.int64), "test")
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        y_true=y_true,
        y_pred=probs.argmax(1).astype(np.int64),
        probs=probs,
        logits=logits,
        test_ids=np.array(ids.labels(), dtype=str),
        test_index=np.asarray(ids.index, dtype=np.int64),
        test_source=np.array(ids.prefix),
        data_fingerprint=np.array(bundle.fingerprint),
    )
    atomic_write_bytes(RunLayout(run_dir).predictions, buf.getvalue())
    return metrics
