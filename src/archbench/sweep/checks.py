"""Planning checks: owns finding every problem a sweep has before anything is created or trained.

Model names and options, data kinds, their options and the files each kind needs (asked of the dataset
registry, which asks each family), scene files and their rasters' headers, local weights files, the kind of
thing every path key points at (pathkinds.py), whether the output folder can be written (and is no
symlink out of output_dir), how many processes one run may start here, and where the executor and the
tracker point (endpoints.py: a Ray address reached within its timeout, a tracking URI MLflow accepts). It
reads, never writes: a sweep with problems exits 2 with one line per problem and nothing on disk changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from archbench.config import DataSpec, SweepConfig
from archbench.sweep.endpoints import ray_address_problems, tracking_uri_problems
from archbench.sweep.expand import PlannedRun, canonical_json, expand_sweep, load_sweep, sweep_dir
from archbench.sweep.pathkinds import data_path_problems, kind_problem, sweep_path_problems
from archbench.util.errors import ConfigError
from archbench.util.machine import usable_cores


class PlanningError(ConfigError):
    """One or more problems found while planning; `problems` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def model_problems(runs: list[PlannedRun]) -> list[str]:
    from archbench.data.registry import error_lines
    from archbench.models import check_model_spec

    problems: list[str] = []
    seen: set[str] = set()
    for r in runs:
        key = canonical_json(r.spec.model.model_dump(mode="json"))
        if key in seen:
            continue
        seen.add(key)
        try:
            check_model_spec(r.spec.model)
        except ConfigError as exc:
            problems.extend(error_lines(exc))
            continue
        pretrained = r.spec.model.pretrained
        if pretrained == "imagenet":
            from archbench.models.weights import imagenet_weights_file
            from archbench.util.errors import MissingWeightsError

            try:
                imagenet_weights_file(r.spec.model.name)
            except (MissingWeightsError, ConfigError) as exc:
                problems.extend(error_lines(exc))
        elif pretrained is not None:
            path = Path(pretrained).expanduser()
            wrong_kind = kind_problem("model.pretrained", path, "file", "a weights file")
            if wrong_kind:
                problems.append(wrong_kind)
            elif not path.is_file():
                problems.append(
                    f"model.pretrained: weights file {path} does not exist or is not a file; give an "
                    "existing local file (.pt/.pth/.bin/.safetensors), 'imagenet', or null for random init"
                )
            elif not os.access(path, os.R_OK):
                problems.append(
                    f"model.pretrained: weights file {path} is not readable (check its permissions)"
                )
    return problems


def band_map_problems(runs: list[PlannedRun]) -> list[str]:
    """`model.band_map` naming a band the dataset lacks (asked of the family's `band_names(spec)` hook, which
    reads the scene file or chip headers, no pixels), or a dataset kind that names no bands: one line each."""
    from archbench.data.registry import error_lines, family_module
    from archbench.models.bands import rgb_assignment
    from archbench.util.errors import DatasetError

    problems: list[str] = []
    for r in runs:
        band_map, data = r.spec.model.band_map, r.spec.data
        if not band_map:
            continue
        try:
            names_of = getattr(family_module(data.kind), "band_names", None)
            names = names_of(data) if names_of is not None else None
        except (ConfigError, DatasetError):
            continue  # data_problems names what is wrong with the data
        if names_of is None:
            problems.append(
                f"model.band_map: data.kind={data.kind} does not name its bands; band_map needs "
                "raster_patches (a scene file) or raster_folder"
            )
            continue
        try:
            rgb_assignment(names, band_map)
        except ConfigError as exc:
            problems.extend(error_lines(exc))
    return problems


def layer_decay_problems(runs: list[PlannedRun]) -> list[str]:
    """`train.layer_decay` on a model without layer groups (anything but timm models): one line each."""
    from archbench.models import check_model_name, layer_decay_problem

    problems: list[str] = []
    for name in dict.fromkeys(r.spec.model.name for r in runs if r.spec.train.layer_decay is not None):
        try:
            check_model_name(name)
        except ConfigError:
            continue  # model_problems names it
        problem = layer_decay_problem(name)
        if problem:
            problems.append(problem)
    return problems


def data_problems(runs: list[PlannedRun]) -> list[str]:
    from archbench.data.identity import decode_identity
    from archbench.data.registry import data_problems as check

    problems: list[str] = []
    seen: set[str] = set()
    for r in runs:
        key = decode_identity(r.spec.data)
        if key not in seen:
            seen.add(key)
            # A path of the wrong kind or an unknown option says all there is to say about this spec.
            first = data_path_problems(r.spec.data) + option_problems(r.spec.data)
            problems.extend(first or check(r.spec.data))
        problems.extend(augment_problems(r.spec.data))
    return problems


# Multispectral kinds: their bands are not RGB, so only ops that move pixels (or erase or mix them alike in
# every band) apply; a colour op would compute brightness/hue from three arbitrary bands.
MULTISPECTRAL_KINDS = frozenset({"raster_patches"})


def augment_problems(spec: DataSpec) -> list[str]:
    """A colour op (`trivial_augment`, `randaugment`) asked of a multispectral dataset: one line."""
    colour = spec.augment.colour_ops
    if spec.kind not in MULTISPECTRAL_KINDS or not colour:
        return []
    return [
        f"data.augment.{colour[0]}: colour ops need RGB images; data.kind={spec.kind} is multispectral "
        "(use crop_padding, hflip, vflip, rot90, random_resized_crop, random_erasing, mixup or cutmix)"
    ]


def option_problems(spec: DataSpec) -> list[str]:
    """`data.options` keys the kind does not know (each family module declares `OPTIONS[kind]`): an
    ignored key would still change the run id, so it is refused, listing the known ones."""
    from archbench.data.registry import family_module

    try:
        known: frozenset[str] | None = getattr(family_module(spec.kind), "OPTIONS", {}).get(spec.kind)
    except ConfigError:
        return []  # an unknown kind: the registry's check names it
    unknown = sorted(set(spec.options) - known) if known is not None else []
    if not unknown or known is None:  # a family that declares no OPTIONS checks its own when loading
        return []
    return [
        f"data.options: unknown option(s) {', '.join(unknown)} for data.kind={spec.kind} "
        f"(known: {', '.join(sorted(known)) or 'none'})"
    ]


def output_problems(folder: Path) -> list[str]:
    """Can the sweep folder be created (or, if it exists, written)? Checked on the nearest existing folder."""
    target = Path(folder)
    existing = target
    while not existing.exists() and not existing.is_symlink():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return [
            f"output_dir: {existing} exists but is not a folder, so {target} cannot be created; "
            "set output_dir to a folder (e.g. --set output_dir=results)"
        ]
    if target.is_symlink():
        from archbench.util.paths import safe_join

        try:
            safe_join(target.parent, target.name)
        except ValueError:
            return [
                f"output_dir: the sweep folder {target} is a symlink to {os.path.realpath(target)}, outside "
                f"{target.parent}; archbench writes only inside output_dir: remove the link or choose "
                "another output_dir"
            ]
    probe = existing
    if not os.access(probe, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "EROFS: read-only file system" if read_only else "EACCES: permission denied"
        return [
            f"output_dir: {probe} is not writable ({why}), so {target} cannot be "
            f"{'written' if probe == target else 'created'}; choose another output_dir or make it writable"
        ]
    for sub in ("runs",):
        p = target / sub
        if p.exists() and (not p.is_dir() or not os.access(p, os.W_OK | os.X_OK)):
            return [
                f"output_dir: {p} is not a writable folder; fix its permissions or choose another output_dir"
            ]
    return []


def executor_problems(cfg: SweepConfig, runs: list[PlannedRun]) -> list[str]:
    """Where the runs go: a Ray address that answers, and data-parallel runs that fit this machine — one
    GPU per process on CUDA, at most one process per usable core on CPU (unless `oversubscribe`). A Ray
    cluster's nodes are not this machine: there the run itself fails with `distributed_config`."""
    ex = cfg.executor
    if ex.kind == "ray" and ex.address is not None:
        return ray_address_problems(ex.address, ex.connect_timeout_s)
    world = ex.resources.world_size
    if world == 1:
        return []
    on_cpu = [r for r in runs if r.spec.train.device == "cpu"]
    gpus = 0
    if len(on_cpu) < len(runs):
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cores = usable_cores()
    if (on_cpu or gpus == 0) and world > cores and not ex.resources.oversubscribe:
        return [
            f"executor.resources.processes: {world} processes for one run, but this machine has {cores} "
            f"usable core(s); set processes to at most {cores}, or executor.resources.oversubscribe: true "
            "to start them anyway"
        ]
    if ex.kind != "local" or gpus == 0 or world <= gpus or len(on_cpu) == len(runs):
        return []  # no CUDA: the processes train on CPU (gloo); device: cuda fails as no_cuda per run
    return [
        f"executor.resources: {world} processes need {world} GPUs (one each) but this machine has {gpus}; "
        f"set executor.resources.processes to at most {gpus}, or train.device: cpu for CPU processes"
    ]


def tracking_problems(cfg: SweepConfig) -> list[str]:
    if cfg.tracking is None or cfg.tracking.mlflow is None:
        return []
    return tracking_uri_problems(cfg.tracking.mlflow.uri, output_dir=Path(cfg.output_dir))


def plan_problems(cfg: SweepConfig, runs: list[PlannedRun]) -> list[str]:
    """Every problem that can be found before anything is created, one line each (empty: good to go)."""
    problems = (
        model_problems(runs) + layer_decay_problems(runs) + data_problems(runs) + band_map_problems(runs)
    )
    problems += output_problems(sweep_dir(cfg))
    problems += sweep_path_problems(cfg) + tracking_problems(cfg) + executor_problems(cfg, runs)
    return list(dict.fromkeys(problems))  # de-duplicated, in order


def check_plan(cfg: SweepConfig, runs: list[PlannedRun]) -> None:
    problems = plan_problems(cfg, runs)
    if problems:
        raise PlanningError(problems)


def check_extras(cfg: SweepConfig) -> None:
    """Ray and MLflow are optional: raise a ConfigError saying how to get them before anything is created."""
    import importlib.util

    wanted = []
    if cfg.executor.kind == "ray":
        wanted.append(("ray", "executor.kind: ray"))
    if cfg.tracking is not None and cfg.tracking.mlflow is not None:
        wanted.append(("mlflow", "tracking.mlflow"))
    for module, what in wanted:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"{what} needs {module}: pip install 'archbench[cluster]'")


@dataclass(frozen=True)
class CheckedSweep:
    """A sweep file loaded, adjusted, expanded and checked: what `archbench run` and `archbench.run` start
    from. `problems` holds the planning problems a dry run tolerates (always empty for a real run)."""

    cfg: SweepConfig
    runs: list[PlannedRun]
    source_text: str
    problems: list[str] = field(default_factory=list)


def check_sweep(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    adjust: Callable[[SweepConfig], SweepConfig] | None = None,
    dry_run: bool = False,
) -> CheckedSweep:
    """The planning sequence the CLI and the Python API share: load the file with its overrides, apply
    `adjust` (e.g. --executor) so the checks see what will actually run, expand the grid, check the plan.

    Raises ConfigError (bad file or override, a grid that leaves no run), DatasetError, or PlanningError
    (one line per problem); a dry run returns the planning problems in `problems` instead of raising.
    Reads only: nothing is created.
    """
    cfg = load_sweep(path, overrides or [])
    if adjust is not None:
        cfg = adjust(cfg)
    runs = expand_sweep(cfg)
    if not runs:
        raise ConfigError(f"{path}: the grid and exclude list leave no run")
    try:
        check_plan(cfg, runs)
    except PlanningError as exc:
        if not dry_run:
            raise
        problems = exc.problems
    else:
        problems = []
    return CheckedSweep(cfg, runs, Path(path).read_text(encoding="utf-8"), problems)


def with_executor(
    cfg: SweepConfig, kind: str | None, address: str | None = None, flag: str = "--executor"
) -> SweepConfig:
    """`cfg` with its `executor:` section overridden (--executor/--address, or the API's `executor=`);
    an address alone means Ray. `flag` names the option in the error."""
    if kind is None and address is None:
        return cfg
    ex = cfg.executor
    if kind is not None:
        if kind not in ("local", "ray"):
            raise ConfigError(f"{flag} {kind!r}: expected local or ray")
        ex = ex.model_copy(update={"kind": kind})
    if address is not None:
        ex = ex.model_copy(update={"address": address, "kind": "ray" if kind is None else ex.kind})
    return cfg.model_copy(update={"executor": ex})
