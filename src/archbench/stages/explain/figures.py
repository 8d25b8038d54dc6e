"""Sweep-level explanation figures and tables: owns `<sweep>/stages/explain/` (PNGs, CSVs, index.json).

Reads only files: run records, `predictions.npz`, each run's `explain/heatmaps.npz` and the shared
selection with its stored images. One image × model grid per method (rows: the selected images with their
true label; columns: models with their prediction and confidence), an overview grid (each model's own
method: attention rollout for ViTs, Grad-CAM for the rest), and the error analysis (most-confused pairs,
reliability diagrams, confident mistakes). `index.json` lists them for the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.stages.base import pyplot, run_folders, save_figure
from archbench.stages.explain import METHODS
from archbench.stages.explain.analysis import error_analysis
from archbench.stages.explain.pipeline import heatmaps_path
from archbench.stages.explain.selection import Selection, load_selected_images, read_selections, stage_dir
from archbench.store.layout import RunLayout
from archbench.store.record import RunRecord, StageIndex, read_record
from archbench.util.paths import atomic_write_text

MAX_ROWS = 16  # images per grid (the selection may hold up to 256)
MAX_COLS = 16  # models per grid / error figure
CELL = 1.7  # inches per grid cell
DPI = 100
OVERLAY_ALPHA = 0.45
# inferno: its lightness rises with the value, so a heatmap reads in black and white (jet's does not)
HEAT_CMAP = "inferno"
PERCENT = {"scale": 100.0, "digits": 1}  # a fraction shown in % in the report (StageIndex.Column)
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "ig": "Integrated gradients",
    "saliency": "Saliency",
    "attention": "Attention rollout",
}


@dataclass
class RunView:
    """What the figures need of one run."""

    run_id: str
    label: str
    rec: RunRecord
    analysis: dict[str, Any]
    maps: dict[str, Any]  # heatmaps.npz contents, {} when not explained


@dataclass
class Column:
    label: str
    maps: np.ndarray  # N×h×w in [0, 1]
    predicted: np.ndarray
    confidence: np.ndarray


def run_label(rec: RunRecord) -> str:
    text = ", ".join(str(v).replace("timm:", "") for v in rec.axes.values()) or rec.spec.model.name
    return text if len(text) <= 28 else text[:27] + "…"


def _load_runs(sweep_dir: Path) -> list[RunView]:
    views = []
    for run_dir in run_folders(sweep_dir):
        rec = read_record(run_dir)
        predictions = RunLayout(run_dir).predictions
        if rec is None or rec.class_names is None or not predictions.exists():
            continue
        with np.load(predictions, allow_pickle=False) as z:
            analysis = error_analysis(z["y_true"], z["probs"], rec.class_names)
        maps: dict[str, Any] = {}
        try:
            with np.load(heatmaps_path(run_dir), allow_pickle=False) as z:
                maps = {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError):
            pass
        views.append(RunView(run_dir.name, run_label(rec), rec, analysis, maps))
    return views


def _display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """C×H×W (uint8 or float) → something imshow draws: H×W grey or H×W×3 RGB in [0, 1]."""
    a = img.astype(np.float32)
    a = a / 255.0 if img.dtype == np.uint8 else (a - a.min()) / max(float(a.max() - a.min()), 1e-8)
    if a.shape[0] == 3:
        return np.transpose(a, (1, 2, 0)), None
    return a[0], "gray"


def _overlay(ax: Any, img: np.ndarray, heat: np.ndarray | None) -> None:
    shown, cmap = _display(img)
    extent = (0.0, 1.0, 1.0, 0.0)  # image and heatmap share the cell whatever their resolutions
    ax.imshow(shown, cmap=cmap, extent=extent, vmin=0, vmax=1, interpolation="nearest")
    if heat is not None:
        ax.imshow(
            heat, cmap=HEAT_CMAP, alpha=OVERLAY_ALPHA, extent=extent, vmin=0, vmax=1, interpolation="bilinear"
        )
    ax.set_xticks([])
    ax.set_yticks([])


def draw_grid(
    path: Path,
    title: str,
    images: np.ndarray,
    labels: list[int],
    indices: list[int],
    class_names: list[str],
    columns: list[Column],
) -> None:
    plt = pyplot()
    rows = min(len(indices), MAX_ROWS)
    cols = columns[:MAX_COLS]
    fig, axes = plt.subplots(
        rows, len(cols), figsize=(CELL * len(cols) + 0.8, CELL * rows + 0.8), squeeze=False
    )
    for r in range(rows):
        for c, col in enumerate(cols):
            ax = axes[r][c]
            _overlay(ax, images[r], col.maps[r])
            pred = int(col.predicted[r])
            ok = pred == labels[r]
            head = f"{col.label}\n" if r == 0 else ""
            ax.set_title(  # ✓/✗ as well as the colour: a wrong prediction shows in black and white too
                f"{head}{'✓' if ok else '✗'} pred {class_names[pred]} ({col.confidence[r]:.2f})",
                fontsize=7,
                color="black" if ok else "crimson",
            )
            if c == 0:
                ax.set_ylabel(f"#{indices[r]}\ntrue {class_names[labels[r]]}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI, tight=False)


def _error_figures(out: Path, views: list[RunView], suffix: str) -> list[dict[str, str]]:
    """Most-confused pairs, reliability diagrams and (when stored) the confident mistakes, one panel a run."""
    shown = views[:MAX_COLS]
    figures = [
        _save(_confused_pairs(shown), out, f"confused_pairs{suffix}.png", CONFUSED_CAPTION),
        _save(_reliability(shown), out, f"reliability{suffix}.png", RELIABILITY_CAPTION),
    ]
    with_images = [v for v in shown if "mistake_images" in v.maps and len(v.maps["mistake_images"])]
    if with_images:
        figures.append(
            _save(_mistakes(with_images), out, f"confident_mistakes{suffix}.png", MISTAKES_CAPTION)
        )
    return figures


CONFUSED_CAPTION = "Most-confused class pairs per model (true→predicted, test images)."
RELIABILITY_CAPTION = "Reliability diagrams (15 equal-width confidence bins), expected calibration error."
MISTAKES_CAPTION = "Most confident mistakes per model (test index, true→predicted, confidence)."


def _save(fig: Any, out: Path, name: str, caption: str) -> dict[str, str]:
    """Lay out, save (through the stage base) and list one error-analysis figure."""
    fig.tight_layout()
    save_figure(fig, out / name, dpi=DPI, tight=False)
    return {"path": name, "caption": caption}


def _panels(n: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure of up to four panels a row for `n` runs (the spare panels hidden) and its first n axes."""
    ncols = min(4, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _confused_pairs(shown: list[RunView]) -> Any:
    fig, axes = _panels(len(shown), 3.4, 2.6)
    for ax, v in zip(axes, shown, strict=True):
        pairs = v.analysis["confused_pairs"][:5][::-1]
        ax.barh([f"{p['true']}→{p['predicted']}" for p in pairs], [p["count"] for p in pairs], color="0.45")
        ax.set_title(f"{v.label}\n{v.analysis['n_mistakes']} mistakes", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("images (true→predicted)", fontsize=7)
    return fig


def _reliability(shown: list[RunView]) -> Any:
    fig, axes = _panels(len(shown), 3.0, 3.0)
    for ax, v in zip(axes, shown, strict=True):
        cal = v.analysis["calibration"]
        edges = np.asarray(cal["bin_edges"])
        acc = [a if a is not None else 0.0 for a in cal["bin_accuracy"]]
        ax.bar(
            edges[:-1],
            acc,
            width=np.diff(edges),
            align="edge",
            color="0.75",
            edgecolor="black",
            linewidth=0.4,
        )
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{v.label}\nECE {cal['ece']:.3f}", fontsize=8)
        ax.set_xlabel("confidence", fontsize=7)
        ax.set_ylabel("accuracy", fontsize=7)
        ax.tick_params(labelsize=7)
    return fig


def _mistakes(with_images: list[RunView]) -> Any:
    k = max(len(v.maps["mistake_images"]) for v in with_images)
    fig, axes = pyplot().subplots(
        len(with_images), k, figsize=(1.5 * k + 0.8, 1.7 * len(with_images)), squeeze=False
    )
    for r, v in enumerate(with_images):
        entries = v.analysis["confident_mistakes"]
        for c in range(k):
            ax = axes[r][c]
            if c >= len(v.maps["mistake_images"]) or c >= len(entries):
                ax.axis("off")
                continue
            _overlay(ax, v.maps["mistake_images"][c], None)
            e = entries[c]
            ax.set_title(f"#{e['index']} {e['true']}→{e['predicted']}\n{e['confidence']:.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(v.label, fontsize=7)
    return fig


def _columns(views: list[RunView], sel: Selection, method: str) -> list[Column]:
    cols = []
    for v in views:
        m = v.maps
        if method in m and str(m.get("selection_hash")) == sel.hash:
            cols.append(Column(v.label, m[method], m["targets"], m["confidence"]))
    return cols


def _overview(views: list[RunView], sel: Selection) -> list[Column]:
    cols = []
    for v in views:
        m = v.maps
        if str(m.get("selection_hash")) != sel.hash:
            continue
        method = next((k for k in ("attention", "gradcam", "ig", "saliency") if k in m), None)
        if method is not None:
            cols.append(
                Column(f"{v.label} · {METHOD_TITLES[method]}", m[method], m["targets"], m["confidence"])
            )
    return cols


def _tables(out: Path, views: list[RunView]) -> list[dict[str, Any]]:
    from archbench.store.results import rows_to_csv

    summary, mistakes = [], []
    for v in views:
        a = v.analysis
        best = a["best_classes"][0] if a["best_classes"] else {}
        worst = a["worst_classes"][0] if a["worst_classes"] else {}
        pair = a["confused_pairs"][0] if a["confused_pairs"] else {}
        summary.append(
            {
                "run_id": v.run_id,
                "model": v.rec.spec.model.name,
                "label": v.label,
                "top1": round(a["top1"], 4),
                "ece": round(a["calibration"]["ece"], 4),
                "mce": round(a["calibration"]["mce"], 4),
                "mistakes": a["n_mistakes"],
                "best_class": best.get("class"),
                "best_class_acc": best.get("accuracy"),
                "worst_class": worst.get("class"),
                "worst_class_acc": worst.get("accuracy"),
                "most_confused": f"{pair['true']}→{pair['predicted']}" if pair else "",
                "most_confused_count": pair.get("count", 0),
            }
        )
        for e in a["confident_mistakes"]:
            mistakes.append(
                {
                    "run_id": v.run_id,
                    "label": v.label,
                    "index": e["index"],
                    "true": e["true"],
                    "predicted": e["predicted"],
                    "confidence": round(e["confidence"], 4),
                }
            )
    atomic_write_text(out / "error_analysis.csv", rows_to_csv(summary))
    atomic_write_text(out / "confident_mistakes.csv", rows_to_csv(mistakes))
    return [
        {
            "title": "Error analysis per run (best/worst class, most-confused pair, calibration)",
            "csv": "error_analysis.csv",
            "columns": {
                "top1": PERCENT | {"label": "top-1 (%)"},
                "ece": {"label": "ECE", "digits": 3},
                "mce": {"label": "MCE", "digits": 3},
                "mistakes": {"label": "mistakes (images)"},
                "best_class_acc": PERCENT | {"label": "best class accuracy (%)"},
                "worst_class_acc": PERCENT | {"label": "worst class accuracy (%)"},
                "most_confused_count": {"label": "most confused (images)"},
            },
        },
        {
            "title": "Most confident mistakes per run",
            "csv": "confident_mistakes.csv",
            "columns": {"confidence": PERCENT | {"label": "confidence (%)"}},
        },
    ]


def refresh_figures(sweep_dir: Path, pending: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Redraw every figure and table of the sweep from the files on disk; returns the index.json document.

    `pending` maps run ids to explain blocks not yet written into their records (the stage's own run).
    """
    out = stage_dir(sweep_dir)
    views = _load_runs(sweep_dir)
    selections = read_selections(sweep_dir)
    figures: list[dict[str, str]] = []
    notes: list[str] = []
    multi = len(selections) > 1
    for fp, sel in sorted(selections.items()):
        group = [v for v in views if v.rec.data_fingerprint == fp]
        suffix = f"_{fp[:8]}" if multi else ""
        where = f" (test set {fp[:8]})" if multi else ""
        images = load_selected_images(sweep_dir, sel)
        stale = [v.run_id for v in group if v.maps and str(v.maps.get("selection_hash")) != sel.hash]
        if stale:
            notes.append(
                f"{len(stale)} run(s) explained on an earlier selection are left out of the grids{where}: "
                f"{', '.join(stale)}; run `archbench explain` on the sweep to redo them."
            )
        if images is None or not group:
            continue
        class_names = group[0].rec.class_names or []
        how = f"{len(sel.indices)} test images chosen by select={sel.select} (seed {sel.seed})"
        for method in [*METHODS, "overview"]:
            cols = _overview(group, sel) if method == "overview" else _columns(group, sel, method)
            # The overview only adds something when models differ in their own method (a ViT among CNNs).
            own = {c.label.rsplit(" · ", 1)[-1] for c in cols}
            if not cols or (method == "overview" and (len(cols) < 2 or len(own) < 2)):
                continue
            name = f"{method}_grid{suffix}.png"
            title = "Each model's own method" if method == "overview" else METHOD_TITLES[method]
            draw_grid(out / name, f"{title}{where}", images, sel.labels, sel.indices, class_names, cols)
            caption = (
                f"{title}: the same {how} for every model; rows show the true label, columns each model's "
                "prediction and confidence (red: wrong); heatmaps explain the predicted class."
            )
            figures.append({"path": name, "caption": caption})
        if len(sel.indices) > MAX_ROWS:
            notes.append(f"Grids show the first {MAX_ROWS} of {len(sel.indices)} selected images{where}.")
        if len(group) > MAX_COLS:
            notes.append(f"Figures show the first {MAX_COLS} of {len(group)} runs{where}.")
    if views:
        figures += _error_figures(out, views, "")
        tables = _tables(out, views)
    else:
        tables = []
    for v in views:
        explain = (pending or {}).get(v.run_id) or (v.rec.stages or {}).get("explain")
        for method, reason in ((explain or {}).get("skipped") or {}).items():
            notes.append(f"{v.label}: {method} skipped: {reason}")
    notes.append(
        "Grad-CAM uses the last convolutional stage (ViTs: the last block's norm, tokens reshaped to the "
        "patch grid); integrated gradients start from a black image (50 steps, convergence deltas in each "
        "record); saliency is the max |gradient| over channels; attention rollout averages heads and adds "
        "the identity for the residual path. Every heatmap is min-max normalised per image."
    )
    doc = {"title": "Explanations", "figures": figures, "tables": tables, "notes": notes}
    StageIndex.model_validate(doc).write(out)
    return doc
