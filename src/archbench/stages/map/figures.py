"""Map figures: owns drawing ground truth and maps side by side, error maps and per-class comparisons.

Inputs are class-index grids (UNLABELLED = no class) already read and decimated by the caller, so drawing
never touches rasters. Saved through the stage base's `save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.scene import UNLABELLED
from archbench.stages.base import pyplot, save_figure
from archbench.util.figstyle import bar_style

_NODATA_COLOR = "#ffffff"
# correct, wrong, unlabelled or unmapped: light, near-black and white, so they differ in grey too
_ERROR_COLORS = ["#b8dcb0", "#5a0a1e", "#ffffff"]
_ERROR_NAMES = ["correct", "wrong", "unlabelled / not mapped"]
_ABSENT = "class absent from the subset"


def _grid_shape(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return math.ceil(n / cols), cols


def _panels(n: int, shape: tuple[int, int]) -> tuple[Any, list[Any]]:
    plt = pyplot()
    rows, cols = _grid_shape(n)
    aspect = shape[0] / max(shape[1], 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows * aspect + 0.6), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def side_by_side(
    path: Path,
    reference: np.ndarray,
    maps: list[tuple[str, np.ndarray]],
    class_names: list[str],
    colors: list[str],
    reference_title: str = "ground truth",
) -> None:
    """Ground truth and every map in one figure with one shared legend of class names and colours."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    k = len(class_names)
    cmap = ListedColormap(list(colors) + [_NODATA_COLOR])
    fig, axes = _panels(len(maps) + 1, reference.shape)
    for ax, (title, idx) in zip(axes, [(reference_title, reference), *maps], strict=True):
        shown = np.where(idx == UNLABELLED, k, idx)
        ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=k + 0.5, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Patch(facecolor=c, edgecolor="#555555", label=n) for n, c in zip(class_names, colors, strict=True)
    ]
    handles.append(Patch(facecolor=_NODATA_COLOR, edgecolor="#555555", label="no data / unlabelled"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.6 / fig.get_figheight())  # room for the legend: ~0.6 inch
    save_figure(fig, path)


def error_maps(path: Path, reference: np.ndarray, maps: list[tuple[str, np.ndarray]]) -> None:
    """Per map: correct / wrong / unlabelled-or-unmapped against the reference."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, axes = _panels(len(maps), reference.shape)
    for ax, (title, idx) in zip(axes, maps, strict=True):
        status = np.full(idx.shape, 2, dtype=np.uint8)
        both = (reference != UNLABELLED) & (idx != UNLABELLED)
        status[both & (reference == idx)] = 0
        status[both & (reference != idx)] = 1
        ax.imshow(status, cmap=ListedColormap(_ERROR_COLORS), vmin=-0.5, vmax=2.5, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Patch(facecolor=c, edgecolor="black", label=n)
        for n, c in zip(_ERROR_NAMES, _ERROR_COLORS, strict=True)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.6 / fig.get_figheight())  # room for the legend: ~0.6 inch
    save_figure(fig, path)


def per_class(
    path: Path, class_names: list[str], series: list[tuple[str, list[float | None]]], ylabel: str
) -> None:
    """Grouped bars: one group per class, one bar per model, told apart by grey and hatch (black and
    white readable); a missing value (class absent from the subset) is a × at zero, never a bar."""
    plt = pyplot()
    k, n = len(class_names), max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * k + 0.4 * n), 3.8))
    width = 0.8 / n
    x = np.arange(k)
    absent_drawn = False
    for i, (name, values) in enumerate(series):
        pos = x - 0.4 + width * (i + 0.5)
        vals = [0.0 if v is None else v for v in values]
        ax.bar(pos, vals, width, label=name, **bar_style(i))
        missing = [p for p, v in zip(pos, values, strict=True) if v is None]
        if missing:
            label = None if absent_drawn else _ABSENT
            ax.plot(missing, [0.0] * len(missing), "x", color="black", ms=5, clip_on=False, label=label)
            absent_drawn = True
    ax.set_xticks(x, class_names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=7, ncol=min(n, 4), loc="upper left", bbox_to_anchor=(0, -0.3), frameon=False)
    save_figure(fig, path)
