"""Sweep file → run specs: owns loading, overrides, validation messages, grid expansion and run ids.

Pure: reads the YAML and returns plans; it creates no directory and imports no torch.
"""

from __future__ import annotations

import copy
import itertools
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from archbench.config import RunSpec, SweepConfig, canonical_json, kept_checkpoint_problem, spec_hash
from archbench.util.errors import ConfigError
from archbench.util.paths import slugify
from archbench.util.yamlio import KeyPath, load_yaml_file, load_yaml_text, located_messages, parse_value
from archbench.util.yamlio import fmt_loc as _fmt_loc
from archbench.util.yamlio import line_for as _line_for


@dataclass(frozen=True)
class PlannedRun:
    """One expanded configuration with its stable id and the grid values that distinguish it."""

    run_id: str
    spec: RunSpec
    axes: dict[str, Any]
    tune: dict[str, Any] | None = None  # tuning tags (role trial|final, study, trial) -> record.tune

    @property
    def is_trial(self) -> bool:
        """A tuning trial: trained and scored on the validation split only, never evaluated on test."""
        return (self.tune or {}).get("role") == "trial"

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)


def run_id_for(spec: RunSpec, axes: dict[str, Any]) -> str:
    """Readable slug of the grid values (or the model name) plus a short hash of the resolved spec."""
    parts = [str(v) for v in axes.values()] or [spec.model.name]
    slug = slugify("_".join(p.replace("timm:", "") for p in parts), max_len=40)
    return f"{slug}-{spec_hash(spec)[:10]}"


def _validation_error(
    path: str, exc: ValidationError, lines: dict[KeyPath, int], prefix: KeyPath = ()
) -> ConfigError:
    msgs = located_messages(path, exc.errors(), lines, prefix)
    return ConfigError("invalid sweep file:\n  " + "\n  ".join(msgs))


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_FLOAT32_MAX = 3.4028234663852886e38


def _bad_number(value: Any) -> str | None:
    """Why a number cannot be used (non-finite, or too large for the 64-bit/float32 code paths)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "is not a finite number; give a real value"
        if abs(value) > _FLOAT32_MAX:
            return "overflows float32 (becomes inf in training); give a smaller value"
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        return "does not fit a signed 64-bit integer; give a smaller value"
    return None


def _check_numbers(value: Any, key: KeyPath, where: Callable[[KeyPath], str]) -> None:
    """Refuse inf/nan and overflowing numbers anywhere in the config (also inside free-form options)."""
    stack: list[tuple[KeyPath, Any]] = [(key, value)]
    while stack:
        k, v = stack.pop()
        if isinstance(v, dict):
            stack.extend(((*k, str(kk)), vv) for kk, vv in v.items())
        elif isinstance(v, list):
            stack.extend(((*k, i), vv) for i, vv in enumerate(v))
        else:
            why = _bad_number(v)
            if why:
                raise ConfigError(f"{where(k)}: {_fmt_loc(k)} = {v!r} {why}")


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"key '{dotted}': '{p}' is not a section")
        cur = nxt
    cur[parts[-1]] = value


def _section_model(ann: Any) -> type[BaseModel] | None:
    """The model class of a field annotated `Model` or `Model | None` (a section), else None."""
    for candidate in (ann, *typing.get_args(ann)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _valid_path(model: type[BaseModel], parts: list[str]) -> bool:
    """Is `parts` a field path of `model` (a free-form dict such as data.options may take any subkey)?"""
    for i, p in enumerate(parts):
        field = model.model_fields.get(p)
        if field is None:
            return False
        section = _section_model(field.annotation)
        if section is not None and i < len(parts) - 1:
            model = section
            continue
        return i == len(parts) - 1 or (getattr(field.annotation, "__origin__", None) is dict)
    return False


def _valid_dotted_key(key: str) -> bool:
    """Is `key` a field path of RunSpec (what a grid axis may vary)?"""
    return _valid_path(RunSpec, key.split("."))


def _valid_override_key(key: str) -> bool:
    """What `--set` may change: a RunSpec field, or a field of a sweep-level section (profile.iters...)."""
    parts = key.split(".")
    if _valid_dotted_key(key):
        return True
    return len(parts) > 1 and parts[0] not in ("grid", "exclude") and _valid_path(SweepConfig, parts)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set key=value`; a key that is a grid axis replaces that axis with the single value."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=1")
        key, _, text = item.partition("=")
        key = key.strip()
        value = parse_value(text)
        where = f"--set {item!r}"
        _check_numbers(value, tuple(key.split(".")), lambda _k: where)  # noqa: B023
        if key.startswith("grid."):
            if not isinstance(value, list):
                value = [value]
            raw.setdefault("grid", {})[key[5:]] = value
            continue
        if key not in ("name", "output_dir", "max_runs") and not _valid_override_key(key):
            raise ConfigError(f"--set {item!r}: unknown key '{key}'")
        grid = raw.get("grid")
        if isinstance(grid, dict) and key in grid:
            del grid[key]
        _set_dotted(raw, key, value)
    return raw


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read, override and validate a sweep file; every error names the file, line and key path."""
    data, lines = load_yaml_file(path)
    return _validate(data, lines, str(path), overrides or [])


def load_sweep_text(text: str, overrides: list[str] | None = None, path: str = "<string>") -> SweepConfig:
    data, lines = load_yaml_text(text, path)
    return _validate(data, lines, path, overrides or [])


def _validate(data: Any, lines: dict[KeyPath, int], path: str, overrides: list[str]) -> SweepConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping with keys name, data, model, train, grid; found {data!r}"
        )
    data = apply_overrides(data, overrides)

    def where(key: KeyPath) -> str:
        line = _line_for(lines, key)
        return f"{path}:{line}" if line else path

    _check_numbers(data, (), where)
    try:
        cfg = SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(path, exc, lines) from None
    _check_numbers(_base_dict(cfg), (), where)  # again after coercion: '1e308' is a string in YAML 1.1
    _check_kept_checkpoint(cfg, where)
    # Refuse a huge grid from its axis lengths, before any combination is built.
    n_runs = math.prod(len(v) for v in cfg.grid.values())
    if n_runs > cfg.max_runs:
        sizes = " x ".join(str(len(v)) for v in cfg.grid.values())
        raise ConfigError(
            f"{where(('grid',))}: the grid expands to {n_runs:,} runs ({sizes}), more than max_runs "
            f"{cfg.max_runs:,}; shrink the grid or raise max_runs: in the sweep file"
        )
    for key in cfg.grid:
        if not _valid_dotted_key(key):
            raise ConfigError(
                f"{path}:{_line_for(lines, ('grid', key)) or '?'}: grid key '{key}' is not a setting "
                "(use dotted keys such as model.name, train.lr, data.resolution, seed)"
            )
    for i, ex in enumerate(cfg.exclude):
        for key in ex:
            if key not in cfg.grid:
                raise ConfigError(
                    f"{path}:{_line_for(lines, ('exclude', i)) or '?'}: exclude[{i}] key '{key}' "
                    f"is not a grid axis (axes: {', '.join(cfg.grid) or 'none'})"
                )
    # Validate every grid value in context, so an error points at grid.KEY[index].
    raw_base = _base_dict(cfg)
    for key, values in cfg.grid.items():
        for j, v in enumerate(values):
            trial = copy.deepcopy(raw_base)
            _set_dotted(trial, key, v)
            try:
                resolved: Any = RunSpec.model_validate(trial).model_dump()
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ConfigError(
                    f"{path}:{_line_for(lines, ('grid', key, j)) or '?'}: grid.{key}[{j}]: "
                    f"{err['msg']}; found {v!r}"
                ) from None
            for part in key.split("."):
                resolved = resolved.get(part) if isinstance(resolved, dict) else None
            _check_numbers(resolved, ("grid", key, j), where)
    if cfg.tune is not None:
        _check_tune(cfg, lines, path)
    return cfg


def _check_kept_checkpoint(cfg: SweepConfig, where: Callable[[KeyPath], str]) -> None:
    """`train.keep_checkpoints` must keep the evaluated checkpoint (checked per grid combination instead
    when the grid varies either key: `expand_sweep`)."""
    why = kept_checkpoint_problem(cfg.train, cfg.eval)
    if why is not None and not {"train.keep_checkpoints", "eval.checkpoint"} & set(cfg.grid):
        raise ConfigError(f"{where(('train', 'keep_checkpoints'))}: {why}")


def compared_axes(cfg: SweepConfig) -> list[str]:
    """The grid axes whose cells are compared under `tune:` (default: the model.* axes, else all)."""
    if cfg.tune is not None and cfg.tune.compare is not None:
        return list(cfg.tune.compare)
    return [k for k in cfg.grid if k.startswith("model.")] or list(cfg.grid)


def _check_tune(cfg: SweepConfig, lines: dict[KeyPath, int], path: str) -> None:
    """`tune:` keys must be settings, may not overlap the compared axes, and every bound must be valid."""
    assert cfg.tune is not None
    tune = cfg.tune

    def where(*loc: Any) -> str:
        return f"{path}:{_line_for(lines, ('tune', *loc)) or '?'}"

    compare = compared_axes(cfg)
    for i, key in enumerate(tune.compare or []):
        if key not in cfg.grid:
            raise ConfigError(
                f"{where('compare', i)}: tune.compare[{i}] '{key}' is not a grid axis "
                f"(axes: {', '.join(cfg.grid) or 'none'}); add it to grid: with the values to compare"
            )
    for key in cfg.grid:
        if key == "seed":
            raise ConfigError(
                f"{path}:{_line_for(lines, ('grid', key)) or '?'}: grid axis 'seed' with tune: — the final "
                "runs' seeds come from tune.seeds; remove seed from grid"
            )
        if key not in compare:
            raise ConfigError(
                f"{path}:{_line_for(lines, ('grid', key)) or '?'}: grid axis '{key}' is not compared; with "
                f"tune: move it to tune.space (e.g. type: categorical) or list it in tune.compare"
            )
    raw_base = _base_dict(cfg)
    for key, param in tune.space.items():
        if key == "seed" or not _valid_dotted_key(key):
            raise ConfigError(
                f"{where('space', key)}: tune.space key '{key}' is not a tunable setting "
                "(use dotted keys such as train.lr, train.weight_decay, train.optimizer)"
            )
        if key in cfg.grid:
            raise ConfigError(
                f"{where('space', key)}: tune.space key '{key}' is also a grid axis; a key is either "
                "compared (grid) or tuned (space), not both"
            )
        if param.type == "categorical":
            values: list[Any] = list(param.choices or [])
        elif param.type == "int":
            values = [int(param.low or 0), int(param.high or 0)]
        else:
            values = [param.low, param.high]
        for v in values:
            trial = copy.deepcopy(raw_base)
            _set_dotted(trial, key, v)
            try:
                RunSpec.model_validate(trial)
            except ValidationError as exc:
                raise ConfigError(
                    f"{where('space', key)}: tune.space.{key}: {exc.errors()[0]['msg']}; found {v!r}"
                ) from None
    for i, seed in enumerate(tune.seeds):
        try:
            RunSpec.model_validate({**raw_base, "seed": seed})
        except ValidationError as exc:
            raise ConfigError(
                f"{where('seeds', i)}: tune.seeds[{i}]: {exc.errors()[0]['msg']}; found {seed!r}"
            ) from None


def _base_dict(cfg: SweepConfig) -> dict[str, Any]:
    return cfg.model_dump(include={"data", "model", "train", "eval", "seed"})


def expand_sweep(cfg: SweepConfig) -> list[PlannedRun]:
    """The cartesian product of the grid, minus excluded combinations, as fully resolved run specs."""
    raw_base = _base_dict(cfg)
    keys = list(cfg.grid)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for combo in itertools.product(*(cfg.grid[k] for k in keys)):
        axes = dict(zip(keys, combo, strict=True))
        if any(all(axes.get(k) == v for k, v in ex.items()) for ex in cfg.exclude):
            continue
        d = copy.deepcopy(raw_base)
        for k, v in axes.items():
            _set_dotted(d, k, v)
        try:
            spec = RunSpec.model_validate(d)
        except ValidationError as exc:
            raise ConfigError(f"grid combination {axes}: {exc.errors()[0]['msg']}") from None
        why = kept_checkpoint_problem(spec.train, spec.eval)
        if why is not None:
            raise ConfigError(f"grid combination {axes}: {why}; exclude it")
        planned = PlannedRun(run_id=run_id_for(spec, axes), spec=spec, axes=axes)
        if planned.spec_hash in seen:
            continue  # identical resolved specs are one run (even when their grid values read differently)
        seen.add(planned.spec_hash)
        runs.append(planned)
    return runs


def validate_names(runs: list[PlannedRun]) -> None:
    """Fail the whole sweep before anything starts if a model or dataset name is unknown."""
    from archbench.data.registry import dataset_kinds
    from archbench.models import check_model_spec

    kinds = set(dataset_kinds())
    seen: set[str] = set()
    for r in runs:
        key = canonical_json(r.spec.model.model_dump(mode="json"))
        if key not in seen:
            seen.add(key)
            check_model_spec(r.spec.model)
    from archbench.data.registry import preflight_spec

    checked: set[str] = set()
    for r in runs:
        key = canonical_json(r.spec.data.model_dump(mode="json"))
        if key not in checked and r.spec.data.kind in kinds:
            checked.add(key)
            preflight_spec(r.spec.data)
    for kind in sorted({r.spec.data.kind for r in runs}):
        if kind not in kinds:
            import difflib

            near = difflib.get_close_matches(kind, sorted(kinds), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(
                f"data.kind: unknown dataset kind '{kind}'{hint} (known: {', '.join(sorted(kinds))})"
            )


def sweep_dir(cfg: SweepConfig) -> Path:
    return Path(cfg.output_dir) / slugify(cfg.name, max_len=64)


__all__ = [
    "PlannedRun",
    "apply_overrides",
    "canonical_json",
    "compared_axes",
    "expand_sweep",
    "load_sweep",
    "load_sweep_text",
    "run_id_for",
    "spec_hash",
    "sweep_dir",
    "validate_names",
]
