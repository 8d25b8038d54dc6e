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
from typing import TYPE_CHECKING, Any

import numpy as np

from archbench.config import ExplainSpec
from archbench.stages.explain.analysis import error_analysis
from archbench.stages.explain.selection import SELECTION_NAME, Selection, get_selection
from archbench.store.layout import RunLayout, sweep_of
from archbench.store.record import RunRecord
from archbench.util.paths import atomic_write_bytes

if TYPE_CHECKING:
    import torch

    from archbench.stages.explain.methods import MethodOutcome

STAGE_FOLDER = "explain"  # the run's own explain files: runs/<id>/explain/
HEATMAPS_FILE = "heatmaps.npz"
HEATMAPS = f"{STAGE_FOLDER}/{HEATMAPS_FILE}"  # relative to the run folder, as the record's block says
MISTAKE_IMAGES = 8  # confident-mistake thumbnails kept with the heatmaps for the figures
TARGET = "the run's predicted class (predictions.npz)"


def heatmaps_path(run_dir: Path) -> Path:
    """`<run>/explain/heatmaps.npz`."""
    return RunLayout(run_dir).stage_files(STAGE_FOLDER) / HEATMAPS_FILE


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
        with np.load(heatmaps_path(run_dir), allow_pickle=False) as z:
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
    device: torch.device,
    policy: str = "reuse",
    model: Any = None,
) -> dict[str, Any]:
    """Explain one completed run on `device`; returns its `explain` record block (see `archbench.explain`).

    `model` may be passed already loaded (on `device`); otherwise the evaluated checkpoint is loaded.
    """
    from archbench.engine.artifacts import load_predictions

    t0 = time.perf_counter()
    if rec.class_names is None:
        raise ValueError(f"run {rec.run_id}: record has no class names (it never trained)")
    pred = load_predictions(run_dir)
    probs = pred["probs"]
    analysis = error_analysis(pred["y_true"].astype(np.int64), probs, rec.class_names)
    sel = get_selection(
        sweep_of(run_dir) or run_dir,
        rec.data_fingerprint or bundle.fingerprint,
        bundle.test.x,
        bundle.test.y,
        select=params.select,
        images=params.images,
        seed=params.seed,
        policy=policy,
        current=(run_dir, rec),
    )
    idx = np.asarray(sel.indices, dtype=np.int64)
    targets = probs[idx].argmax(1).astype(np.int64)
    outcomes, input_size = _heatmaps(run_dir, rec, bundle, idx, targets, list(params.methods), device, model)
    methods_info, maps = _merge_previous(run_dir, rec, sel, outcomes)
    _write_heatmaps(
        run_dir, bundle, sel, idx, targets, probs[idx, targets].astype(np.float32), maps, analysis
    )
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


def _heatmaps(
    run_dir: Path, rec: RunRecord, bundle: Any, idx: np.ndarray, targets: np.ndarray, methods: list[str],
    device: torch.device, model: Any,
) -> tuple[dict[str, MethodOutcome], list[int]]:  # fmt: skip
    """Every method's outcome on the selected images (the model is freed afterwards), and the input size."""
    import torch

    from archbench.engine.artifacts import load_model
    from archbench.stages.explain.methods import explain_model

    if model is None:
        model = load_model(run_dir, rec, device)
    try:
        x = _model_inputs(bundle, rec, bundle.test.x[idx], device)
        baseline = _model_inputs(bundle, rec, np.zeros_like(bundle.test.x[:1]), device)
        on_device = torch.from_numpy(targets).to(device)
        outcomes = explain_model(model, rec.spec.model.name, x, on_device, methods, baseline)
        return outcomes, [int(x.shape[-2]), int(x.shape[-1])]
    finally:
        del model
        _release(device)


def _merge_previous(
    run_dir: Path, rec: RunRecord, sel: Selection, outcomes: dict[str, MethodOutcome]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Methods' info and heatmaps: this call's, plus those of earlier calls on the same selection that were
    not asked for again (their maps kept from the file), in METHODS order."""
    from archbench.stages.explain import METHODS

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
    rank = {m: i for i, m in enumerate(METHODS)}
    return dict(sorted(methods_info.items(), key=lambda kv: rank.get(kv[0], len(rank)))), maps


def _write_heatmaps(
    run_dir: Path, bundle: Any, sel: Selection, idx: np.ndarray, targets: np.ndarray, confidence: np.ndarray,
    maps: dict[str, np.ndarray], analysis: dict[str, Any],
) -> None:  # fmt: skip
    """`<run>/explain/heatmaps.npz`: the maps with what the figures need beside them (atomic)."""
    wrong = np.asarray([e["index"] for e in analysis["confident_mistakes"][:MISTAKE_IMAGES]], dtype=np.int64)
    buf = io.BytesIO()
    arrays: dict[str, Any] = dict(
        indices=idx,
        y_true=bundle.test.y[idx].astype(np.int64),
        targets=targets,
        confidence=confidence,
        selection_hash=np.array(sel.hash),
        mistake_indices=wrong,
        mistake_images=bundle.test.x[wrong],
        **maps,
    )
    np.savez_compressed(buf, **arrays)
    path = heatmaps_path(run_dir)
    path.parent.mkdir(exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
