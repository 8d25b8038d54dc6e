"""Re-deriving a run's test predictions from its checkpoint (`archbench verify --deep`): owns re-evaluating
the evaluated checkpoint on the run's stored test samples and comparing with its predictions.npz, and the
tolerance that comparison uses (stored with the run when it is evaluated); never writes.

Plain verification (store/verify.py) proves the files are the ones the record vouches for and that every
metric recomputes from predictions.npz. It cannot see a consistent replacement: another run's predictions
with its metrics and hashes written into the record. This re-runs the model. Per run: the dataset is
opened through `create_dataset` (its fingerprint must be the record's), the test samples named in
predictions.npz must be the spec's test split, the model is rebuilt and loaded from the evaluated
checkpoint (which must name this run), and its logits must equal the stored ones — bitwise when the run
was evaluated on CPU with deterministic kernels (same threads, same batch size), else within the stored
`reproduce` tolerance. Runs without that block (written before it existed) get it derived from their
`device` block, and say so.

Cost: per run, one dataset open (a memory map when the prepared-data cache holds it) and one forward pass
over the test split — the `evaluate` part of a run, never training — plus a torch import per worker
process. Runs are spread over a process pool of at most the usable cores.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE_FP32 = {"compare": "allclose", "atol": 1e-3, "rtol": 1e-3}  # other kernels, reduction orders
TOLERANCE_BF16 = {"compare": "allclose", "atol": 5e-2, "rtol": 5e-2}  # autocast bf16: 8-bit mantissa


def reproduce_block(device: dict[str, Any]) -> dict[str, Any]:
    """How a re-evaluation of a run evaluated on `device` (the record's device block) must match."""
    if device.get("type") == "cpu" and device.get("deterministic"):
        return {"compare": "bitwise", "threads": device.get("threads")}
    base = TOLERANCE_BF16 if device.get("amp") == "bf16" else TOLERANCE_FP32
    return {**base, "device": device.get("type")}


def _stored_predictions(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO((run_dir / "predictions.npz").read_bytes()), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _test_ids_problem(stored: dict[str, np.ndarray], bundle: Any) -> str | None:
    ids = bundle.test_ids
    if "test_index" not in stored or ids is None:
        return "predictions.npz names no test samples (test_index), so there is nothing to re-evaluate on"
    same = (
        str(stored.get("test_source", "")) == ids.prefix
        and np.array_equal(stored["test_index"], np.asarray(ids.index))
        and "y_true" in stored
        and np.array_equal(stored["y_true"], bundle.test.y)
    )
    return None if same else "the test samples in predictions.npz are not this run's test split"


def _compare(new: np.ndarray, old: Any, rule: dict[str, Any]) -> str | None:
    if not isinstance(old, np.ndarray) or old.shape != new.shape:
        return f"predictions.npz logits have shape {getattr(old, 'shape', None)}, re-evaluation {new.shape}"
    if rule.get("compare") == "bitwise":
        if np.array_equal(new, old):
            return None
        return f"logits differ from predictions.npz (bitwise rule; max |diff| {np.abs(new - old).max():.3g})"
    atol, rtol = float(rule.get("atol", 0.0)), float(rule.get("rtol", 0.0))
    if np.allclose(new, old, atol=atol, rtol=rtol):
        return None
    worst = float(np.abs(new - old).max())
    return f"logits differ from predictions.npz beyond atol={atol:g}, rtol={rtol:g} (max |diff| {worst:.3g})"


def reevaluate_run(run_dir: str) -> list[str]:
    """Problems found re-evaluating one completed run (empty: it reproduces). Runs in a worker process."""
    import torch

    from archbench.data import create_dataset
    from archbench.engine.evaluate import predict
    from archbench.models import create_model
    from archbench.store.checkpoint import check_owner, load_checkpoint
    from archbench.store.record import read_record
    from archbench.util.errors import ArchbenchError

    folder = Path(run_dir)
    rec = read_record(folder)
    if rec is None or rec.metrics is None:
        return ["no completed record with metrics to re-evaluate"]
    rule = rec.reproduce or reproduce_block(rec.device)
    note = "" if rec.reproduce else " (tolerance derived from the device block: the record predates it)"
    use_cuda = rec.device.get("type") == "cuda" and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    if rule.get("threads"):
        torch.set_num_threads(int(rule["threads"]))  # CPU reductions are split by thread: same split
    try:
        bundle = create_dataset(rec.spec.data)
        if bundle.fingerprint != rec.data_fingerprint:
            return ["the dataset's fingerprint is not the record's (the data changed): cannot re-evaluate"]
        stored = _stored_predictions(folder)
        problem = _test_ids_problem(stored, bundle)
        if problem:
            return [problem]
        ckpt = folder / "checkpoints" / f"{rec.spec.eval.checkpoint}.pt"
        state = load_checkpoint(ckpt)
        check_owner(ckpt, state, {"run_id": rec.run_id, "spec_hash": rec.spec_hash})
        spec_model = rec.spec.model.model_copy(
            update={"pretrained": None}
        )  # the checkpoint holds the weights
        size = rec.spec.data.resolution or bundle.native_size[0]
        model = create_model(
            spec_model, in_chans=bundle.in_chans, num_classes=bundle.num_classes, image_size=size
        )
        model.load_state_dict(state["model"])
        _, logits = predict(model.to(device), rec.spec, bundle, device)
    except (ArchbenchError, OSError, ValueError, RuntimeError, KeyError) as exc:
        return [f"cannot re-evaluate: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"]
    problem = _compare(logits, stored.get("logits"), rule)
    return [f"deep: {problem}{note}"] if problem else []


def reevaluate_runs(run_dirs: list[Path], workers: int | None = None) -> dict[Path, list[str]]:
    """`reevaluate_run` for each folder, in parallel over at most `workers` (default: usable cores)
    spawned processes (fresh interpreters: torch is never forked)."""
    if not run_dirs:
        return {}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from archbench.util.machine import usable_cores

    n = max(1, min(len(run_dirs), workers or usable_cores()))
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn")) as pool:
        found = pool.map(reevaluate_run, [str(d) for d in run_dirs])
        return dict(zip(run_dirs, found, strict=True))


__all__ = ["reevaluate_run", "reevaluate_runs", "reproduce_block"]
