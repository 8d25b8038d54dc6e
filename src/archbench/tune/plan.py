"""Tuning plans: owns what a compared cell is and the run spec of each trial and final run. Pure.

A cell is one combination of the compared grid axes (`expand_sweep` of a tuned sweep). A trial's spec is
the cell's spec with the sampled values set; its run id is `trial-` + the usual slug and spec hash, so a
trial never shares a folder with a final run, and the same parameters always give the same id (a requeued
trial resumes its run). A final run is the cell's best trial's spec with one of `tune.seeds`.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from archbench.config import RunSpec, SweepConfig
from archbench.sweep.expand import PlannedRun, _set_dotted, run_id_for


def study_name(cell: PlannedRun) -> str:
    """A stable, readable study name per cell: the compared values (or the model) plus a short hash."""
    label = "_".join(str(v) for v in cell.axes.values()) or cell.spec.model.name
    digest = hashlib.sha256(repr(sorted(cell.axes.items())).encode()).hexdigest()[:6]
    return f"{label}-{digest}"


def cell_label(cell: PlannedRun) -> str:
    return " · ".join(str(v) for v in cell.axes.values()) or cell.spec.model.name


def spec_with(spec: RunSpec, values: dict[str, Any], seed: int | None = None) -> RunSpec:
    raw = copy.deepcopy(spec.model_dump(mode="json"))
    for key, value in values.items():
        _set_dotted(raw, key, value)
    if seed is not None:
        raw["seed"] = seed
    return RunSpec.model_validate(raw)


def trial_run(cell: PlannedRun, params: dict[str, Any], study: str, number: int) -> PlannedRun:
    spec = spec_with(cell.spec, params)
    tags = {"role": "trial", "study": study, "trial": number, "params": params, "cell": cell.axes}
    return PlannedRun(run_id="trial-" + run_id_for(spec, cell.axes), spec=spec, axes=cell.axes, tune=tags)


def final_runs(
    cfg: SweepConfig, cell: PlannedRun, params: dict[str, Any], study: str, best_trial: int
) -> list[PlannedRun]:
    assert cfg.tune is not None
    out = []
    for seed in cfg.tune.seeds:
        spec = spec_with(cell.spec, params, seed=seed)
        axes = {**cell.axes, "seed": seed}
        tags = {
            "role": "final",
            "study": study,
            "best_trial": best_trial,
            "params": params,
            "cell": cell.axes,
        }
        out.append(PlannedRun(run_id=run_id_for(spec, axes), spec=spec, axes=axes, tune=tags))
    return out


def max_trial_epochs(cfg: SweepConfig, cell: PlannedRun) -> int:
    """The most epochs one trial can train (train.epochs, or the top of its range when it is tuned)."""
    assert cfg.tune is not None
    param = cfg.tune.space.get("train.epochs")
    if param is None:
        return cell.spec.train.epochs
    if param.type == "categorical":
        return max(int(v) for v in param.choices or [] if isinstance(v, int | float))
    return int(param.high or cell.spec.train.epochs)
