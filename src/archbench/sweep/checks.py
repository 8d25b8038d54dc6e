"""Planning checks: owns finding every problem a sweep has before anything is created or trained.

Model names and options, data kinds and the files each kind needs (asked of the dataset registry, which
asks each family), scene files and their rasters' headers, local weights files, and whether the output
folder can be written. It reads, never writes: a sweep with problems exits 2 with one line per problem and
nothing on disk changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from archbench.config import SweepConfig
from archbench.sweep.expand import PlannedRun, canonical_json, expand_sweep, load_sweep, sweep_dir
from archbench.util.errors import ConfigError


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
            if not path.is_file():
                problems.append(
                    f"model.pretrained: weights file {path} does not exist or is not a file; give an "
                    "existing local file (.pt/.pth/.bin/.safetensors), 'imagenet', or null for random init"
                )
            elif not os.access(path, os.R_OK):
                problems.append(
                    f"model.pretrained: weights file {path} is not readable (check its permissions)"
                )
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
            problems.extend(check(r.spec.data))
    return problems


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
    """Data-parallel runs on this machine's GPUs: are there as many GPUs as processes? (A Ray cluster's
    nodes are not this machine: there the run itself fails with `distributed_config`.)"""
    world = cfg.executor.resources.world_size
    if world == 1 or cfg.executor.kind != "local" or all(r.spec.train.device == "cpu" for r in runs):
        return []
    import torch

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if seen == 0 or world <= seen:
        return []  # no CUDA: the processes train on CPU (gloo); device: cuda fails as no_cuda per run
    return [
        f"executor.resources: {world} processes need {world} GPUs (one each) but this machine has {seen}; "
        f"set executor.resources.processes to at most {seen}, or train.device: cpu for CPU processes"
    ]


def plan_problems(cfg: SweepConfig, runs: list[PlannedRun]) -> list[str]:
    """Every problem that can be found before anything is created, one line each (empty: good to go)."""
    problems = model_problems(runs) + data_problems(runs) + output_problems(sweep_dir(cfg))
    problems += executor_problems(cfg, runs)
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
