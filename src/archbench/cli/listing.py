"""The `ls` view of sweeps: owns which columns a listing shows and rendering it as a table, CSV or JSON.

Reads rows made from records (results.py). On a terminal the table fits its width (short headers, then
the least important columns left out and named; `--wide` shows them all); anywhere else it is as wide as
its widest row, and CSV/JSON always carry every value in full.
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


def render_table(
    console: Any, title: str, rows: list[dict[str, Any]], axes: list[str], wide: bool = False
) -> None:
    """Print the `ls` table of result rows: on a terminal, fitted to its width (`fit_columns`) unless
    `wide`; anywhere else (a file, a pipe) as wide as its content (`print_full_width`)."""
    cols = table_columns(rows, axes)
    cells = [[fmt_cell(c, r.get(c)) for c in cols] for r in rows]
    if wide or not console.is_terminal:
        print_full_width(console, title, cols, cells)
        return
    print_fitted(console, title, cols, cells)


# Short headers a narrow terminal gets before any column is dropped.
SHORT_HEADERS = {
    "train_seconds": "train s",
    "f1_macro": "F1",
    "top1": "top-1",
    "best_val_acc": "best val",
    "verified": "ok",
    "progress": "epochs",
    "gmacs": "GMACs",
    "latency_ms_p50": "ms p50",
    "throughput_img_s": "img/s",
    "peak_memory_mb": "MB",
}
# What a narrow terminal keeps longest: run_id and status always, then these; the rest (profile columns,
# train time, …) is dropped first, from the end of this list backwards.
KEEP_ORDER = ("run_id", "status", "top1", "verified", "progress", "eta", "role")
KEEP_LAST = ("f1_macro", "best_val_acc", "train_seconds")


def _short(col: str, taken: set[str]) -> str:
    """A dotted grid axis by its last part (`train.lr` → `lr`; `model.name` → `model`) when unambiguous."""
    if col in SHORT_HEADERS:
        return SHORT_HEADERS[col]
    if "." not in col:
        return col
    head, _, leaf = col.rpartition(".")
    short = head.rpartition(".")[2] if leaf == "name" else leaf
    return col if short in taken else short


def table_width(widths: list[int]) -> int:
    """Columns of a rich table with the default box and padding: each cell ± one space, plus its rule."""
    return sum(w + 3 for w in widths) + 1


def fit_columns(cols: list[str], cells: list[list[str]], width: int) -> tuple[list[int], list[str]]:
    """Which columns (indices, in order) and headers fit `width` terminal columns: every column with its
    own header when it fits; else short headers; else columns dropped, least important first. run_id and
    status always stay (a row too wide even then is cut with an ellipsis, never wrapped)."""
    from rich.cells import cell_len

    def widths(idx: list[int], heads: list[str]) -> list[int]:
        return [
            max([cell_len(h)] + [cell_len(row[i]) for row in cells]) for i, h in zip(idx, heads, strict=True)
        ]

    keep = list(range(len(cols)))
    if table_width(widths(keep, cols)) <= width:
        return keep, list(cols)
    short: list[str] = []
    for c in cols:
        short.append(_short(c, set(short) | set(cols)))
    rank = {c: i for i, c in enumerate(KEEP_ORDER)}
    axes = [i for i, c in enumerate(cols) if c not in rank and "." in c]
    rest = [i for i, c in enumerate(cols) if c not in rank and i not in axes and c not in KEEP_LAST]
    same = [i for i in axes if len({row[i] for row in cells}) <= 1]  # an axis all rows share tells none apart
    axes = same[::-1] + [i for i in axes[::-1] if i not in same]
    drop = rest[::-1] + [cols.index(c) for c in KEEP_LAST[::-1] if c in cols] + axes
    drop += [cols.index(c) for c in KEEP_ORDER[:1:-1] if c in cols]  # never run_id, status
    for i in drop:
        if table_width(widths(keep, [short[k] for k in keep])) <= width:
            break
        keep.remove(i)
    return keep, [short[k] for k in keep]


def print_fitted(console: Any, title: str, cols: list[str], cells: list[list[str]]) -> None:
    """Print the table within the console's width (see `fit_columns`), naming what it left out."""
    from rich.table import Table

    cols = [literal(c) for c in cols]
    cells = [[literal(v) for v in row] for row in cells]
    keep, heads = fit_columns(cols, cells, console.width)
    table = Table(title=literal(title))
    for i, head in zip(keep, heads, strict=True):
        numeric = cols[i] in METRIC_COLUMNS or cols[i] in PROFILE_COLUMNS
        table.add_column(head, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    console.print(table, highlight=False)
    dropped = [c for i, c in enumerate(cols) if i not in keep]
    if dropped:
        console.print(
            f"not shown at this width: {', '.join(dropped)} (archbench ls --wide, or --format csv|json)",
            highlight=False,
        )


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
    needed = table_width(widths)
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
