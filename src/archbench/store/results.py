"""Reading a sweep's results: owns turning run records into rows (DataFrame, results.csv).

Reads records only (never live objects). Missing and failed runs are listed as such, never filled in.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from archbench.store.layout import SweepLayout, sweep_of
from archbench.store.record import PROFILE_SUMMARY_KEYS, RunRecord, read_record
from archbench.util.escape import visible
from archbench.util.paths import safe_join, slugify


def find_sweep_dirs(path: Path) -> list[Path]:
    """`path` may be a sweep folder (has runs/), an output_dir holding several sweeps, or one run folder."""
    path = Path(path)

    def is_sweep(p: Path) -> bool:  # a `runs` symlink (pointing anywhere) is never followed
        runs = SweepLayout(p).runs
        return runs.is_dir() and not runs.is_symlink()

    if is_sweep(path):
        return [path]
    return sorted(p for p in path.iterdir() if is_sweep(p)) if path.is_dir() else []


def iter_records(path: Path) -> list[tuple[Path, RunRecord | None, dict[str, Any] | None]]:
    """(run_dir, record or None, plan entry or None) for every planned or present run.

    Run ids read from plan.json go through `safe_join`: an id such as `../../x` or `/etc` is never read;
    it is returned with `unsafe_path` in its plan entry and a placeholder folder name.
    """
    out: list[tuple[Path, RunRecord | None, dict[str, Any] | None]] = []
    for sd in find_sweep_dirs(path):
        layout = SweepLayout(sd)
        planned: dict[str, dict[str, Any]] = {}
        try:
            plan = json.loads(layout.plan.read_text())
            planned = {str(r["run_id"]): r for r in plan.get("runs", []) if isinstance(r, dict)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        runs = layout.runs
        present = sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
        for rid in list(planned) + [r for r in present if r not in planned]:
            try:
                safe_join(runs, rid)
                run_dir = layout.run_dir(rid)
            except ValueError as exc:
                entry = {**planned.get(rid, {}), "unsafe_path": f"unsafe_path: {exc}"}
                out.append((layout.run_dir(f"unsafe-{slugify(rid, max_len=24)}"), None, entry))
                continue
            rec = read_record(run_dir) if run_dir.is_dir() else None
            out.append((run_dir, rec, planned.get(rid)))
    return out


def record_row(run_dir: Path, rec: RunRecord | None, plan: dict[str, Any] | None) -> dict[str, Any]:
    axes = rec.axes if rec else (plan or {}).get("axes", {})
    if not isinstance(axes, dict):
        axes = {}
    row: dict[str, Any] = {"run_id": run_dir.name, "sweep": (sweep_of(run_dir) or run_dir).name}
    row["status"] = rec.status if rec else "missing"
    if plan is not None and plan.get("unsafe_path"):
        row["run_id"] = str(plan.get("run_id"))
        row["status"] = "unsafe_path"
        row["failure_reason"] = plan["unsafe_path"]
        return row
    for k, v in axes.items():
        row[k] = v
    role = (rec.tune or {}).get("role") if rec else (plan or {}).get("role")
    if role:
        row["role"] = role
    if rec is None:
        return row
    s = rec.spec
    row.update(
        {
            "model": s.model.name,
            "pool": s.model.pool,
            "optimizer": s.train.optimizer,
            "lr": s.train.lr,
            "epochs": s.train.epochs,
            "resolution": s.data.resolution,
            "dataset": s.data.kind,
            "seed": rec.seed,
            "spec_hash": rec.spec_hash,
            "data_fingerprint": rec.data_fingerprint,
            "failure_reason": rec.failure_reason,
            "train_seconds": rec.train_seconds,
            "params": rec.params["total"] if rec.params else None,
            "resumes": rec.resumes,
            "started_at": rec.started_at,
            "ended_at": rec.ended_at,
        }
    )
    if rec.metrics is not None:
        m = rec.metrics
        row.update(
            {
                "top1": m.top1,
                "top5": m.top5,
                "f1_macro": m.f1_macro,
                "f1_weighted": m.f1_weighted,
                "kappa": m.kappa,
                "test_loss": m.loss,
            }
        )
    if rec.history:
        row["best_val_acc"] = max(h.val_acc for h in rec.history)
    prof = rec.stages.get("profile") if rec.stages else None
    if isinstance(prof, dict):
        for key in PROFILE_SUMMARY_KEYS:
            if key in prof:
                row[key] = prof[key]
    return row


def load_results(path: str | Path) -> Any:
    """A pandas DataFrame with one row per planned or present run of the sweep(s) under `path`."""
    import pandas as pd

    rows = [record_row(d, r, p) for d, r, p in iter_records(Path(path))]
    return pd.DataFrame(rows)


def neutralise_csv_cell(value: Any) -> Any:
    """A text cell with its control characters made visible (escape.py: a raw tab, CR or ESC never reaches
    the file), then prefixed with a quote when it starts with = + - @ (spreadsheet formula injection)."""
    if not isinstance(value, str):
        return value
    value = visible(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: neutralise_csv_cell(v) for k, v in r.items()})
    return buf.getvalue()
