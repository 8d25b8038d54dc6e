"""Reading a sweep's results: owns turning run records into rows (DataFrame, results.csv).

Reads records only (never live objects). Missing and failed runs are listed as such, never filled in.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.store.layout import SweepLayout, sweep_of
from archbench.store.plans import current_plan, every_planned
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


@dataclass(frozen=True)
class FoundRun:
    """A run of a sweep folder as a listing sees it."""

    run_dir: Path
    record: RunRecord | None
    plan: dict[str, Any] | None  # its entry in the current plan, else in the latest earlier plan naming it
    in_plan: bool = True  # in the current plan (every run is, in a folder without a readable plan.json)


# Which runs a listing covers: the current plan's ("plan"; every present run when the folder has no
# readable plan.json), those and every other run folder present ("present"), or also every run an earlier
# plan listed ("all").
SCOPES = ("plan", "present", "all")


def find_runs(path: Path, scope: str = "present") -> list[FoundRun]:
    """The runs of every sweep under `path`, current plan first (see SCOPES).

    Run ids read from plan files go through `safe_join`: an id such as `../../x` or `/etc` is never read;
    it is returned with `unsafe_path` in its plan entry and a placeholder folder name.
    """
    out: list[FoundRun] = []
    for sd in find_sweep_dirs(path):
        current = current_plan(sd)
        runs = SweepLayout(sd).runs
        present = sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
        if current is None:  # no plan to go by: every run folder is the sweep
            out += [_found(runs, rid, None, True) for rid in present]
            continue
        outside = [r for r in present if r not in current] if scope != "plan" else []
        earlier = every_planned(sd) if outside or scope == "all" else {}
        found = [_found(runs, rid, entry, True) for rid, entry in current.items()]
        found += [_found(runs, rid, earlier.get(rid), False) for rid in outside]
        if scope == "all":
            found += _never_ran(runs, earlier, found)
        out += found
    return out


def _never_ran(runs: Path, earlier: dict[str, dict[str, Any]], found: list[FoundRun]) -> list[FoundRun]:
    """Runs an earlier plan listed that have no folder, one per spec that no listed run holds (a spec is
    one run, whatever its label)."""
    listed = {f.run_dir.name for f in found}
    held = {f.record.spec_hash if f.record else (f.plan or {}).get("spec_hash") for f in found}
    out = []
    for rid, entry in earlier.items():
        if rid in listed or entry.get("spec_hash") in held:
            continue
        held.add(entry.get("spec_hash"))
        out.append(_found(runs, rid, entry, False))
    return out


def _found(runs: Path, rid: str, entry: dict[str, Any] | None, in_plan: bool) -> FoundRun:
    try:
        safe_join(runs, rid)
        run_dir = runs / rid
    except ValueError as exc:
        unsafe = {**(entry or {}), "run_id": rid, "unsafe_path": f"unsafe_path: {exc}"}
        return FoundRun(runs / f"unsafe-{slugify(rid, max_len=24)}", None, unsafe, in_plan)
    rec = read_record(run_dir) if run_dir.is_dir() else None
    return FoundRun(run_dir, rec, entry, in_plan)


def iter_records(
    path: Path, scope: str = "present"
) -> list[tuple[Path, RunRecord | None, dict[str, Any] | None]]:
    """(run_dir, record or None, current plan entry or None) for the runs `find_runs` lists."""
    out = []
    for f in find_runs(path, scope):
        unsafe = f.plan is not None and bool(f.plan.get("unsafe_path"))
        out.append((f.run_dir, f.record, f.plan if f.in_plan or unsafe else None))
    return out


def record_row(run_dir: Path, rec: RunRecord | None, plan: dict[str, Any] | None) -> dict[str, Any]:
    """One listing row. The grid axes are the record's, with those of the plan entry it lacks (a reused
    run's record holds the axes of the grid that first planned it, e.g. no `seed` added since)."""
    axes = run_axes(rec, plan)
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


def run_axes(rec: RunRecord | None, plan: dict[str, Any] | None) -> dict[str, Any]:
    """A run's grid values: its record's, completed by its plan entry's (in the plan's order)."""
    planned = (plan or {}).get("axes")
    axes = dict(planned) if isinstance(planned, dict) else {}
    return axes | (rec.axes if rec is not None else {})


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


def rows_to_csv(rows: list[dict[str, Any]], fields: list[str] | None = None) -> str:
    """CSV text of `rows`, text cells neutralised; columns in first-seen key order, or `fields` (keys
    outside them left out; a header alone when there are no rows)."""
    cols: list[str] = list(fields or [])
    if fields is None:
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: neutralise_csv_cell(v) for k, v in r.items()})
    return buf.getvalue()
