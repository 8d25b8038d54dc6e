"""The report's figures: owns drawing them as PNG and SVG in one style that survives black-and-white print.

Draws from the analysis only and never reads a record itself. Uses matplotlib's object API (`Figure`, no
pyplot), so building a report inside a notebook leaves the notebook's backend alone. Configurations are
told apart by marker, line style, hatch and label, never by colour alone.

Modules: base.py (style, figure type, rendering, which rows a figure shows), accuracy.py (bars, training
curves), cost.py (accuracy vs cost, cost vs resolution), classes.py (per class, confusion, confused pairs),
significance.py (the pairwise test matrix).
"""

from __future__ import annotations

from archbench.report.analysis import Analysis, ConfigSummary
from archbench.report.figures.accuracy import accuracy_bars, training_curves
from archbench.report.figures.base import MAX_FIGURE_ROWS, FigureFile, style
from archbench.report.figures.classes import confused_pairs, confusion_best_worst, per_class_heatmap
from archbench.report.figures.cost import accuracy_scatter, profile_vs_resolution
from archbench.report.figures.significance import SIGNIFICANCE_TOP, significance_matrix


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
    with style():
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


__all__ = ["MAX_FIGURE_ROWS", "SIGNIFICANCE_TOP", "FigureFile", "all_figures"]
