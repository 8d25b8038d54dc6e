"""Verifying stored results: owns the checks that every number a record vouches for is still true.

Reads records and files only. For each run: the record validates and sits in its own folder (its run id,
ending with its spec hash; the spec hash of the plan entry naming the folder, when a plan names it); every
artifact it lists (checkpoints, predictions.npz, history.csv) has the sha256 it recorded; and every test
metric (top-1, top-5, loss, precision/recall/F1, kappa, per-class accuracy, confusion matrix, n_test)
recomputes from predictions.npz to the stored value. `ls`, `report`
and `archbench verify` use `verify_run`; nothing here writes.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.store.layout import HISTORY_NAME, PREDICTIONS_NAME, RunLayout, sweep_of
from archbench.store.record import RunRecord, read_record
from archbench.util.paths import file_sha256

# The artifacts a completed record vouches for (relative to its run folder). The evaluated checkpoint is
# required; the other checkpoint is checked when the record lists it.
DERIVED = (PREDICTIONS_NAME, HISTORY_NAME)


@dataclass
class Verdict:
    """One run's verification result: `ok` only when every check passed."""

    run_id: str
    status: str  # the record's status, or missing / unsafe_path / invalid
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    in_plan: bool = True  # in the sweep's current plan (a run outside it is kept, never required)

    @property
    def ok(self) -> bool:
        # "pruned" is a finished tuning trial (its pruner stopped it); it vouches for what it kept.
        return self.status in ("completed", "pruned") and not self.problems

    @property
    def intact(self) -> bool:
        """Nothing wrong with this run: it verified, or it is an unfinished run that the current plan no
        longer lists (nothing is required of it; a completed one is checked like any other)."""
        return self.ok or (not self.in_plan and not self.problems and self.status != "completed")

    @property
    def text(self) -> str:
        if self.ok:
            return "verified" if self.in_plan else "verified (not in the current plan)"
        if self.status != "completed" and not self.problems:
            if not self.in_plan:
                return f"not in the current plan (run {self.status})"
            return f"not verified: run {self.status}"
        return "NOT VERIFIED: " + "; ".join(self.problems)


def artifact_hashes(run_dir: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each existing artifact, keyed by its path relative to the run folder."""
    out = {}
    for name in names:
        p = run_dir / name  # `name`: the record's key, relative to the run folder (`RunLayout.relative`)
        if p.is_file() and not p.is_symlink():
            out[name] = file_sha256(p)
    return out


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_close, a, b))
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return bool(a == b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)


def recompute_metrics(run_dir: Path, rec: RunRecord) -> tuple[dict[str, Any] | None, str | None]:
    """The metrics recomputed from predictions.npz, or (None, why not)."""
    import numpy as np

    from archbench.metrics import metrics_from_predictions

    try:
        raw = RunLayout(run_dir).predictions.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            preds = {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None, "predictions.npz is missing"
    except Exception as exc:  # truncated zip, bad header, anything numpy refuses
        return None, f"predictions.npz unreadable ({type(exc).__name__})"
    if not {"y_true", "probs"} <= set(preds):
        return None, "predictions.npz lacks y_true/probs"
    n_classes = len(rec.class_names or []) or int(preds["probs"].shape[1])
    y_true, probs = preds["y_true"], preds["probs"]
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0] or probs.shape[1] != n_classes:
        return None, f"predictions.npz shapes {y_true.shape} / {probs.shape} do not fit {n_classes} classes"
    if "y_pred" in preds and not np.array_equal(preds["y_pred"], probs.argmax(1)):
        return None, "predictions.npz: y_pred is not the argmax of probs"
    logits = preds.get("logits")
    return metrics_from_predictions(y_true, probs, n_classes, logits=logits), None


def verify_run(run_dir: Path, plan_entry: dict[str, Any] | None, rec: RunRecord | None = None) -> Verdict:
    """Check one run folder against its plan entry; never raises for bad content."""
    run_id = run_dir.name
    if plan_entry is not None and plan_entry.get("unsafe_path"):
        return Verdict(str(plan_entry.get("run_id")), "unsafe_path", [str(plan_entry["unsafe_path"])])
    if rec is None:
        rec = read_record(run_dir)
    if rec is None:
        if RunLayout(run_dir).record.exists():
            return Verdict(
                run_id, "invalid", ["record.json does not validate or its spec hash is not its own"]
            )
        return Verdict(run_id, "missing")
    v = Verdict(run_id, rec.status)
    _check_placement(v, rec, plan_entry)
    trial = (getattr(rec, "tune", None) or {}).get("role") == "trial"
    if rec.status != "completed" or v.problems:
        return v  # a misplaced record vouches for nothing here; its other checks would only add noise
    _check_artifacts(v, run_dir, rec, trial)
    if not trial:  # a tuning trial never sees the test split: no predictions, no test metrics to check
        _check_metrics(v, run_dir, rec)
    return v


def _check_placement(v: Verdict, rec: RunRecord, plan_entry: dict[str, Any] | None) -> None:
    """The record sits in its own run's folder, under the plan entry (when a plan names the folder: the
    current one, or the latest earlier one) with its spec hash."""
    if rec.run_id != v.run_id:
        v.problems.append(f"record is for run {rec.run_id}, not this folder's run {v.run_id}")
    if plan_entry is not None and plan_entry.get("spec_hash") != rec.spec_hash:
        v.problems.append("record's spec hash differs from the plan entry for this folder")
    if not rec.run_id.endswith(rec.spec_hash[:10]):
        v.problems.append("run id does not end with its spec hash")
    v.checked.append("placement")


def _check_artifacts(v: Verdict, run_dir: Path, rec: RunRecord, trial: bool) -> None:
    """Every artifact the record must list is listed, and every listed one has its recorded sha256."""
    layout = RunLayout(run_dir)
    artifacts: dict[str, str] = dict(getattr(rec, "artifacts", None) or {})
    evaluated = layout.relative(layout.checkpoint(rec.spec.eval.checkpoint))
    required = (evaluated, HISTORY_NAME) if trial else (evaluated, *DERIVED)
    for name in required:
        if name not in artifacts:
            v.problems.append(f"record has no sha256 for {name} (written before verification existed?)")
    for name, digest in sorted(artifacts.items()):
        p = run_dir / name  # the record's key: a path relative to the run folder
        if p.is_symlink() or not p.is_file():
            v.problems.append(f"{name} is missing")
        elif file_sha256(p) != digest:
            v.problems.append(f"{name} does not match its sha256 in the record")
    v.checked.append("artifacts")


def _check_metrics(v: Verdict, run_dir: Path, rec: RunRecord) -> None:
    """Every stored test metric recomputes from predictions.npz."""
    if rec.metrics is None:
        v.problems.append("completed record has no metrics")
        return
    fresh, why = recompute_metrics(run_dir, rec)
    if fresh is None:
        v.problems.append(str(why))
        return
    stored = rec.metrics.model_dump()
    for key, value in fresh.items():
        if key in stored and not _close(stored[key], value):
            v.problems.append(f"metrics.{key} {_short(stored[key])} != {_short(value)} from predictions.npz")
    v.checked.append("metrics")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def verify_path(path: Path) -> list[tuple[str, Verdict]]:
    """(sweep folder name, verdict) for every run of the current plans under `path` and every other run
    folder there (those marked `in_plan=False`)."""
    from archbench.store.results import find_runs

    out = []
    for f in find_runs(path):
        verdict = verify_run(f.run_dir, f.plan, f.record)
        verdict.in_plan = f.in_plan
        out.append(((sweep_of(f.run_dir) or f.run_dir).name, verdict))
    return out


__all__ = ["DERIVED", "Verdict", "artifact_hashes", "recompute_metrics", "verify_path", "verify_run"]
