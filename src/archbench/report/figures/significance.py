"""The significance matrix: the paired difference and the test's verdict for every pair of the best
configurations, with one sentence over every pair when it shows only some."""

from __future__ import annotations

from archbench.report.analysis import Analysis
from archbench.report.figures.base import FigureFile, new_figure, render
from archbench.report.stats import ALPHA

SIGNIFICANCE_TOP = 15  # the significance matrix shows the best this many; the rest are summarised


def significance_matrix(a: Analysis) -> FigureFile | None:
    if len(a.summaries) < 2 or not any(c.pooled is not None for c in a.comparisons):
        return None
    from matplotlib.patches import Patch, Rectangle

    # k² cells do not read (or draw) at scale: the matrix shows the best SIGNIFICANCE_TOP configurations
    # and the caption summarises every pair; the comparisons table lists them all.
    total = len(a.summaries)
    n = min(total, SIGNIFICANCE_TOP)
    comp = {(c.a, c.b): c for c in a.comparisons if c.b < n}
    size = min(14.0, 2.2 + 0.62 * n)
    fig = new_figure(size + 1.5, size)
    ax = fig.add_subplot()
    ax.grid(False)
    for i in range(n):
        for j in range(n):
            x, y = j, n - 1 - i
            if i == j:
                ax.add_patch(Rectangle((x, y), 1, 1, facecolor="0.93", edgecolor="0.6", lw=0.5))
                continue
            c = comp.get((min(i, j), max(i, j)))
            if c is None or c.pooled is None or c.diff.mean is None:
                ax.add_patch(Rectangle((x, y), 1, 1, facecolor="white", edgecolor="0.6", lw=0.5))
                ax.text(x + 0.5, y + 0.5, "n/a", ha="center", va="center", fontsize=6, color="0.4")
                continue
            delta = 100 * c.diff.mean * (1 if i == c.a else -1)
            strong = c.significant and c.diff.excludes_zero
            weak = c.significant and not strong
            face, hatch, color = ("0.3", "", "white") if strong else ("white", "///" if weak else "", "black")
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=face, hatch=hatch, edgecolor="0.6", lw=0.5))
            text = f"{delta:+.1f}" + ("*" if c.significant else "")
            bbox = {"facecolor": "white", "edgecolor": "none", "pad": 0.6} if weak else None
            ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=6.5, color=color, bbox=bbox)
    labels = [s.label for s in a.summaries[:n]]
    ax.set_xlim(0, n)
    ax.set_ylim(0, n)
    ax.set_xticks([k + 0.5 for k in range(n)], labels, rotation=45, ha="right")
    ax.set_yticks([n - 1 - k + 0.5 for k in range(n)], labels)
    ax.set_aspect("equal")
    ax.tick_params(length=0)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.legend(
        handles=[
            Patch(facecolor="0.3", edgecolor="0.6", label="significant: Holm p < 0.05 and CI excludes 0"),
            Patch(
                facecolor="white", edgecolor="0.6", hatch="///", label="Holm p < 0.05, CI over seeds spans 0"
            ),
            Patch(facecolor="white", edgecolor="0.6", label="no significant difference"),
        ],
        loc="outside lower center",
        ncol=1,
    )
    ax.set_title("Δ top-1 (row − column, percentage points)")
    return render(
        fig,
        "significance_matrix",
        "Significance matrix",
        "Each cell: mean paired difference in top-1 accuracy (row minus column, percentage points) over "
        f"shared seeds; * marks a McNemar exact test (pooled over seeds) with Holm-adjusted p < {ALPHA}. "
        "Dark cells are also consistent across seeds (95% CI of the difference excludes 0). "
        "n/a: no shared seed or a different test set." + _significance_summary(a, n),
    )


def _significance_summary(a: Analysis, shown: int) -> str:
    """One sentence over every pair (not only those drawn) when the matrix shows a subset."""
    total = len(a.summaries)
    if shown >= total:
        return ""
    tested = [c for c in a.comparisons if c.pooled is not None]
    sig = [c for c in tested if c.significant]
    strong = [c for c in sig if c.diff.excludes_zero]
    best_wins = sum(1 for c in strong if c.a == 0 and (c.diff.mean or 0) > 0)
    return (
        f" Shown: the {shown} best of {total} configurations. Over all {len(tested)} compared pairs, "
        f"{len(sig)} differ significantly and {len(strong)} of those consistently across seeds; the best "
        f"configuration is significantly and consistently better than {best_wins} of the other {total - 1}. "
        "Every pair is listed in the pairwise comparisons table."
    )
