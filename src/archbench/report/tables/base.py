"""What a report table is: owns the cell and table types, the column spec, number formatting and CSV.

A table is built once from a list of column specs per row (`Col`): each spec says the raw value (CSV and
sorting), the text shown, and whether it goes to the displayed table, the CSV, or both, so the two forms
of a table cannot drift apart. textformats.py (Markdown, LaTeX) and html.py render the displayed table and
escape every cell: names in records are user input and may be hostile.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from archbench.report.stats import Estimate
from archbench.store.results import neutralise_csv_cell


@dataclass
class Cell:
    text: str
    value: Any = None  # raw value for CSV and sorting; None: use the text
    title: str = ""  # full value shown on hover in HTML when the text is shortened

    @property
    def raw(self) -> Any:
        return self.text if self.value is None else self.value


@dataclass
class Table:
    name: str  # file stem: tables/<name>.csv
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""
    csv_columns: list[str] = field(default_factory=list)  # CSV may carry more columns than the display
    csv_rows: list[list[Any]] = field(default_factory=list)
    tex_skip: tuple[str, ...] = ()  # display columns left out of LaTeX (too wide for a page)

    def numeric(self, i: int) -> bool:
        """Does column i hold numbers only (right-aligned, sorted by value)?"""
        vals = [row[i].value for row in self.rows if row[i].text]
        return bool(vals) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)


@dataclass(frozen=True)
class Col:
    """One column of one row: its raw value (CSV, sorting) and shown text, and where it goes.

    A column whose displayed and CSV forms differ in more than the text (other name, other value, several
    CSV columns for one shown) is two or more specs: one `shown` only, the others `saved` only."""

    name: str
    value: Any = None
    text: str | None = None  # None: the value as text ("" for None)
    title: str = ""
    shown: bool = True  # in report.html/.md/.tex
    saved: bool = True  # in tables/<name>.csv

    def cell(self) -> Cell:
        text = self.text if self.text is not None else "" if self.value is None else str(self.value)
        return Cell(text, self.value, self.title)


def shown(name: str, value: Any = None, text: str | None = None, title: str = "") -> Col:
    """A column of the displayed table only."""
    return Col(name, value, text, title, saved=False)


def saved(name: str, value: Any) -> Col:
    """A column of the CSV only."""
    return Col(name, value, shown=False)


def build_table(
    name: str, title: str, rows: Iterable[list[Col]], *, columns: list[str] | None = None, **kw: Any
) -> Table:
    """The table whose displayed and CSV rows both come from `rows`. Columns are every name in first-seen
    order (rows may differ, e.g. by grid axes); `columns` fixes the displayed ones instead."""
    specs = list(rows)
    shown_rows = [{c.name: c.cell() for c in row if c.shown} for row in specs]
    saved_rows = [{c.name: c.value for c in row if c.saved} for row in specs]
    display = columns if columns is not None else _union(shown_rows)
    csv_cols = _union(saved_rows)
    return Table(
        name,
        title,
        display,
        [[d.get(c, Cell("")) for c in display] for d in shown_rows],
        csv_columns=csv_cols,
        csv_rows=[[r.get(c) for c in csv_cols] for r in saved_rows],
        **kw,
    )


def _union(rows: list[dict[str, Any]]) -> list[str]:
    out: dict[str, None] = {}
    for r in rows:
        out.update(dict.fromkeys(r))
    return list(out)


def stage_table(
    name: str,
    title: str,
    header: list[str],
    body: list[list[str]],
    note: str = "",
    formats: dict[str, dict[str, Any]] | None = None,
) -> Table:
    """A table of a stage's CSV: shown with each column's header and unit from `formats` (the stage's
    index.json) and its numbers rounded (`stage_cell`); its CSV is the stage's, value for value."""
    width = max([len(header)] + [len(r) for r in body]) if header or body else 0
    columns = list(header) + [f"column {i + 1}" for i in range(len(header), width)]
    raw = [[str(v) for v in list(r) + [""] * (width - len(r))] for r in body]
    formats = formats or {}
    shown = [str((formats.get(c) or {}).get("label") or c) for c in columns]
    rows = [[stage_cell(v, formats.get(c)) for c, v in zip(columns, r, strict=True)] for r in raw]
    csv_rows = [[_csv_number(v) for v in r] for r in raw]
    return Table(name, title, shown, rows, note=note, csv_columns=columns, csv_rows=csv_rows)


def _csv_number(text: str) -> Any:
    """A stage CSV cell for the report's CSV: a number as a number when it reads back as the same text
    (so `-0.25` is not taken for a formula and quoted), anything else as text."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if str(value) == text and math.isfinite(value) else text
    return text


def stage_cell(text: str, fmt: dict[str, Any] | None = None) -> Cell:
    """A CSV cell as shown: a number scaled and rounded (`fmt`'s scale and digits, else `round_number`),
    keeping its raw value for sorting and its full text on hover; any other text as it is."""
    try:
        value = float(text)
    except ValueError:
        return Cell(text)
    if not math.isfinite(value):
        return Cell(text)
    scale = float((fmt or {}).get("scale", 1.0))
    digits = (fmt or {}).get("digits")
    is_int = text.strip().lstrip("+-").isdigit() and scale == 1.0
    shown = value * scale
    if digits is not None:
        out = f"{shown:,.{digits}f}"
    elif is_int:
        out = f"{int(text):,}"
    else:
        out = round_number(shown)
    return Cell(out, value, title=text if out != text else "")


def round_number(x: float) -> str:
    """A float for reading: four decimals below 1, four significant digits up to 1,000, whole numbers
    (thousands separated) above; never scientific notation."""
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 1:
        return f"{x:.{3 - int(math.floor(math.log10(a)))}f}"
    return f"{x:.4f}"


# ---------------------------------------------------------------------------------------------- formatting


def pct(x: float | None, digits: int = 2) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def num(x: float | None, digits: int = 3) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _scaled(e: Estimate, scale: float) -> tuple[float | None, float | None, float | None, float | None]:
    def sc(v: float | None) -> float | None:
        return None if v is None else v * scale

    return sc(e.mean), sc(e.std), sc(e.ci_low), sc(e.ci_high)


def estimate_text(e: Estimate, scale: float = 100.0, digits: int = 2) -> str:
    """`mean ± std [low, high]`; a bootstrap interval is marked (b)."""
    mean, std, lo, hi = _scaled(e, scale)
    if mean is None:
        return ""
    out = f"{mean:.{digits}f}"
    if std is not None:
        out += f" ± {std:.{digits}f}"
    if lo is not None and hi is not None:
        out += f" [{lo:.{digits}f}, {hi:.{digits}f}]" + (" (b)" if e.ci_method == "bootstrap" else "")
    return out


def estimate_cols(name: str, e: Estimate, scale: float = 100.0, unit: str = " (%)") -> list[Col]:
    """CSV columns `<name> mean (%)`, `<name> std (%)`, `<name> CI low (%)`, `<name> CI high (%)`."""
    mean, std, lo, hi = _scaled(e, scale)
    return [
        saved(f"{name} mean{unit}", mean),
        saved(f"{name} std{unit}", std),
        saved(f"{name} CI low{unit}", lo),
        saved(f"{name} CI high{unit}", hi),
    ]


def params_text(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p / 1e6:.2f} M" if p >= 1e6 else f"{int(p):,}"


def hash_col(name: str, h: str | None, n: int = 12) -> Col:
    """A hash shortened to `n` characters on screen (in full on hover and in the CSV)."""
    return Col(name, h, (h or "")[:n], h or "")


def runs_col(run_ids: list[str]) -> Col:
    """The runs behind a row: comma-separated on screen, space-separated in the CSV."""
    return Col("runs", " ".join(run_ids), ", ".join(run_ids))


# ---------------------------------------------------------------------------------------------- CSV


def to_csv(t: Table) -> str:
    """CSV with raw values; text cells starting with = + - @ are neutralised against formula injection."""
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = t.csv_columns or t.columns
    w.writerow([neutralise_csv_cell(c) for c in cols])
    body = t.csv_rows or [[c.raw for c in row] for row in t.rows]
    for row in body:
        w.writerow([neutralise_csv_cell(_csv_value(v)) for v in row])
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool | int | float):
        return v
    return str(v)
