"""Accuracy figures: top-1 per configuration (bars over seeds) and the training curves per epoch."""

from __future__ import annotations

from archbench.report.analysis import Analysis
from archbench.report.figures.base import (
    FigureFile,
    ci_err,
    new_figure,
    pct_or_nan,
    render,
    shown_rows,
)
from archbench.util.figstyle import series_style

MAX_CURVES_PER_PANEL = 6
MAX_CURVE_ROWS = 3  # more groups than this: one summary row instead of a row per group
CURVE_PANELS = (
    ("train_loss", "train loss", 1.0),
    ("val_loss", "validation loss", 1.0),
    ("train_acc", "train accuracy (%)", 100.0),
    ("val_acc", "validation accuracy (%)", 100.0),
)


def accuracy_bars(a: Analysis) -> FigureFile:
    shown, note = shown_rows(len(a.summaries))
    ss = [a.summaries[i] for i in shown]
    n = len(ss)
    fig = new_figure(6.8, 1.0 + 0.34 * n)
    ax = fig.add_subplot()
    ypos = [n - 1 - i for i in range(n)]  # best on top
    means = [pct_or_nan(s.top1.mean) for s in ss]
    errs = [ci_err(s) for s in ss]
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
        mean = pct_or_nan(s.top1.mean)
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
    return render(
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
    fig = new_figure(11.0, 0.5 + 2.1 * len(shown))
    axes = fig.subplots(len(shown), 4, squeeze=False)
    for row, (gname, members) in enumerate(shown):
        for col, (key, ylabel, scale) in enumerate(CURVE_PANELS):
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
    return render(fig, "training_curves", "Training curves", caption)


def _training_curves_summary(a: Analysis) -> FigureFile:
    """Many configurations: the best few as lines over the band that every configuration spans."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    best = list(range(min(MAX_CURVES_PER_PANEL, len(a.summaries))))
    fig = new_figure(11.0, 2.6)
    axes = fig.subplots(1, 4, squeeze=False)[0]
    for ax, (key, ylabel, scale) in zip(axes, CURVE_PANELS, strict=True):
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
    return render(
        fig,
        "training_curves",
        "Training curves",
        f"Loss and accuracy per epoch for the {len(best)} best of {len(a.summaries)} configurations (mean "
        "over each one's completed seeds; told apart by marker and line style), over the grey band that "
        "all configurations span per epoch (dashed: their median). Too many configurations for one panel "
        "each; every configuration's numbers are in its record's history.",
    )
