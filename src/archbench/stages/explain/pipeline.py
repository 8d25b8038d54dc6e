"""One run explained end to end: owns `runs/<id>/explain/heatmaps.npz` and the run's `explain` record block.

Reads what the run left behind (record, best/last checkpoint, predictions.npz, the fingerprint-checked
dataset), takes the sweep's shared selection, computes the heatmaps of every requested method on the
run's own input resolution, and returns the block the stage or the CLI stores in `record.stages`.
Methods run before on the same selection and not asked for again are kept (files and block).
"""

from __future__ import annotations

import gc
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import ExplainSpec
from archbench.stages.explain.analysis import error_analysis
from archbench.stages.explain.selection import SELECTION_NAME, Selection, get_selection
from archbench.store.record import RunRecord
from archbench.util.paths import atomic_write_bytes

HEATMAPS = "explain/heatmaps.npz"  # relative to the run folder
MISTAKE_IMAGES = 8  # confident-mistake thumbnails kept with the heatmaps for the figures
TARGET = "the run's predicted class (predictions.npz)"


def sweep_of(run_dir: Path) -> Path:
    from archbench.store.layout import sweep_of as layout_sweep_of

    return layout_sweep_of(run_dir) or run_dir


def _model_inputs(bundle: Any, rec: RunRecord, rows: np.ndarray, device: Any) -> Any:
    """The exact normalised model input of the chosen test rows, built as evaluation builds it."""
    from archbench.data.registry import Split
    from archbench.engine.augment import BatchMaker, DeviceSplit

    maker = BatchMaker(bundle, device, rec.spec.data.resolution, rec.spec.data.augment)
    split = DeviceSplit(Split(np.ascontiguousarray(rows), np.zeros(rows.shape[0], np.int64)), device)
    x, _ = maker.eval_batch(split, 0, len(split))
    return x


def _previous_maps(run_dir: Path, sel_hash: str) -> dict[str, np.ndarray]:
    """Heatmaps already saved for this run on the same selection (kept when a method is not re-run)."""
    try:
        with np.load(run_dir / HEATMAPS, allow_pickle=False) as z:
            if str(z["selection_hash"]) != sel_hash:
                return {}
            from archbench.stages.explain import METHODS

            return {m: np.asarray(z[m]) for m in METHODS if m in z.files}
    except (OSError, ValueError, KeyError):
        return {}


def _release(device: Any) -> None:
    import torch

    gc.collect()
    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.empty_cache()


def explain_run(
    run_dir: Path,
    rec: RunRecord,
    bundle: Any,
    params: ExplainSpec,
    *,
    device: Any = None,
    policy: str = "reuse",
    model: Any = None,
) -> dict[str, Any]:
    """Explain one completed run; returns its `explain` record block (see `archbench.explain`).

    `model` may be passed already loaded (on `device`); otherwise the evaluated checkpoint is loaded.
    """
    import torch

    from archbench.engine.artifacts import load_model, load_predictions
    from archbench.engine.runtime import resolve_device
    from archbench.stages.explain.methods import explain_model

    t0 = time.perf_counter()
    sweep_dir = sweep_of(run_dir)
    if rec.class_names is None:
        raise ValueError(f"run {rec.run_id}: record has no class names (it never trained)")
    pred = load_predictions(run_dir)
    y_true, probs = pred["y_true"].astype(np.int64), pred["probs"]
    analysis = error_analysis(y_true, probs, rec.class_names)
    fingerprint = rec.data_fingerprint or bundle.fingerprint
    sel: Selection = get_selection(
        sweep_dir,
        fingerprint,
        bundle.test.x,
        bundle.test.y,
        select=params.select,
        images=params.images,
        seed=params.seed,
        policy=policy,
        current=(run_dir, rec),
    )
    idx = np.asarray(sel.indices, dtype=np.int64)
    targets_np = probs[idx].argmax(1).astype(np.int64)
    confidence = probs[idx, targets_np].astype(np.float32)

    device = torch.device(device) if device is not None else resolve_device(rec.spec.train.device)
    if model is None:
        model = load_model(run_dir, rec, device)
    try:
        x = _model_inputs(bundle, rec, bundle.test.x[idx], device)
        baseline = _model_inputs(bundle, rec, np.zeros_like(bundle.test.x[:1]), device)
        targets = torch.from_numpy(targets_np).to(device)
        outcomes = explain_model(model, rec.spec.model.name, x, targets, list(params.methods), baseline)
        input_size = [int(x.shape[-2]), int(x.shape[-1])]
    finally:
        del model
        _release(device)

    previous = rec.stages.get("explain") if isinstance(rec.stages.get("explain"), dict) else None
    kept = _previous_maps(run_dir, sel.hash)
    methods_info: dict[str, Any] = {}
    maps: dict[str, np.ndarray] = {}
    if previous is not None and previous.get("selection", {}).get("hash") == sel.hash:
        for m, info in previous.get("methods", {}).items():
            if m not in outcomes and (info.get("status") != "ok" or m in kept):
                methods_info[m] = info
                if m in kept:
                    maps[m] = kept[m]
    for m, res in outcomes.items():
        methods_info[m] = {"status": res.status, **res.info}
        if res.status == "ok" and res.heatmaps is not None:
            maps[m] = res.heatmaps
    from archbench.stages.explain import METHODS

    rank = {m: i for i, m in enumerate(METHODS)}
    methods_info = dict(sorted(methods_info.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    wrong = [e["index"] for e in analysis["confident_mistakes"][:MISTAKE_IMAGES]]
    buf = io.BytesIO()
    arrays: dict[str, Any] = dict(
        indices=idx,
        y_true=bundle.test.y[idx].astype(np.int64),
        targets=targets_np,
        confidence=confidence,
        selection_hash=np.array(sel.hash),
        mistake_indices=np.asarray(wrong, dtype=np.int64),
        mistake_images=bundle.test.x[np.asarray(wrong, dtype=np.int64)],
        **maps,
    )
    np.savez_compressed(buf, **arrays)
    (run_dir / "explain").mkdir(exist_ok=True)
    atomic_write_bytes(run_dir / HEATMAPS, buf.getvalue())

    return {
        "selection": {
            "hash": sel.hash,
            "select": sel.select,
            "images": len(sel.indices),
            "seed": sel.seed,
            "indices": sel.indices,
            "reused": sel.reused,
        },
        "target": TARGET,
        "device": str(device),
        "input_size": input_size,
        "methods_run": [m for m, info in methods_info.items() if info.get("status") == "ok"],
        "methods": methods_info,
        "skipped": {m: i["reason"] for m, i in methods_info.items() if i.get("status") == "skipped"},
        "errors": {m: i["error"] for m, i in methods_info.items() if i.get("status") == "error"},
        "paths": {
            "heatmaps": HEATMAPS,
            "selection": f"../../stages/explain/{SELECTION_NAME}",
            "figures": "../../stages/explain/index.json",
        },
        "seconds": round(time.perf_counter() - t0, 3),
        "error_analysis": analysis,
    }
