"""Per-class figures: accuracy per class and configuration, confusion matrices, the most-confused pairs."""

from __future__ import annotations

import math
from typing import Any

from archbench.report.analysis import Analysis
from archbench.report.figures.base import (
    MAX_FIGURE_ROWS,
    FigureFile,
    grey_text,
    new_figure,
    pct_or_nan,
    render,
    shown_rows,
)


def per_class_heatmap(a: Analysis) -> FigureFile | None:
    import numpy as np

    classes: list[str] = []
    for s in a.summaries:
        classes += [c for c in s.class_names if c not in classes]
    if not classes:
        return None
    shown, note = shown_rows(len(a.summaries))
    rows = [a.summaries[i] for i in shown]
    m = np.full((len(rows), len(classes)), np.nan)
    for i, s in enumerate(rows):
        for name, v in zip(s.class_names, s.per_class, strict=False):
            if v is not None:
                m[i, classes.index(name)] = 100 * v
    if np.isnan(m).all():
        return None
    vmin = float(max(0.0, math.floor(np.nanmin(m) / 10) * 10 - (10 if np.nanmin(m) % 10 == 0 else 0)))
    vmin = min(vmin, 90.0)
    import matplotlib

    cmap = matplotlib.colormaps["gray"].with_extremes(bad=(1, 1, 1, 0))
    width = min(16.0, 2.5 + 0.42 * len(classes) + 0.05 * max(len(s.label) for s in rows))
    fig = new_figure(width, 1.3 + 0.34 * len(rows))
    ax = fig.add_subplot()
    ax.patch.set_hatch("///")
    ax.patch.set_edgecolor("0.6")
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=100, aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set_yticks(range(len(rows)), [s.label for s in rows])
    if note:
        ax.axhline(len(rows) / 2 - 0.5, color="black", ls="--", lw=1.2)
    if len(classes) <= 60:
        ax.set_xticks(range(len(classes)), classes, rotation=90 if max(map(len, classes)) > 3 else 0)
    ax.set_xlabel("class")
    if len(classes) <= 25 and len(rows) <= MAX_FIGURE_ROWS:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if not np.isnan(m[i, j]):
                    color = grey_text(m[i, j], vmin, 100, dark_high=False)
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6.5, color=color)
    fig.colorbar(im, ax=ax, label="accuracy (%)", shrink=0.9)
    return render(
        fig,
        "per_class_accuracy",
        "Per-class accuracy",
        "Test accuracy per class and configuration (%, mean over seeds); darker is worse. Hatched cells: "
        "class absent from that configuration's test set." + note,
    )


def _normalised(cm: list[list[int]]) -> Any:
    import numpy as np

    arr = np.asarray(cm, dtype=float)
    totals = arr.sum(axis=1, keepdims=True)
    return np.divide(arr, totals, out=np.full_like(arr, np.nan), where=totals > 0) * 100


def confusion_best_worst(a: Analysis) -> FigureFile | None:
    chosen = [s for s in a.summaries if s.confusion is not None]
    if not chosen:
        return None
    picks = [("best", chosen[0])] + ([("worst", chosen[-1])] if len(chosen) > 1 else [])
    k = len(chosen[0].class_names)
    side = min(7.0, 2.0 + 0.32 * k)
    fig = new_figure(side * len(picks) + 0.8, side + 0.4)
    axes = fig.subplots(1, len(picks), squeeze=False)[0]
    im = None
    for ax, (which, s) in zip(axes, picks, strict=True):
        assert s.confusion is not None
        m = _normalised(s.confusion)
        im = ax.imshow(m, cmap="Greys", vmin=0, vmax=100, interpolation="nearest")
        ax.grid(False)
        names = s.class_names if len(s.class_names) == m.shape[0] else [str(i) for i in range(m.shape[0])]
        if m.shape[0] <= 40:
            ax.set_xticks(range(m.shape[0]), names, rotation=90 if max(map(len, names)) > 3 else 0)
            ax.set_yticks(range(m.shape[0]), names)
        if m.shape[0] <= 15:
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    if not math.isnan(m[i, j]) and m[i, j] >= 0.5:
                        color = grey_text(m[i, j], 0, 100, dark_high=True)
                        ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6, color=color)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{which}: {s.label}\n(top-1 {pct_or_nan(s.top1.mean):.1f}%, {len(s.runs)} seed(s))")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="share of the true class (%)", shrink=0.8)
    return render(
        fig,
        "confusion_best_worst",
        "Confusion matrices of the best and worst configurations",
        "Row-normalised confusion matrices (% of each true class), summed over seeds, for the configurations "
        "with the highest and lowest mean top-1 accuracy.",
    )


def confused_pairs(a: Analysis) -> FigureFile | None:
    rows = a.confused_pairs
    if not rows:
        return None
    n = len(rows)
    fig = new_figure(6.8, 0.9 + 0.3 * n)
    ax = fig.add_subplot()
    ypos = [n - 1 - i for i in range(n)]
    ax.barh(ypos, [100 * r["mean"] for r in rows], height=0.6, color="0.8", edgecolor="black", lw=0.6,
            hatch="///", label="mean over configurations", zorder=2)  # fmt: skip
    ax.plot([100 * r["worst_rate"] for r in rows], ypos, "D", mfc="black", mec="black", ms=4, ls="none",
            label="worst configuration", zorder=3)  # fmt: skip
    ax.set_yticks(ypos, [f"{r['true']} → {r['pred']}" for r in rows])
    ax.set_xlabel("share of the true class predicted as the other (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower right")
    return render(
        fig,
        "confused_pairs",
        "Most-confused class pairs",
        "The ten (true → predicted) class pairs with the highest error rate, averaged over configurations "
        "(bars); diamonds: the configuration that confuses the pair most (named in the table).",
    )
