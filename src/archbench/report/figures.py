"""The report's figures: owns drawing them as PNG and SVG in one style that survives black-and-white print.

Draws from the analysis only and never reads a record itself. Uses matplotlib's object API (`Figure`, no
pyplot), so building a report inside a notebook leaves the notebook's backend alone. Configurations are
told apart by marker, line style, hatch and label, never by colour alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from archbench.report.analysis import Analysis, ConfigSummary
from archbench.report.stats import ALPHA, pareto_front
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
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">", "h", "p")
LINESTYLES = ("-", "--", ":", "-.")
MAX_CURVES_PER_PANEL = 6
MAX_CURVE_ROWS = 3  # more groups than this: one summary row instead of a row per group
MAX_POINT_LABELS = 20  # scatter plots label every point up to this many configurations
SIGNIFICANCE_TOP = 15  # the significance matrix shows the best this many; the rest are summarised
MAX_FIGURE_ROWS = 30  # one-row-per-configuration figures beyond this show the best and the worst half each


def _shown_rows(n: int) -> tuple[list[int], str]:
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


def series_style(i: int) -> dict[str, Any]:
    """Style of the i-th configuration (rank order), the same in every figure."""
    return {
        "color": "black",
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[(i // 3) % len(LINESTYLES)],
        "markerfacecolor": "white" if (i // len(MARKERS)) % 2 else "black",
        "markeredgecolor": "black",
    }


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(cast(Any, STYLE)):
        yield


def _new(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _render(fig: Any, name: str, title: str, caption: str) -> FigureFile:
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.set_layout_engine("none")  # the PNG settled the layout; the SVG reuses it instead of redoing it
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    # Names are made visible where the report reads them (collect, analysis); this catches any other text
    # (SVG keeps text as text, and a raw control byte there is also invalid XML).
    svg_text = visible(svg.getvalue().decode("utf-8"), keep="\t\n\r").encode("utf-8")
    return FigureFile(name, title, caption, png.getvalue(), svg_text)


def _pct(v: float | None) -> float:
    return math.nan if v is None else 100.0 * v


def _ci_err(s: ConfigSummary) -> tuple[float, float]:
    e = s.top1
    if e.mean is None or e.ci_low is None or e.ci_high is None:
        return 0.0, 0.0
    return 100 * (e.mean - e.ci_low), 100 * (e.ci_high - e.mean)


# ---------------------------------------------------------------------------------------------- figures


def accuracy_bars(a: Analysis) -> FigureFile:
    shown, note = _shown_rows(len(a.summaries))
    ss = [a.summaries[i] for i in shown]
    n = len(ss)
    fig = _new(6.8, 1.0 + 0.34 * n)
    ax = fig.add_subplot()
    ypos = [n - 1 - i for i in range(n)]  # best on top
    means = [_pct(s.top1.mean) for s in ss]
    errs = [_ci_err(s) for s in ss]
    ax.barh(ypos, means, height=0.62, color="0.85", edgecolor="black", linewidth=0.6, label="mean", zorder=2)
    ax.errorbar(
        means,
        ypos,
        xerr=[[e[0] for e in errs], [e[1] for e in errs]],
        fmt="none",
        ecolor="black",
        elinewidth=1,
        label="95% CI",
        zorder=3,
    )
    dots_x: list[float] = []
    dots_y: list[float] = []
    for y, s in zip(ypos, ss, strict=True):
        vals = [100 * r.record.metrics.top1 for r in s.runs if r.record and r.record.metrics]
        offs = [0.0] if len(vals) == 1 else [-0.18 + 0.36 * k / (len(vals) - 1) for k in range(len(vals))]
        dots_x += vals
        dots_y += [y + o for o in offs]
        mean = _pct(s.top1.mean)
        ax.text(
            100 + 2,
            y,
            f"{mean:.1f}" + (f" ± {100 * s.top1.std:.1f}" if s.top1.std is not None else ""),
            va="center",
            fontsize=7,
        )
    ax.plot(dots_x, dots_y, "o", mfc="white", mec="black", ms=3.2, zorder=4, ls="none")  # one artist
    ax.plot([], [], "o", mfc="white", mec="black", ms=3.2, ls="none", label="individual seeds")
    ax.set_yticks(ypos, [s.label for s in ss])
    if note:
        ax.axhline(n / 2 - 0.5, color="black", ls="--", lw=0.8)
    ax.set_xlim(0, 118)
    ax.spines["bottom"].set_bounds(0, 100)
    ax.set_xticks(range(0, 101, 20))
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("top-1 test accuracy (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3)
    return _render(
        fig,
        "accuracy",
        "Accuracy per configuration",
        "Top-1 test accuracy, best first. Bars: mean over seeds (value ± std at right); whiskers: 95% "
        "confidence interval (t over seeds, or a bootstrap over test examples with one seed); circles: "
        "individual seeds." + note,
    )


def _curve_groups(a: Analysis) -> list[tuple[str, list[int]]]:
    """Configurations (by rank index) grouped by their first axis value, at most 6 per panel row."""
    idx = list(range(len(a.summaries)))
    if len(idx) <= MAX_CURVES_PER_PANEL:
        return [("", idx)]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(a.summaries):
        first = next(iter(s.config.axes.items()), None)
        key = f"{first[0]} = {first[1]}" if first else s.config.model
        groups.setdefault(key, []).append(i)
    out = []
    for key, members in groups.items():
        for start in range(0, len(members), MAX_CURVES_PER_PANEL):
            chunk = members[start : start + MAX_CURVES_PER_PANEL]
            part = f" ({start // MAX_CURVES_PER_PANEL + 1})" if len(members) > MAX_CURVES_PER_PANEL else ""
            out.append((key + part, chunk))
    return out


def training_curves(a: Analysis) -> FigureFile | None:
    if not any(any(s.history.values()) for s in a.summaries):
        return None
    from matplotlib.ticker import MaxNLocator

    groups = _curve_groups(a)
    if len(groups) > MAX_CURVE_ROWS:
        return _training_curves_summary(a)
    shown = groups
    panels = (
        ("train_loss", "train loss", 1.0),
        ("val_loss", "validation loss", 1.0),
        ("train_acc", "train accuracy (%)", 100.0),
        ("val_acc", "validation accuracy (%)", 100.0),
    )
    fig = _new(11.0, 0.5 + 2.1 * len(shown))
    axes = fig.subplots(len(shown), 4, squeeze=False)
    for row, (gname, members) in enumerate(shown):
        for col, (key, ylabel, scale) in enumerate(panels):
            ax = axes[row][col]
            for i in members:
                pts = a.summaries[i].history.get(key) or []
                if pts:
                    ax.plot(
                        [e for e, _ in pts],
                        [v * scale for _, v in pts],
                        label=a.summaries[i].label,
                        **series_style(i),
                    )
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == len(shown) - 1:
                ax.set_xlabel("epoch")
            if col == 0 and gname:
                ax.set_title(gname, loc="left")
        axes[row][3].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    caption = (
        "Loss and accuracy per epoch (mean over each configuration's completed seeds). Configurations are "
        "told apart by marker and line style"
        + ("; rows group them by their first grid value, at most six per row" if len(groups) > 1 else "")
        + "."
    )
    return _render(fig, "training_curves", "Training curves", caption)


def _training_curves_summary(a: Analysis) -> FigureFile:
    """Many configurations: the best few as lines over the band that every configuration spans."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    panels = (
        ("train_loss", "train loss", 1.0),
        ("val_loss", "validation loss", 1.0),
        ("train_acc", "train accuracy (%)", 100.0),
        ("val_acc", "validation accuracy (%)", 100.0),
    )
    best = list(range(min(MAX_CURVES_PER_PANEL, len(a.summaries))))
    fig = _new(11.0, 2.6)
    axes = fig.subplots(1, 4, squeeze=False)[0]
    for ax, (key, ylabel, scale) in zip(axes, panels, strict=True):
        by_epoch: dict[int, list[float]] = {}
        for s in a.summaries:
            for e, v in s.history.get(key) or []:
                by_epoch.setdefault(e, []).append(v * scale)
        if by_epoch:
            epochs = sorted(by_epoch)
            vals = [np.asarray(by_epoch[e]) for e in epochs]
            ax.fill_between(epochs, [v.min() for v in vals], [v.max() for v in vals], color="0.88", lw=0,
                            label=f"range of all {len(a.summaries)}")  # fmt: skip
            ax.plot(epochs, [float(np.median(v)) for v in vals], color="0.45", ls="--", lw=0.9,
                    label="median of all")  # fmt: skip
        for i in best:
            pts = a.summaries[i].history.get(key) or []
            if pts:
                ax.plot([e for e, _ in pts], [v * scale for _, v in pts], label=a.summaries[i].label,
                        **series_style(i))  # fmt: skip
        ax.set_ylabel(ylabel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[3].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _render(
        fig,
        "training_curves",
        "Training curves",
        f"Loss and accuracy per epoch for the {len(best)} best of {len(a.summaries)} configurations (mean "
        "over each one's completed seeds; told apart by marker and line style), over the grey band that "
        "all configurations span per epoch (dashed: their median). Too many configurations for one panel "
        "each; every configuration's numbers are in its record's history.",
    )


def accuracy_scatter(
    a: Analysis,
    x_of: Callable[[ConfigSummary], tuple[float, float] | None],
    name: str,
    xlabel: str,
    what: str,
) -> FigureFile | None:
    """Accuracy (with 95% CI) against a cost; labelled points; the Pareto front drawn and filled."""
    pts = [(s, xy) for s in a.summaries if (xy := x_of(s)) is not None and s.top1.mean is not None]
    if not pts:
        return None
    xs = [xy[0] for _, xy in pts]
    ys = [_pct(s.top1.mean) for s, _ in pts]
    front = set(pareto_front(xs, ys))
    fig = _new(6.8, 4.4)
    ax = fig.add_subplot()
    errs = [_ci_err(s) for s, _ in pts]
    for on in (False, True):  # one artist per group: front points drawn over dominated ones
        ks = [k for k in range(len(pts)) if (k in front) == on]
        if not ks:
            continue
        ax.errorbar(
            [xs[k] for k in ks],
            [ys[k] for k in ks],
            yerr=[[errs[k][0] for k in ks], [errs[k][1] for k in ks]],
            xerr=[[pts[k][1][1] for k in ks]] * 2 if any(pts[k][1][1] for k in ks) else None,
            fmt="o",
            mfc="black" if on else "white",
            mec="black",
            ecolor="0.35",
            ms=5,
            zorder=4 if on else 3,
        )
    fx = sorted((xs[i], ys[i]) for i in front)
    if len(fx) > 1:
        ax.step(
            [p[0] for p in fx], [p[1] for p in fx], where="post", ls="--", color="black", lw=0.9, zorder=2
        )
    ax.plot([], [], "o", mfc="black", mec="black", ls="--", color="black", label="Pareto front")
    ax.plot([], [], "o", mfc="white", mec="black", ls="none", label="dominated")
    positive = [x for x in xs if x > 0]
    if positive and len(positive) == len(xs) and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.legend(loc="lower right")
    # Many points: label the best five and the best-ranked points of the Pareto front, at most
    # MAX_POINT_LABELS in all (the run table names the rest; a front can hold every point).
    if len(pts) <= MAX_POINT_LABELS:
        labelled = set(range(len(pts)))
    else:
        labelled = {k for k, (s, _) in enumerate(pts) if s.rank <= 5}
        for k in sorted(front, key=lambda k: pts[k][0].rank):
            if len(labelled) >= MAX_POINT_LABELS:
                break
            labelled.add(k)
    keep = sorted(labelled)
    _label_points(fig, ax, [xs[k] for k in keep], [ys[k] for k in keep], [pts[k][0].label for k in keep])
    return _render(
        fig,
        name,
        f"Accuracy vs {what}",
        f"Mean top-1 accuracy against {what} for each configuration (vertical whiskers: 95% CI"
        + ("; horizontal: ± std over seeds" if any(xy[1] for _, xy in pts) else "")
        + "). Filled points joined by the dashed line form the Pareto front: no other configuration is "
        f"both cheaper in {what} and more accurate."
        + (
            f" With {len(pts)} configurations only the five best and the best-ranked points of the front "
            f"({MAX_POINT_LABELS} labels at most) are labelled."
            if len(pts) > MAX_POINT_LABELS
            else ""
        ),
    )


def _label_points(fig: Any, ax: Any, xs: list[float], ys: list[float], labels: list[str]) -> None:
    """Label each point beside it; labels that would overlap are pushed down, with a thin leader line."""
    fig.draw_without_rendering()  # settle scales and layout so data→pixel positions are final
    size = 6.5 * fig.dpi / 72  # font size in pixels
    height = size * 1.3
    pixels = ax.transData.transform(list(zip(xs, ys, strict=True)))
    placed: list[tuple[float, float, float, float]] = []
    for k in sorted(range(len(xs)), key=lambda k: (-pixels[k][1], pixels[k][0])):
        px, py = pixels[k]
        x0, y0 = px + 6, py + 2
        width = 0.6 * size * len(labels[k])
        while any(x0 < b[2] and b[0] < x0 + width and y0 < b[3] and b[1] < y0 + height for b in placed):
            y0 -= height
        placed.append((x0, y0, x0 + width, y0 + height))
        moved = y0 < py + 2
        ax.annotate(
            labels[k],
            (xs[k], ys[k]),
            xytext=((x0 - px) * 72 / fig.dpi, (y0 - py) * 72 / fig.dpi),
            textcoords="offset points",
            fontsize=6.5,
            va="bottom",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 2}
            if moved
            else None,
        )


def _grey_text(v: float, vmin: float, vmax: float, dark_high: bool) -> str:
    t = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.5
    return "white" if (t > 0.55 if dark_high else t < 0.45) else "black"


def per_class_heatmap(a: Analysis) -> FigureFile | None:
    import numpy as np

    classes: list[str] = []
    for s in a.summaries:
        classes += [c for c in s.class_names if c not in classes]
    if not classes:
        return None
    shown, note = _shown_rows(len(a.summaries))
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
    fig = _new(width, 1.3 + 0.34 * len(rows))
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
                    color = _grey_text(m[i, j], vmin, 100, dark_high=False)
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6.5, color=color)
    fig.colorbar(im, ax=ax, label="accuracy (%)", shrink=0.9)
    return _render(
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
    fig = _new(side * len(picks) + 0.8, side + 0.4)
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
                        color = _grey_text(m[i, j], 0, 100, dark_high=True)
                        ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6, color=color)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{which}: {s.label}\n(top-1 {_pct(s.top1.mean):.1f}%, {len(s.runs)} seed(s))")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="share of the true class (%)", shrink=0.8)
    return _render(
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
    fig = _new(6.8, 0.9 + 0.3 * n)
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
    return _render(
        fig,
        "confused_pairs",
        "Most-confused class pairs",
        "The ten (true → predicted) class pairs with the highest error rate, averaged over configurations "
        "(bars); diamonds: the configuration that confuses the pair most (named in the table).",
    )


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
    fig = _new(size + 1.5, size)
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
    return _render(
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


def profile_vs_resolution(a: Analysis) -> FigureFile | None:
    with_res = [(i, s) for i, s in enumerate(a.summaries) if len(s.per_resolution) > 1]
    if not with_res:
        return None
    panels = [
        ("latency_ms_p50", "latency p50 (ms)"),
        ("throughput_img_s", "throughput (img/s)"),
        ("peak_memory_mb", "peak memory (MB)"),
    ]
    panels = [p for p in panels if any(p[0] in v for _, s in with_res for v in s.per_resolution.values())]
    if not panels:
        return None
    fig = _new(3.4 * len(panels) + 1.8, 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for i, s in with_res:
            pts = [(r, v[key]) for r, v in s.per_resolution.items() if key in v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=s.label, **series_style(i))
        ax.set_xlabel("input resolution (px)")
        ax.set_ylabel(ylabel)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _render(
        fig,
        "profile_vs_resolution",
        "Cost vs input resolution",
        "Latency (batch 1, median), throughput and peak memory measured by the profile stage at each input "
        "resolution, mean over seeds.",
    )


def all_figures(a: Analysis) -> list[FigureFile]:
    """Every figure the analysis supports, in report order; figures without data are left out."""
    if not a.summaries:
        return []

    def params(s: ConfigSummary) -> tuple[float, float] | None:
        return (float(s.params), 0.0) if s.params else None

    def seconds(s: ConfigSummary) -> tuple[float, float] | None:
        t = s.train_seconds
        return (t.mean, t.std or 0.0) if t.mean is not None and t.mean > 0 else None

    def gmacs(s: ConfigSummary) -> tuple[float, float] | None:
        g = s.profile.get("gmacs")
        return (g, 0.0) if g is not None and g > 0 else None

    out: list[FigureFile | None] = []
    with _style():
        out.append(accuracy_bars(a))
        out.append(training_curves(a))
        out.append(accuracy_scatter(a, params, "accuracy_vs_params", "parameters", "parameters"))
        out.append(
            accuracy_scatter(a, seconds, "accuracy_vs_train_time", "training time (s)", "training time")
        )
        out.append(per_class_heatmap(a))
        out.append(confusion_best_worst(a))
        out.append(confused_pairs(a))
        out.append(significance_matrix(a))
        if a.has_profile:
            out.append(accuracy_scatter(a, gmacs, "accuracy_vs_gmacs", "GMACs per image", "GMACs"))
            out.append(profile_vs_resolution(a))
    return [f for f in out if f is not None]
