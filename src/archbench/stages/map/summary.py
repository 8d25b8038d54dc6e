"""The map stage's sweep-level outputs: owns `<out>/maps_*.png`, `map_scores.csv` and `index.json` (what the
report embeds), redrawn from every map of one scene in the folder (nets first, then baselines); the
intervals, paired tests and areas beside them come from `assess`.

Reads only files: the runs' `map` blocks and the baselines' JSON beside their maps; never predicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.scene import UNLABELLED, Scene
from archbench.store.record import StageIndex

FIGURE_MAX_SIDE = 900  # figure panels are decimated to at most this many pixels a side
SCORE_COLUMNS = ["n_pixels", "n_unmapped", "overall_accuracy", "kappa", "f1_macro"]
# How the report shows map_scores.csv (StageIndex.Column): units in the headers, fractions in % as top-1 is.
SCORE_DISPLAY = {
    "n_pixels": {"label": "scored pixels", "digits": 0},
    "n_unmapped": {"label": "not mapped (pixels)", "digits": 0},
    "overall_accuracy": {"label": "overall accuracy (%)", "scale": 100.0, "digits": 2},
    "kappa": {"label": "kappa", "digits": 3},
    "f1_macro": {"label": "F1 macro (%)", "scale": 100.0, "digits": 2},
    "map_file": {"label": "map file"},
}


def collect_entries(run_dirs: list[Path], scene: Scene, out: Path) -> list[dict[str, Any]]:
    """Every map of `scene` in `out`: the runs' (labelled by model, or model and run id when a model
    repeats), then the Random-Forest baselines."""
    from archbench.store.record import read_record

    nets: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        rec = read_record(run_dir)
        block = rec.stages.get("map") if rec is not None else None
        if rec is None or not isinstance(block, dict) or block.get("scene", {}).get("name") != scene.name:
            continue
        if not (out / str(block.get("map_file"))).is_file():
            continue
        nets.append(
            {
                **block,
                "run_id": rec.run_id,
                "model": rec.spec.model.name,
                "map_path": str(out / block["map_file"]),
                "_data_info": (rec.data or {}).get("info"),  # the run's subsets, for the paired tests
                "_run_dir": str(run_dir),  # its predictions.npz: the test patches' scores beside the map's
            }
        )
    counts: dict[str, int] = {}
    for e in nets:
        counts[e["model"]] = counts.get(e["model"], 0) + 1
    for e in nets:
        e["label"] = e["model"] if counts[e["model"]] == 1 else f"{e['model']} ({e['run_id']})"
    nets.sort(key=lambda e: e["label"])
    baselines = []
    for p in sorted(out.glob("random_forest*.json")):
        try:
            b = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if b.get("scene", {}).get("name") == scene.name and (out / b["map_file"]).is_file():
            # The forest's subsets are those of the run whose training pixels it was fitted on.
            info = next((e["_data_info"] for e in nets if e["run_id"] == b.get("training_pixels_of")), None)
            baselines.append(
                {**b, "run_id": b["name"], "label": b["name"], "map_path": str(out / b["map_file"]),
                 "_data_info": info}
            )  # fmt: skip
    return nets + baselines


def write_sweep_outputs(scene: Scene, entries: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Figures, map_scores.csv and index.json for every map of `scene` in `out` (nets, then baselines)."""
    subset = (
        "never_in_training" if all("never_in_training" in e["scores"] for e in entries) else "all_labelled"
    )
    from archbench.stages.map.assess import assess_maps

    _draw(scene, entries, out, subset)
    _write_scores_csv(entries, out / "map_scores.csv")
    index = _index(scene, entries, subset)
    assessment = assess_maps(scene, entries, out, subset)
    index["tables"] += assessment["tables"]
    index["notes"] += assessment["notes"]
    index["assessment"] = assessment["assessment"]
    StageIndex.model_validate(index).write(out)
    return index


def _index_grid(path: Path, class_values: list[int], step: int) -> np.ndarray:
    import rasterio

    lut = np.full(256, UNLABELLED, dtype=np.uint8)
    lut[np.asarray(class_values)] = np.arange(len(class_values), dtype=np.uint8)
    with rasterio.open(path) as src:
        return np.asarray(lut[src.read(1)][::step, ::step])


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    return scores.get("never_in_training") or scores["all_labelled"]


def _draw(scene: Scene, entries: list[dict[str, Any]], out: Path, subset: str) -> None:
    """Side by side with the reference, error maps, per-class F1 on `subset` (panels decimated)."""
    from archbench.data.scene import SceneReader
    from archbench.stages.map import figures

    g = scene.grid
    step = max(1, -(-max(g.height, g.width) // FIGURE_MAX_SIDE))
    with SceneReader(scene) as reader:
        reference = reader.label_grid(reference=True)[::step, ::step]
    titled = []
    for e in entries:
        h = _headline(e["scores"])
        oa, kappa = h["overall_accuracy"], h["kappa"]
        stats = (
            f"OA {oa:.3f}  kappa {kappa:.3f}"
            if oa is not None and kappa is not None
            else "no labelled pixels"
        )
        idx = _index_grid(Path(e["map_path"]), list(scene.class_values), step)
        titled.append((f"{e['label']}\n{stats}", idx))
    figures.side_by_side(
        out / "maps_side_by_side.png", reference, titled, list(scene.class_names), list(scene.colors)
    )
    figures.error_maps(out / "maps_errors.png", reference, titled)
    figures.per_class(
        out / "maps_per_class_f1.png",
        list(scene.class_names),
        [(e["label"], e["scores"][subset]["f1"]) for e in entries],
        ylabel=f"F1 ({subset})",
    )


def _write_scores_csv(entries: list[dict[str, Any]], path: Path) -> None:
    """One row per map and scored subset."""
    from archbench.store.results import rows_to_csv
    from archbench.util.paths import atomic_write_text

    rows = [
        {"model": e["label"], "run_id": e["run_id"], "subset": sub, "map_file": e["map_file"]}
        | {k: s[k] for k in SCORE_COLUMNS}
        for e in entries
        for sub, s in e["scores"].items()
    ]
    atomic_write_text(path, rows_to_csv(rows, ["model", "run_id", "subset", *SCORE_COLUMNS, "map_file"]))


def _index(scene: Scene, entries: list[dict[str, Any]], subset: str) -> dict[str, Any]:
    """The `index.json` document the report reads: figures, the table, notes, and which map is whose."""
    from archbench.stages.map.score import SUBSET_DEFINITIONS

    splits = sorted({e["split_description"] for e in entries if e.get("split_description")})
    return {
        "title": "Land-cover maps",
        "figures": [
            {
                "path": "maps_side_by_side.png",
                "caption": f"Scene {scene.name}: the reference raster and every model's map (one legend); "
                f"OA and kappa on {subset.replace('_', ' ')} pixels.",
            },
            {
                "path": "maps_errors.png",
                "caption": "Where each map agrees with the reference: correct, wrong, "
                "unlabelled or not mapped (a band is nodata).",
            },
            {
                "path": "maps_per_class_f1.png",
                "caption": f"Per-class F1 of every model on {subset.replace('_', ' ')} "
                "pixels; models told apart by grey and hatch (×: class absent from the subset).",
            },
        ],
        "tables": [
            {
                "title": "Map accuracy against the reference raster",
                "csv": "map_scores.csv",
                "columns": SCORE_DISPLAY,
            }
        ],
        "notes": [f"Split: {s}." for s in splits]
        + [f"{k}: {v}." for k, v in SUBSET_DEFINITIONS.items() if any(k in e["scores"] for e in entries)]
        + [
            "Maps are uint8 Cloud-Optimized GeoTIFFs (512-px tiles, DEFLATE, internal overviews) on the "
            "label raster's grid (CRS and transform), nodata where any band "
            "is nodata, with a colour table and tags naming the run id and checkpoint sha256.",
            "random_forest: scikit-learn RandomForestClassifier on the per-pixel band values of the same "
            "training pixels (no spatial context).",
        ],
        "maps": [{"model": e["label"], "run_id": e["run_id"], "map_file": e["map_file"]} for e in entries],
    }
