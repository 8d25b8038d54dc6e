"""The `ls` view of sweeps: owns which columns a listing shows and rendering it as a table, CSV or JSON.

Reads rows made from records (results.py) and never truncates a value: the table is as wide as its
widest row when the output is not a terminal, and CSV/JSON carry the full values.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from archbench.cli.progress import fmt_duration
from archbench.store.lock import RunClaim
from archbench.store.record import PROFILE_SUMMARY_KEYS, RunRecord
from archbench.store.results import FoundRun
from archbench.util.terminal import literal

BASE_COLUMNS = ("run_id", "status")
METRIC_COLUMNS = ("top1", "f1_macro", "train_seconds")
PROFILE_COLUMNS = PROFILE_SUMMARY_KEYS  # the record schema names them
FORMATS = ("table", "csv", "json")


def progress_fields(run_dir: Path, rec: RunRecord | None) -> dict[str, Any]:
    """`progress` (epochs done/total) for every recorded run; for a running one, whether its owner is alive
    and the ETA from the mean epoch time so far."""
    if rec is None:
        return {}
    total = rec.spec.train.epochs
    done = len(rec.history)
    out: dict[str, Any] = {"progress": f"{done}/{total}"}
    if rec.status != "running":
        return out
    if not RunClaim(run_dir).held_by_someone():
        out["eta"] = "owner gone (re-run to resume)"
        return out
    if done == 0:
        out["eta"] = "first epoch"
        return out
    per_epoch = sum(h.seconds for h in rec.history) / done
    remaining = per_epoch * (total - done)
    try:  # the current epoch has been running since the record was last written
        mtime = (run_dir / "record.json").stat().st_mtime
        remaining -= min(per_epoch, max(0.0, time.time() - mtime))
    except OSError:
        pass
    out["eta"] = fmt_duration(max(0.0, remaining))
    out["eta_seconds"] = round(max(0.0, remaining), 1)
    return out


NOT_PLANNED = "not in the current plan"


def listed_rows(path: Path) -> tuple[list[FoundRun], list[dict[str, Any]]]:
    """Every run the sweeps under `path` have had (`find_runs` scope all) and its listing row: record,
    progress, whether a completed run verifies, and `planned` for a run the current plan no longer lists."""
    from archbench.store.results import find_runs, record_row
    from archbench.store.verify import verify_run

    found = find_runs(path, "all")
    rows = []
    for f in found:
        row = record_row(f.run_dir, f.record, f.plan) | progress_fields(f.run_dir, f.record)
        if f.record is not None and f.record.status == "completed":
            verdict = verify_run(f.run_dir, f.plan, f.record)  # changed files or numbers: marked, not trusted
            row["verified"] = "yes" if verdict.ok else "NO"
            if not verdict.ok:
                row["verify_problems"] = "; ".join(verdict.problems)
        if not f.in_plan:
            row["planned"] = NOT_PLANNED
        rows.append(row)
    return found, rows


def axis_columns(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
    return [a for a in axes if any(a in r for r in rows)]


def table_columns(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
    cols = list(BASE_COLUMNS) + (["planned"] if any("planned" in r for r in rows) else [])
    cols += axis_columns(rows, axes)
    if any("verified" in r for r in rows):  # completed runs: do their files and numbers still check out
        cols.append("verified")
    tuned = any("role" in r for r in rows)  # tuned sweeps: trials (validation only) vs final runs
    if tuned:
        cols.insert(1, "role")
    if any(r.get("status") != "completed" and "progress" in r for r in rows):
        cols.append("progress")
    if any("eta" in r for r in rows):
        cols.append("eta")
    cols += (["best_val_acc"] if tuned else []) + list(METRIC_COLUMNS)
    cols += [c for c in PROFILE_COLUMNS if any(c in r for r in rows)]
    return cols


def fmt_cell(column: str, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if column in ("top1", "f1_macro", "best_val_acc"):
            return f"{v:.4f}"
        if column == "gmacs":
            return f"{v:.4g}"
        if column == "train_seconds" or column in PROFILE_COLUMNS:
            return f"{v:.1f}"
        return repr(v)  # axis values (lr 0.002) exactly as given
    return str(v)


def render_table(console: Any, title: str, rows: list[dict[str, Any]], axes: list[str]) -> None:
    """Print the `ls` table of result rows (see `print_full_width`)."""
    cols = table_columns(rows, axes)
    print_full_width(console, title, cols, [[fmt_cell(c, r.get(c)) for c in cols] for r in rows])


def print_full_width(
    console: Any, title: str, cols: list[str], cells: list[list[str]], right: tuple[str, ...] = ()
) -> None:
    """Print a table no narrower than its content: never cut to the terminal's or a pipe's 80 columns."""
    from rich.console import Console
    from rich.table import Table

    cols = [literal(c) for c in cols]
    cells = [[literal(v) for v in row] for row in cells]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    table = Table(title=literal(title))
    for c, width in zip(cols, widths, strict=True):
        numeric = c in METRIC_COLUMNS or c in PROFILE_COLUMNS or c in right
        table.add_column(c, justify="right" if numeric else "left", no_wrap=True, min_width=width)
    for row in cells:
        table.add_row(*row)
    needed = sum(w + 3 for w in widths) + 1
    out = console
    if console.width < needed:
        out = Console(
            file=console.file,
            width=needed,
            force_terminal=console.is_terminal,
            color_system=console.color_system,
            markup=False,
            highlight=False,
            emoji=False,
        )
    out.print(table, highlight=False)


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, default=str)


def sweep_axes(records: list[tuple[Path, RunRecord | None, dict[str, Any] | None]]) -> list[str]:
    """The grid axes in the order the sweep files list them (first seen first)."""
    axes: list[str] = []
    for _, rec, plan in records:
        for k in list(rec.axes if rec else {}) + list((plan or {}).get("axes", {})):
            if k not in axes:
                axes.append(k)
    return axes
