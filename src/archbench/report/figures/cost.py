"""Cost figures: accuracy against a cost (parameters, training time, GMACs) with its Pareto front, and the
profile stage's cost against input resolution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from archbench.report.analysis import Analysis, ConfigSummary
from archbench.report.figures.base import (
    FigureFile,
    ci_err,
    new_figure,
    pct_or_nan,
    render,
)
from archbench.report.stats import pareto_front
from archbench.util.figstyle import series_style

MAX_POINT_LABELS = 20  # scatter plots label every point up to this many configurations


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
    ys = [pct_or_nan(s.top1.mean) for s, _ in pts]
    front = set(pareto_front(xs, ys))
    fig = new_figure(6.8, 4.4)
    ax = fig.add_subplot()
    errs = [ci_err(s) for s, _ in pts]
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
    return render(
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
    fig = new_figure(3.4 * len(panels) + 1.8, 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for i, s in with_res:
            pts = [(r, v[key]) for r, v in s.per_resolution.items() if key in v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=s.label, **series_style(i))
        ax.set_xlabel("input resolution (px)")
        ax.set_ylabel(ylabel)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return render(
        fig,
        "profile_vs_resolution",
        "Cost vs input resolution",
        "Latency (batch 1, median), throughput and peak memory measured by the profile stage at each input "
        "resolution, mean over seeds.",
    )
