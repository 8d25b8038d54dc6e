"""The `map` stage: owns turning completed runs into map GeoTIFFs, record blocks and figures.

For each completed `raster_patches` run: check the checkpoint against the record's sha256, predict the
scene window by window, write `<out>/<run_id>.tif`, score it against the label raster, and store the
block in `record.stages["map"]`. With `rf`, the Random-Forest baseline is fitted on the same training
pixels, mapped and scored the same way (`<out>/random_forest*.tif|json`, and inside each run's block).
Then the sweep-level figures, `map_scores.csv` and `index.json` (what the report embeds) go to `<out>`,
by default `<sweep>/stages/map/`. Runs through the stage driver (archbench.stages.run_stage): after
training when the sweep file has a `map:` section, or from `archbench map` (commands/map.py only parses
arguments and prints).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import MapSpec, SweepConfig
from archbench.data.scene import UNLABELLED, Scene
from archbench.stages import Outcome, StageContext, StageSkip
from archbench.store.record import StageIndex
from archbench.util.errors import ArchbenchError, ConfigError

FIGURE_MAX_SIDE = 900  # figure panels are decimated to at most this many pixels a side


@dataclass
class MapSummary:
    out_dirs: list[Path] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 if a run failed, 2 if there was nothing to map, else 0."""
        if any(o.status == "failed" for o in self.outcomes):
            return 1
        return 0 if any(o.block is not None for o in self.outcomes) else 2


def find_run_dirs(target: Path) -> list[Path]:
    """A run folder, a sweep folder (all its runs), an output_dir of sweeps, or a run id under ./*/*/runs."""
    from archbench.store.results import find_sweep_dirs

    if (target / "record.json").is_file():
        return [target]
    sweeps = find_sweep_dirs(target) if target.is_dir() else []
    if sweeps:
        return [p for sd in sweeps for p in sorted((sd / "runs").iterdir()) if p.is_dir()]
    if not target.exists() and len(target.parts) == 1:
        hits = sorted(Path.cwd().glob(f"*/*/runs/{target.name}"))
        if len(hits) == 1:
            return hits
        if len(hits) > 1:
            raise ArchbenchError(
                f"run id {target} is ambiguous: {', '.join(map(str, hits))}; give the folder"
            )
    raise ArchbenchError(
        f"{target}: not a run folder (with record.json), a sweep folder (with runs/) or a known run id"
    )


def _sweep_of(run_dir: Path) -> Path | None:
    from archbench.store.layout import sweep_of

    return sweep_of(run_dir)


class _SceneCache:
    def __init__(self) -> None:
        self._scenes: dict[tuple[str, str | None], tuple[Scene, dict[str, Any]]] = {}

    def get(self, path: Path, root: str | None) -> tuple[Scene, dict[str, Any]]:
        from archbench.data.scene import open_scene

        key = (str(Path(path).resolve()), root)
        if key not in self._scenes:
            scene = open_scene(path, root)
            self._scenes[key] = (scene, scene.provenance())
        return self._scenes[key]


def _band_digests(prov: dict[str, Any]) -> list[str]:
    return [prov["files"][b["file"]] for b in prov["bands"]]


def _training_scene(rec: Any, cache: _SceneCache) -> tuple[Scene, dict[str, Any]]:
    info = rec.data["info"]["scene"]
    return cache.get(Path(info["scene_file"]), info.get("root"))


def _subsets(info: dict[str, Any], same: bool) -> dict[str, np.ndarray | None]:
    from archbench.data.raster import block_mask, dilate, unpack_mask

    subsets: dict[str, np.ndarray | None] = {"all_labelled": None, "never_in_training": None}
    if same:
        covered = dilate(unpack_mask(info["train_pixels"]), int(info["halo"]))
        subsets["never_in_training"] = ~covered
        if info.get("split") == "block":
            h, w = (int(v) for v in info["train_pixels"]["shape"])
            subsets["test_blocks"] = block_mask((h, w), int(info["block_size"]), info["test_blocks"])
    return subsets


def _check_run(run_dir: Path, rec: Any, scene: Scene) -> None:
    from archbench.util.paths import file_sha256

    info = rec.data["info"]
    if scene.num_bands != int(rec.data["in_chans"]):
        raise ConfigError(
            f"{scene.path}: {scene.num_bands} band(s) but run {rec.run_id} was trained on "
            f"{rec.data['in_chans']} ({', '.join(info['band_names'])}); give a scene with the same bands"
        )
    if list(scene.class_names) != list(rec.class_names) or list(scene.class_values) != info["class_values"]:
        raise ConfigError(
            f"{scene.path}: classes {list(zip(scene.class_values, scene.class_names, strict=True))} differ "
            f"from run {rec.run_id}'s {list(zip(info['class_values'], rec.class_names, strict=True))}"
        )
    ckpt = run_dir / "checkpoints" / f"{rec.spec.eval.checkpoint}.pt"
    if not ckpt.is_file():
        raise ArchbenchError(f"{ckpt}: checkpoint missing")
    if rec.checkpoint_sha256 and file_sha256(ckpt) != rec.checkpoint_sha256:
        raise ArchbenchError(
            f"{ckpt}: sha256 differs from the record's checkpoint_sha256 (the weights changed after "
            "evaluation); re-run the sweep to re-evaluate"
        )


@dataclass
class MapSettings:
    """The sweep's `map:` section (MapSpec) plus what only the command sets (--out, --force)."""

    scene: Path | None = None
    root: str | None = None
    out: Path | None = None
    rf: bool = False
    window: int = 256
    batch_size: int = 2048
    device: str = "auto"
    rf_trees: int = 100
    force: bool = False
    threads: int | None = None

    @classmethod
    def from_spec(cls, spec: MapSpec) -> MapSettings:
        return cls(
            scene=Path(spec.scene) if spec.scene else None, root=spec.root, rf=spec.rf, window=spec.window,
            batch_size=spec.batch_size, device=spec.device, rf_trees=spec.rf_trees, threads=spec.threads,
        )  # fmt: skip

    def out_dir(self, sweep_dir: Path) -> Path:
        from archbench.store.layout import stage_dir

        return self.out if self.out is not None else stage_dir(sweep_dir, "map")


def _forest_for(
    rec: Any, scene: Scene, same: bool, settings: MapSettings, out: Path, cache: _SceneCache,
    forests: dict[str, dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """Fit (once per training-pixel set and scene), map and score the Random-Forest baseline."""
    from archbench.data.raster import unpack_mask
    from archbench.data.scene import SceneReader
    from archbench.stages.map.forest import fit_forest
    from archbench.stages.map.predict import predict_windows, write_map
    from archbench.stages.map.score import score_map
    from archbench.store.record import now_iso

    info = rec.data["info"]
    digest = hashlib.sha256((info["train_pixels"]["data"] + str(scene.path)).encode()).hexdigest()[:10]
    if digest in forests:
        return forests[digest]
    train_scene, _ = _training_scene(rec, cache)
    with SceneReader(train_scene) as reader:
        forest = fit_forest(
            reader, unpack_mask(info["train_pixels"]), seed=rec.spec.seed, n_estimators=settings.rf_trees
        )
    name = "random_forest" if not forests else f"random_forest-{digest}"
    map_path = out / f"{name}.tif"
    tags = {"model": "random_forest", "run_id": name, "scene": scene.name, "training_pixels_of": rec.run_id}
    with SceneReader(scene) as reader:
        t0 = time.perf_counter()
        windows = predict_windows(
            reader, forest.classify, 1, np.zeros(scene.num_bands), settings.window, 8192
        )
        n = write_map(map_path, scene.grid, windows, scene.class_values, scene.colors, tags)
        seconds = time.perf_counter() - t0
        scores = score_map(reader, map_path, _subsets(info, same))
    entry = {
        "name": name,
        "scene": {"name": scene.name, "scene_file": str(scene.path), "same_as_training": same},
        "map_path": str(map_path.resolve()),
        "map_file": map_path.name,
        "training_pixels_of": rec.run_id,
        **forest.info,
        "prediction": {"pixels_mapped": n, "seconds": seconds, "pixels_per_s": n / max(seconds, 1e-9)},
        "scores": scores,
        "created_at": now_iso(),
    }
    from archbench.util.paths import atomic_write_text

    atomic_write_text(out / f"{name}.json", json.dumps(entry, indent=2))
    forests[digest] = entry
    return entry


def _up_to_date(block: dict[str, Any], rec: Any, prov: dict[str, Any], out: Path, rf: bool) -> bool:
    """The run's map of this scene, from this checkpoint, is already in `out` (with the baseline if asked)."""
    return (
        block.get("checkpoint_sha256") == rec.checkpoint_sha256
        and block.get("scene", {}).get("scene_sha256") == prov["scene_sha256"]
        and Path(str(block.get("map_path"))).resolve() == (out / str(block.get("map_file"))).resolve()
        and (out / str(block.get("map_file"))).is_file()
        and (not rf or "baselines" in block)
    )


def map_run(ctx: StageContext) -> dict[str, Any]:
    """One completed run's `map` block (raises StageSkip for a run that is not raster_patches or is
    already mapped)."""
    from archbench.data.scene import SceneReader
    from archbench.engine.runtime import resolve_device
    from archbench.stages.map.predict import net_classifier, predict_windows, run_tags, write_map
    from archbench.stages.map.score import SUBSET_DEFINITIONS, score_map
    from archbench.store.record import now_iso

    rec, run_dir, settings = ctx.record, ctx.run_dir, ctx.settings
    if rec.spec.data.kind != "raster_patches" or rec.data is None:
        raise StageSkip(f"data.kind {rec.spec.data.kind} is not raster_patches")
    cache: _SceneCache = ctx.shared.setdefault("scene_cache", _SceneCache())
    out = settings.out_dir(ctx.sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    forests: dict[str, dict[str, Any]] = ctx.shared.setdefault("forests", {}).setdefault(str(out), {})
    info = rec.data["info"]
    train_scene, train_prov = _training_scene(rec, cache)
    if settings.scene is None:
        scene, prov = train_scene, train_prov
    else:
        scene, prov = cache.get(settings.scene, settings.root)
    _check_run(run_dir, rec, scene)
    same = scene.grid.same_as(train_scene.grid) and _band_digests(prov) == _band_digests(train_prov)
    ctx.shared.setdefault("scenes", {}).setdefault(str(out), {})[scene.name] = scene
    old = rec.stages.get("map")
    if not settings.force and isinstance(old, dict) and _up_to_date(old, rec, prov, out, settings.rf):
        raise StageSkip("already mapped (--force maps it again)", block=old)
    subsets = _subsets(info, same)
    import torch

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = ctx.device if ctx.device is not None else resolve_device(settings.device)
    classify = net_classifier(run_dir, rec, device)
    map_path = out / f"{rec.run_id}.tif"
    patch, fill = int(info["patch_size"]), np.asarray(info["fill_values"], np.float32)
    with SceneReader(scene) as reader:
        t0 = time.perf_counter()
        windows = predict_windows(reader, classify, patch, fill, settings.window, settings.batch_size)
        n = write_map(
            map_path, scene.grid, windows, scene.class_values, scene.colors, run_tags(rec, scene.name)
        )
        seconds = time.perf_counter() - t0
        scores = score_map(reader, map_path, subsets)
    block: dict[str, Any] = {
        "scene": {
            "name": scene.name,
            "scene_file": str(scene.path),
            "scene_sha256": prov["scene_sha256"],
            "same_as_training": same,
        },
        "map_path": str(map_path.resolve()),
        "map_file": map_path.name,
        "checkpoint": rec.spec.eval.checkpoint,
        "checkpoint_sha256": rec.checkpoint_sha256,
        "class_values": list(scene.class_values),
        "class_names": list(scene.class_names),
        "split": info["split"],
        "split_description": info["split_description"],
        "scores": scores,
        "subset_definitions": {k: SUBSET_DEFINITIONS[k] for k in scores},
        "prediction": {
            "pixels_mapped": n,
            "seconds": seconds,
            "pixels_per_s": n / max(seconds, 1e-9),
            "window": settings.window,
            "patch_size": patch,
            "halo": patch // 2,
            "batch_size": settings.batch_size,
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
        "created_at": now_iso(),
    }
    if settings.rf:
        forest = _forest_for(rec, scene, same, settings, out, cache, forests)
        block["baselines"] = {
            "random_forest": {k: forest[k] for k in ("name", "map_path", "scores", "n_estimators")}
        }
    return block


# --- sweep-level outputs -------------------------------------------------------------------------------


def _index_grid(path: Path, class_values: list[int], step: int) -> np.ndarray:
    import rasterio

    lut = np.full(256, UNLABELLED, dtype=np.uint8)
    lut[np.asarray(class_values)] = np.arange(len(class_values), dtype=np.uint8)
    with rasterio.open(path) as src:
        return np.asarray(lut[src.read(1)][::step, ::step])


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    return scores.get("never_in_training") or scores["all_labelled"]


def write_sweep_outputs(scene: Scene, entries: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Figures, map_scores.csv and index.json for every map of `scene` in `out` (nets, then baselines)."""
    from archbench.data.scene import SceneReader
    from archbench.stages.map import figures
    from archbench.util.paths import atomic_write_text

    g = scene.grid
    step = max(1, -(-max(g.height, g.width) // FIGURE_MAX_SIDE))
    with SceneReader(scene) as reader:
        reference = reader.label_grid(reference=True)[::step, ::step]
    names = [e["label"] for e in entries]
    maps = [(e["label"], _index_grid(Path(e["map_path"]), list(scene.class_values), step)) for e in entries]
    titled = []
    for (label, idx), e in zip(maps, entries, strict=True):
        h = _headline(e["scores"])
        oa, kappa = h["overall_accuracy"], h["kappa"]
        stats = (
            f"OA {oa:.3f}  kappa {kappa:.3f}"
            if oa is not None and kappa is not None
            else "no labelled pixels"
        )
        titled.append((f"{label}\n{stats}", idx))
    subset = (
        "never_in_training" if all("never_in_training" in e["scores"] for e in entries) else "all_labelled"
    )
    figures.side_by_side(
        out / "maps_side_by_side.png", reference, titled, list(scene.class_names), list(scene.colors)
    )
    figures.error_maps(out / "maps_errors.png", reference, titled)
    figures.per_class(
        out / "maps_per_class_f1.png",
        list(scene.class_names),
        [(n, e["scores"][subset]["f1"]) for n, e in zip(names, entries, strict=True)],
        ylabel=f"F1 ({subset})",
    )
    buf = io.StringIO()
    cols = [
        "model",
        "run_id",
        "subset",
        "n_pixels",
        "n_unmapped",
        "overall_accuracy",
        "kappa",
        "f1_macro",
        "map_file",
    ]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for e in entries:
        for sub, s in e["scores"].items():
            w.writerow(
                {"model": e["label"], "run_id": e["run_id"], "subset": sub, "map_file": e["map_file"]}
                | {k: s[k] for k in ("n_pixels", "n_unmapped", "overall_accuracy", "kappa", "f1_macro")}
            )
    atomic_write_text(out / "map_scores.csv", buf.getvalue())
    splits = sorted({e["split_description"] for e in entries if e.get("split_description")})
    from archbench.stages.map.score import SUBSET_DEFINITIONS

    index = {
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
                "pixels (hatched: class absent from the subset).",
            },
        ],
        "tables": [{"title": "Map accuracy against the reference raster", "csv": "map_scores.csv"}],
        "notes": [f"Split: {s}." for s in splits]
        + [f"{k}: {v}." for k, v in SUBSET_DEFINITIONS.items() if any(k in e["scores"] for e in entries)]
        + [
            "Maps are uint8 GeoTIFFs on the label raster's grid (CRS and transform), nodata where any band "
            "is nodata, with a colour table and tags naming the run id and checkpoint sha256.",
            "random_forest: scikit-learn RandomForestClassifier on the per-pixel band values of the same "
            "training pixels (no spatial context).",
        ],
        "maps": [{"model": e["label"], "run_id": e["run_id"], "map_file": e["map_file"]} for e in entries],
    }
    StageIndex.model_validate(index).write(out)
    return index


def _collect_entries(run_dirs: list[Path], scene: Scene, out: Path) -> list[dict[str, Any]]:
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
            baselines.append(
                {**b, "run_id": b["name"], "label": b["name"], "map_path": str(out / b["map_file"])}
            )
    return nets + baselines


class MapStage:
    """The stage's entry points for the driver (archbench.stages.run_stage)."""

    name = "map"

    def settings(self, cfg: SweepConfig) -> MapSettings | None:
        return MapSettings.from_spec(cfg.map) if cfg.map is not None and cfg.map.enabled else None

    def run_one(self, ctx: StageContext) -> dict[str, Any]:
        return map_run(ctx)

    def summarise(self, sweep_dir: Path, settings: Any, shared: dict[str, Any]) -> StageIndex | None:
        """Figures, map_scores.csv and index.json of every scene mapped into the sweep's map folder."""
        out = settings.out_dir(sweep_dir)
        siblings = sorted((sweep_dir / "runs").iterdir()) if (sweep_dir / "runs").is_dir() else [sweep_dir]
        index = None
        for scene in shared.get("scenes", {}).get(str(out), {}).values():
            entries = _collect_entries([p for p in siblings if p.is_dir()], scene, out)
            if entries:
                index = StageIndex.model_validate(write_sweep_outputs(scene, entries, out))
        return index


STAGE = MapStage()


def map_target(target: Path, settings: MapSettings, report: Any = print, device: Any = None) -> MapSummary:
    """`archbench map`: every completed run under `target` through the stage driver (claimed)."""
    from archbench.stages import run_stage

    run_dirs = find_run_dirs(target)
    shared: dict[str, Any] = {}
    cache = shared.setdefault("scene_cache", _SceneCache())
    if settings.scene is not None:
        cache.get(settings.scene, settings.root)  # a bad scene file fails before any run is touched
    result = run_stage("map", run_dirs, settings, device=device, report=report, shared=shared)
    summary = MapSummary(outcomes=result.outcomes)
    for forests in shared.get("forests", {}).values():
        summary.baselines.extend(forests.values())
    summary.out_dirs = sorted({settings.out_dir(_sweep_of(rd) or rd) for rd in run_dirs})
    return summary
