"""The `map` stage: owns turning completed runs into map GeoTIFFs and record blocks, and its settings.

For each completed `raster_patches` run: check the checkpoint against the record's sha256, predict the
scene window by window, write `<out>/<run_id>.tif`, score it against the label raster, and store the
block in `record.stages["map"]`. With `rf`, the Random-Forest baseline is fitted on the same training
pixels, mapped and scored the same way (`<out>/random_forest*.tif|json`, and inside each run's block).
Then `summary.py` redraws the sweep-level figures, `map_scores.csv` and `index.json` in `<out>`, by
default `<sweep>/stages/map/`. Runs through the stage driver (archbench.stages.run_stage): after training
when the sweep file has a `map:` section, or from `archbench map` (commands/map.py only parses arguments
and prints).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from archbench.config import MapSpec, SweepConfig
from archbench.data.scene import Scene
from archbench.stages import Outcome
from archbench.stages.base import Stage, StageContext, StageSkip, run_folders, stage_output
from archbench.store.layout import RUNS_DIR, RunLayout, stage_dir, sweep_of
from archbench.store.record import StageIndex
from archbench.util.errors import ArchbenchError, ConfigError

if TYPE_CHECKING:
    import torch


@dataclass
class MapSettings:
    """The stage's settings: the sweep file's `map:` section (MapSpec, where every default lives) plus what
    only the command sets (--out, --force)."""

    spec: MapSpec = field(default_factory=MapSpec)
    out: Path | None = None
    force: bool = False

    @property
    def device(self) -> str | None:
        return self.spec.device

    @property
    def threads(self) -> int | None:
        return self.spec.threads

    @property
    def scene(self) -> Path | None:
        return Path(self.spec.scene) if self.spec.scene else None

    def out_dir(self, sweep_dir: Path, create: bool = False) -> Path:
        """--out, else `<sweep>/stages/map/`; created when `create`."""
        if self.out is None:
            return stage_output(sweep_dir, "map") if create else stage_dir(sweep_dir, "map")
        if create:
            self.out.mkdir(parents=True, exist_ok=True)
        return self.out


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

    if RunLayout(target).record.is_file():
        return [target]
    sweeps = find_sweep_dirs(target) if target.is_dir() else []
    if sweeps:
        return [p for sd in sweeps for p in run_folders(sd)]
    if not target.exists() and len(target.parts) == 1:
        hits = sorted(Path.cwd().glob(f"*/*/{RUNS_DIR}/{target.name}"))
        if len(hits) == 1:
            return hits
        if len(hits) > 1:
            raise ArchbenchError(
                f"run id {target} is ambiguous: {', '.join(map(str, hits))}; give the folder"
            )
    raise ArchbenchError(
        f"{target}: not a run folder (with record.json), a sweep folder (with runs/) or a known run id"
    )


def check_something_to_map(target: Path, run_dirs: list[Path]) -> None:
    """Raise (one line) unless some run is a completed raster_patches run: nothing else can be mapped."""
    from archbench.store.record import read_record

    why: dict[str, int] = {}
    for run_dir in run_dirs:
        rec = read_record(run_dir)
        if rec is not None and rec.status == "completed" and rec.spec.data.kind == "raster_patches":
            return
        reason = (
            "no valid record"
            if rec is None
            else f"status {rec.status}"
            if rec.status != "completed"
            else f"data.kind {rec.spec.data.kind}"
        )
        why[reason] = why.get(reason, 0) + 1
    found = ", ".join(f"{n} run{'s' if n > 1 else ''} with {r}" for r, n in why.items()) or "no run folders"
    raise ArchbenchError(f"{target}: nothing to map: no completed raster_patches run ({found})")


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
    ckpt = RunLayout(run_dir).checkpoint(rec.spec.eval.checkpoint)
    if not ckpt.is_file():
        raise ArchbenchError(f"{ckpt}: checkpoint missing")
    if rec.checkpoint_sha256 and file_sha256(ckpt) != rec.checkpoint_sha256:
        raise ArchbenchError(
            f"{ckpt}: sha256 differs from the record's checkpoint_sha256 (the weights changed after "
            "evaluation); re-run the sweep to re-evaluate"
        )


def _forest_for(
    rec: Any, scene: Scene, same: bool, settings: MapSettings, out: Path, cache: _SceneCache,
    forests: dict[str, dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """Fit (once per training-pixel set and scene), map and score the Random-Forest baseline."""
    from archbench.data.raster import unpack_mask
    from archbench.data.scene import SceneReader
    from archbench.stages.map.forest import fit_forest
    from archbench.stages.map.predict import predict_windows, write_map
    from archbench.stages.map.score import score_map, subset_masks
    from archbench.store.record import now_iso
    from archbench.util.paths import atomic_write_text

    info = rec.data["info"]
    digest = hashlib.sha256((info["train_pixels"]["data"] + str(scene.path)).encode()).hexdigest()[:10]
    if digest in forests:
        return forests[digest]
    train_scene, _ = _training_scene(rec, cache)
    with SceneReader(train_scene) as reader:
        forest = fit_forest(
            reader, unpack_mask(info["train_pixels"]), seed=rec.spec.seed, n_estimators=settings.spec.rf_trees
        )
    name = "random_forest" if not forests else f"random_forest-{digest}"
    map_path = out / f"{name}.tif"
    tags = {"model": "random_forest", "run_id": name, "scene": scene.name, "training_pixels_of": rec.run_id}
    with SceneReader(scene) as reader:
        t0 = time.perf_counter()
        windows = predict_windows(
            reader, forest.classify, 1, np.zeros(scene.num_bands), settings.spec.window, 8192
        )
        n = write_map(map_path, scene.grid, windows, scene.class_values, scene.colors, tags)
        seconds = time.perf_counter() - t0
        scores = score_map(reader, map_path, subset_masks(info, same))
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


@dataclass
class _MapJob:
    """What `prepare` settled for one run: the scene to map, its provenance, whether it is the scene the
    run trained on (then the never-in-training subsets apply), and the folder the map goes to."""

    scene: Scene
    prov: dict[str, Any]
    same: bool
    out: Path
    cache: _SceneCache


class MapStage(Stage):
    """What the map stage adds to the stage base: its settings, its checks, its block and its figures."""

    name = "map"

    def settings(self, cfg: SweepConfig) -> MapSettings | None:
        return MapSettings(cfg.map) if cfg.map is not None and cfg.map.enabled else None

    def prepare(self, ctx: StageContext) -> _MapJob:
        """The scene, checked against the run; StageSkip for a run that is not raster_patches or is mapped."""
        rec, settings = ctx.record, ctx.settings
        if rec.spec.data.kind != "raster_patches" or rec.data is None:
            raise StageSkip(f"data.kind {rec.spec.data.kind} is not raster_patches")
        cache: _SceneCache = ctx.shared.setdefault("scene_cache", _SceneCache())
        out = settings.out_dir(ctx.sweep_dir, create=True)
        train_scene, train_prov = _training_scene(rec, cache)
        if settings.scene is None:
            scene, prov = train_scene, train_prov
        else:
            scene, prov = cache.get(settings.scene, settings.spec.root)
        _check_run(ctx.run_dir, rec, scene)
        same = scene.grid.same_as(train_scene.grid) and _band_digests(prov) == _band_digests(train_prov)
        ctx.shared.setdefault("scenes", {}).setdefault(str(out), {})[scene.name] = scene
        old = rec.stages.get("map")
        if (
            not settings.force
            and isinstance(old, dict)
            and _up_to_date(old, rec, prov, out, settings.spec.rf)
        ):
            raise StageSkip("already mapped (--force maps it again)", block=old)
        return _MapJob(scene, prov, same, out, cache)

    def compute(self, ctx: StageContext, device: torch.device, prepared: Any) -> dict[str, Any]:
        """Map the scene window by window with the run's network, score it, and (rf) the baseline's too."""
        from archbench.data.scene import SceneReader
        from archbench.stages.map.predict import net_classifier, predict_windows, run_tags, write_map
        from archbench.stages.map.score import score_map, subset_masks
        from archbench.store.record import now_iso

        job: _MapJob = prepared
        rec, spec, scene = ctx.record, ctx.settings.spec, job.scene
        info = (rec.data or {})["info"]  # prepare skipped a run without data
        classify = net_classifier(ctx.run_dir, rec, device)
        map_path = job.out / f"{rec.run_id}.tif"
        patch, fill = int(info["patch_size"]), np.asarray(info["fill_values"], np.float32)
        with SceneReader(scene) as reader:
            t0 = time.perf_counter()
            windows = predict_windows(reader, classify, patch, fill, spec.window, spec.batch_size)
            tags = run_tags(rec, scene.name)
            n = write_map(map_path, scene.grid, windows, scene.class_values, scene.colors, tags)
            seconds = time.perf_counter() - t0
            scores = score_map(reader, map_path, subset_masks(info, job.same))
        block = _map_block(rec, job, map_path, scores)
        block["prediction"] = _prediction(n, seconds, spec, patch, device)
        block["created_at"] = now_iso()
        if spec.rf:
            forests = ctx.shared.setdefault("forests", {}).setdefault(str(job.out), {})
            forest = _forest_for(rec, scene, job.same, ctx.settings, job.out, job.cache, forests)
            block["baselines"] = {
                "random_forest": {k: forest[k] for k in ("name", "map_path", "scores", "n_estimators")}
            }
        return block

    def summarise(self, sweep_dir: Path, settings: Any, shared: dict[str, Any]) -> StageIndex | None:
        """Figures, map_scores.csv and index.json of every scene mapped into the sweep's map folder."""
        from archbench.stages.map.summary import collect_entries, write_sweep_outputs

        out = settings.out_dir(sweep_dir)
        siblings = run_folders(sweep_dir) if (sweep_dir / RUNS_DIR).is_dir() else [sweep_dir]
        index = None
        for scene in shared.get("scenes", {}).get(str(out), {}).values():
            entries = collect_entries([p for p in siblings if p.is_dir()], scene, out)
            if entries:
                index = StageIndex.model_validate(write_sweep_outputs(scene, entries, out))
        return index


def _map_block(rec: Any, job: _MapJob, map_path: Path, scores: dict[str, Any]) -> dict[str, Any]:
    """A run's `map` block, before its prediction facts: what was mapped, from what, and its scores."""
    from archbench.stages.map.score import SUBSET_DEFINITIONS

    info, scene = rec.data["info"], job.scene
    return {
        "scene": {
            "name": scene.name,
            "scene_file": str(scene.path),
            "scene_sha256": job.prov["scene_sha256"],
            "same_as_training": job.same,
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
    }


def _prediction(n: int, seconds: float, spec: MapSpec, patch: int, device: torch.device) -> dict[str, Any]:
    import torch

    return {
        "pixels_mapped": n,
        "seconds": seconds,
        "pixels_per_s": n / max(seconds, 1e-9),
        "window": spec.window,
        "patch_size": patch,
        "halo": patch // 2,
        "batch_size": spec.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),  # inside the stage base's thread scope
    }


STAGE = MapStage()


def map_target(target: Path, settings: MapSettings, report: Any = print) -> MapSummary:
    """`archbench map`: every completed run under `target` through the stage driver (claimed).

    Raises ArchbenchError, before anything is written, when no run under `target` can be mapped."""
    from archbench.stages import run_stage

    run_dirs = find_run_dirs(target)
    check_something_to_map(target, run_dirs)
    shared: dict[str, Any] = {}
    cache = shared.setdefault("scene_cache", _SceneCache())
    if settings.scene is not None:
        cache.get(settings.scene, settings.spec.root)  # a bad scene file fails before any run is touched
    result = run_stage("map", run_dirs, settings, report=report, shared=shared)
    summary = MapSummary(outcomes=result.outcomes)
    if settings.spec.rf:
        summary.baselines = _baselines(result.outcomes)
    outs = {settings.out_dir(sweep_of(rd) or rd) for rd in run_dirs}
    summary.out_dirs = sorted(d for d in outs if d.is_dir())
    return summary


def _baselines(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The Random-Forest baselines in the runs' blocks, once each: fitted now or kept from an earlier call
    (a run already mapped with its baseline is skipped, and its block still names the baseline)."""
    seen: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        forest = ((o.block or {}).get("baselines") or {}).get("random_forest")
        if isinstance(forest, dict) and forest.get("name") not in seen:
            seen[forest["name"]] = forest
    return list(seen.values())
