"""The accuracy assessment of every map of one scene: owns `map_accuracy.csv`, `map_class_accuracy.csv`,
`map_pairwise.csv`, `map_areas.csv` and the index's `assessment` block, tables and sentences.

Reads the maps and the reference raster once each (whole grids: one uint8 array per map); the numbers
come from `accuracy` (bootstrap intervals, McNemar with Holm) and `area` (Olofsson et al. 2014).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.scene import UNLABELLED, Scene

SUBSET_ORDER = ("never_in_training", "test_blocks", "all_labelled")
# The run's own test set (balanced patches, scored at evaluation): shown beside the map's subsets so that a
# run's test top-1 and its map OA can be read together (class distribution and balanced accuracy differ).
TEST_PATCHES = "test_patches"
_CI = {"scale": 100.0, "digits": 1}
ACCURACY_DISPLAY = {
    "subset": {"label": "subset"},
    "n_pixels": {"label": "pixels", "digits": 0},
    "overall_accuracy": {"label": "OA (%)", "scale": 100.0, "digits": 2},
    "overall_accuracy_low": {"label": "OA 95% low", **_CI},
    "overall_accuracy_high": {"label": "OA 95% high", **_CI},
    "balanced_accuracy": {"label": "balanced accuracy (%)", "scale": 100.0, "digits": 2},
    "balanced_accuracy_low": {"label": "BA 95% low", **_CI},
    "balanced_accuracy_high": {"label": "BA 95% high", **_CI},
    "kappa": {"label": "kappa", "digits": 3},
    "kappa_low": {"label": "kappa 95% low", "digits": 3},
    "kappa_high": {"label": "kappa 95% high", "digits": 3},
    "f1_macro": {"label": "F1 macro (%)", "scale": 100.0, "digits": 2},
    "f1_macro_low": {"label": "F1 95% low", **_CI},
    "f1_macro_high": {"label": "F1 95% high", **_CI},
}
PAIRWISE_DISPLAY = {
    "oa_a": {"label": "OA A (%)", "scale": 100.0, "digits": 2},
    "oa_b": {"label": "OA B (%)", "scale": 100.0, "digits": 2},
    "p_value": {"label": "p", "digits": 4},
    "p_holm": {"label": "Holm p", "digits": 4},
    "statistic": {"label": "chi-square", "digits": 2},
}
AREA_DISPLAY = {
    "mapped_area": {"label": "mapped area", "digits": 1},
    "adjusted_area": {"label": "error-adjusted area", "digits": 1},
    "ci_low": {"label": "95% low", "digits": 1},
    "ci_high": {"label": "95% high", "digits": 1},
    "standard_error": {"label": "SE", "digits": 1},
}


def _table(title: str, name: str, columns: dict[str, Any] | None) -> dict[str, Any]:
    return {"title": title, "csv": name} | ({"columns": columns} if columns else {})


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    from archbench.store.results import rows_to_csv
    from archbench.util.paths import atomic_write_text

    atomic_write_text(path, rows_to_csv(rows, fields))


def _pixels(scene: Scene, entries: list[dict[str, Any]]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The reference class index of every labelled pixel, and per map: its class indices there, the
    mapped pixels of each class over the whole map, and its subsets as masks over the labelled pixels."""
    import rasterio

    from archbench.data.scene import SceneReader
    from archbench.stages.map.score import subset_masks

    k = len(scene.class_values)
    lut = np.full(256, UNLABELLED, dtype=np.uint8)
    lut[np.asarray(scene.class_values)] = np.arange(k, dtype=np.uint8)
    with SceneReader(scene) as reader:
        ref = reader.label_grid(reference=True).ravel()
    where = np.flatnonzero(ref != UNLABELLED)
    ref_l = ref[where]
    maps = []
    for e in entries:
        with rasterio.open(e["map_path"]) as src:
            grid = lut[src.read(1)].ravel()
        pred = grid[where]
        info = e.get("_data_info")
        same = bool(e.get("scene", {}).get("same_as_training"))
        masks = subset_masks(info, same) if info else {"all_labelled": None}
        scored = {
            name: (pred != UNLABELLED) & (True if masks.get(name) is None else masks[name].ravel()[where])  # type: ignore[union-attr]
            for name in e["scores"]
            if name in masks
        }
        mapped = np.bincount(grid[grid != UNLABELLED], minlength=k)[:k]
        maps.append({"correct": pred == ref_l, "scored": scored, "mapped": mapped})
    return ref_l, maps


def _test_patch_confusion(e: dict[str, Any], k: int) -> np.ndarray | None:
    """The confusion matrix (reference rows) of a run's test patches, from its recorded predictions."""
    path = Path(e.get("_run_dir") or "") / "predictions.npz"
    if not e.get("_run_dir") or not path.is_file():
        return None
    with np.load(path) as z:
        y_true, y_pred = np.asarray(z["y_true"], np.int64), np.asarray(z["y_pred"], np.int64)
    if not y_true.size or max(int(y_true.max()), int(y_pred.max())) >= k:
        return None
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _accuracy_rows(
    entries: list[dict[str, Any]], names: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Bootstrap intervals of every map's scores on every subset, and of each run's test patches: summary
    rows and per-class rows."""
    from archbench.stages.map.accuracy import CLASS_METRICS, SUMMARY_METRICS, bootstrap_scores

    summary, per_class = [], []
    for e in entries:
        matrices = {s: e["scores"][s]["confusion_matrix"] for s in SUBSET_ORDER if s in e["scores"]}
        patches = _test_patch_confusion(e, len(names))
        if patches is not None:
            matrices[TEST_PATCHES] = patches
        for sub, cm in matrices.items():
            b = bootstrap_scores(cm)
            row: dict[str, Any] = {"model": e["label"], "run_id": e["run_id"], "subset": sub}
            row |= {"n_pixels": b["n_pixels"], "ci_method": b["method"]}
            for m in SUMMARY_METRICS:
                row |= {m: b[m]["estimate"], f"{m}_low": b[m]["ci_low"], f"{m}_high": b[m]["ci_high"]}
            summary.append(row)
            for j, name in enumerate(names):
                crow = {"model": e["label"], "subset": sub, "class": name}
                crow |= {"reference_pixels": b["class_pixels"][j], "reference_share": b["class_share"][j]}
                for m in CLASS_METRICS:
                    v = b[m][j]
                    crow |= {m: v["estimate"], f"{m}_low": v["ci_low"], f"{m}_high": v["ci_high"]}
                per_class.append(crow)
    return summary, per_class


def _pairwise(entries: list[dict[str, Any]], maps: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """McNemar (Holm over the pairs) per subset that at least two maps were scored on."""
    from archbench.stages.map.accuracy import pairwise_tests

    out = {}
    for sub in SUBSET_ORDER:
        idx = [i for i, m in enumerate(maps) if sub in m["scored"]]
        if len(idx) >= 2:
            rows = pairwise_tests(
                [entries[i]["label"] for i in idx],
                [maps[i]["correct"] for i in idx],
                [maps[i]["scored"][sub] for i in idx],
            )
            out[sub] = [{"subset": sub, **r} for r in rows]
    return out


def _areas(
    scene: Scene, entries: list[dict[str, Any]], maps: list[dict[str, Any]], subset: str
) -> tuple[list[dict[str, Any]], str]:
    """Error-adjusted areas per map and class, the subset's labelled pixels as the sample."""
    from archbench.stages.map.area import error_adjusted_areas, pixel_area_ha

    ha = pixel_area_ha(scene.grid.transform, scene.grid.crs)
    unit = "ha" if ha is not None else "pixels"
    rows = []
    for e, m in zip(entries, maps, strict=True):
        sample = np.asarray(e["scores"][subset]["confusion_matrix"]).T  # map rows, reference columns
        if not m["mapped"].sum():
            continue
        a = error_adjusted_areas(sample, m["mapped"], ha if ha is not None else 1.0)
        for j, name in enumerate(scene.class_names):
            row = {"model": e["label"], "sample": subset, "class": name, "unit": unit}
            row |= {"mapped_pixels": int(m["mapped"][j]), "sample_pixels": a["sample_pixels"][j]}
            row["unsampled_stratum"] = j in a["unsampled_strata"]  # mapped, no sample: its area is lost
            rows.append(row | {key: a[key][j] for key in AREA_DISPLAY})
    return rows, unit


def _notes(
    entries: list[dict[str, Any]], pairwise: dict[str, list[dict[str, Any]]], unit: str, subset: str
) -> list[str]:
    """The index notes: how intervals were made, each subset's verdict against the forest, the areas."""
    from archbench.stages.map.accuracy import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, forest_sentence

    forests = [e["label"] for e in entries if str(e.get("name", "")).startswith("random_forest")]
    notes = [
        f"Intervals: 95% percentile bootstrap over the scored pixels ({BOOTSTRAP_RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}): the pixels are every labelled pixel of the subset, not a probability sample, so "
        "the stratified-sampling variances do not apply. Balanced accuracy (the mean of the per-class "
        "producer's accuracies) weighs every class alike; overall accuracy weighs them by their share of the "
        "subset (map_class_accuracy.csv lists each subset's class distribution), so the two differ most on "
        "imbalanced subsets and on subsets whose class mix differs from the balanced test patches. The "
        f"`{TEST_PATCHES}` rows are each run's own test set (its predictions.npz, as evaluated), scored the "
        "same way: a run's test top-1 and its map's OA can differ because the scene's class mix is not that "
        "of the test patches; compare balanced accuracy across the rows.",
    ]
    for sub, rows in pairwise.items():
        for forest in forests:
            notes.append(forest_sentence(sub, rows, forest))
    if not forests and pairwise:
        notes.append(
            "No Random-Forest map (archbench map --rf): map_pairwise.csv holds the tests between the maps."
        )
    notes.append(
        f"Error-adjusted areas ({unit}): the stratified estimator of Olofsson et al. (2014), strata = map "
        f"classes, the labelled {subset.replace('_', ' ')} pixels as the reference sample, 95% CI = "
        "±1.96·SE; valid only insofar as those pixels represent their map class (not a random sample)."
    )
    return notes


def assess_maps(scene: Scene, entries: list[dict[str, Any]], out: Path, subset: str) -> dict[str, Any]:
    """Write the four CSVs; return the index's additions: `tables`, `notes` and the `assessment` block."""
    from archbench.stages.map.accuracy import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

    ref_l, maps = _pixels(scene, entries)
    summary, per_class = _accuracy_rows(entries, list(scene.class_names))
    pairwise = _pairwise(entries, maps)
    areas, unit = _areas(scene, entries, maps, subset)
    _write_csv(
        out / "map_accuracy.csv",
        ["model", "run_id", "subset", *list(summary[0])[3:]] if summary else ["model"],
        summary,
    )
    _write_csv(out / "map_class_accuracy.csv", list(per_class[0]) if per_class else ["model"], per_class)
    pair_rows = [r for rows in pairwise.values() for r in rows]
    pair_fields = [
        "subset",
        "map_a",
        "map_b",
        "n_pixels",
        "oa_a",
        "oa_b",
        "only_a_right",
        "only_b_right",
        "method",
        "statistic",
        "p_value",
        "p_holm",
    ]
    _write_csv(out / "map_pairwise.csv", pair_fields, pair_rows)
    _write_csv(out / "map_areas.csv", list(areas[0]) if areas else ["model"], areas)
    notes = _notes(entries, pairwise, unit, subset)
    tables = [
        _table("Map accuracy with 95% bootstrap intervals", "map_accuracy.csv", ACCURACY_DISPLAY),
        _table(
            "Paired McNemar tests between maps (Holm-adjusted per subset)",
            "map_pairwise.csv",
            PAIRWISE_DISPLAY,
        ),
        _table(f"Mapped and error-adjusted area per class ({unit})", "map_areas.csv", AREA_DISPLAY),
        _table(
            "Per-class user's and producer's accuracy and F1, 95% bootstrap", "map_class_accuracy.csv", None
        ),
    ]
    block = {
        "ci_method": "bootstrap",
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": BOOTSTRAP_SEED,
        "labelled_pixels": int(ref_l.size),
        "accuracy": summary,
        "class_accuracy": per_class,
        "pairwise": pairwise,
        "areas": {
            "unit": unit,
            "sample": subset,
            "method": "Olofsson et al. 2014, strata = map classes",
            "rows": areas,
        },
    }
    return {"tables": tables, "notes": notes, "assessment": block}
