"""What every report figure shares: owns the style, the figure type, rendering to PNG and SVG, and the
rule for which configurations a one-row-per-configuration figure draws."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from archbench.report.analysis import ConfigSummary
from archbench.util.escape import visible

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.5,
    "axes.edgecolor": "black",
    "axes.facecolor": "white",
    "figure.facecolor": "white",
    "lines.linewidth": 1.1,
    "lines.markersize": 4,
    "hatch.linewidth": 0.6,
    "errorbar.capsize": 2.5,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "svg.fonttype": "none",
    "svg.hashsalt": "archbench-report",
}
MAX_FIGURE_ROWS = 30  # one-row-per-configuration figures beyond this show the best and the worst half each


def shown_rows(n: int) -> tuple[list[int], str]:
    """The configurations (rank indices) a one-row-per-configuration figure draws, and the caption's note:
    all of them up to MAX_FIGURE_ROWS, else the best and the worst MAX_FIGURE_ROWS // 2 (a figure 100
    rows tall neither reads nor renders in bounded time; the tables list every configuration)."""
    if n <= MAX_FIGURE_ROWS:
        return list(range(n)), ""
    h = MAX_FIGURE_ROWS // 2
    note = (
        f" With {n} configurations the figure shows the {h} best and the {h} worst (above and below the "
        f"dashed line); ranks {h + 1}–{n - h} are in the configurations table."
    )
    return list(range(h)) + list(range(n - h, n)), note


@dataclass
class FigureFile:
    name: str  # file stem: figures/<name>.png and .svg
    title: str
    caption: str
    png: bytes
    svg: bytes


@contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(cast(Any, STYLE)):
        yield


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def render(fig: Any, name: str, title: str, caption: str) -> FigureFile:
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.set_layout_engine("none")  # the PNG settled the layout; the SVG reuses it instead of redoing it
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    # Names are made visible where the report reads them (collect, analysis); this catches any other text
    # (SVG keeps text as text, and a raw control byte there is also invalid XML).
    svg_text = visible(svg.getvalue().decode("utf-8"), keep="\t\n\r").encode("utf-8")
    return FigureFile(name, title, caption, png.getvalue(), svg_text)


def pct_or_nan(v: float | None) -> float:
    return math.nan if v is None else 100.0 * v


def ci_err(s: ConfigSummary) -> tuple[float, float]:
    e = s.top1
    if e.mean is None or e.ci_low is None or e.ci_high is None:
        return 0.0, 0.0
    return 100 * (e.mean - e.ci_low), 100 * (e.ci_high - e.mean)


def grey_text(v: float, vmin: float, vmax: float, dark_high: bool) -> str:
    t = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.5
    return "white" if (t > 0.55 if dark_high else t < 0.45) else "black"
