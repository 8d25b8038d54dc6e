"""Sweep file → run specs: owns loading, overrides, validation messages, grid expansion and run ids.

Pure: reads the YAML and returns plans; it creates no directory and imports no torch.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from archbench.config import RunSpec, SweepConfig, canonical_json, kept_checkpoint_problem, spec_hash
from archbench.config.recipe import apply_recipe, recipe_names
from archbench.sweep import paths
from archbench.sweep.paths import describe as describe_paths
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


@dataclass
class _Source:
    """Where each key of a sweep came from, for error messages: a line of the file, or the `--set`
    argument that gave it (a bad `--set` names the argument, never a line of the file that it replaced)."""

    path: str
    lines: dict[KeyPath, int]
    sets: dict[str, str]  # dotted key (grid.KEY for an axis) -> the --set argument, as typed

    def set_for(self, loc: KeyPath) -> str | None:
        """The `--set` argument that gave `loc` (or a key under it), else None."""
        parts = ".".join(str(p) for p in loc).split(".")
        for key, item in reversed(self.sets.items()):
            given = key.split(".")
            n = min(len(given), len(parts))
            if given[:n] == parts[:n]:
                return item
        return None

    def at(self, loc: KeyPath, unknown_line: str = "") -> str:
        """`--set ARG`, or `file:line` (`file:?`/`file` when the file has no such key)."""
        item = self.set_for(loc) if loc else None
        if item is not None:
            return f"--set {item}"
        line = _line_for(self.lines, loc)
        return f"{self.path}:{line or unknown_line}" if line or unknown_line else self.path


# What a --set value should have been, for the pydantic error types a typed value most often hits.
_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
}


def _set_message(item: str, err: Any) -> str:
    """A validation error of a `--set` value, naming the argument: `--set train.epochs=two: expected an
    integer`; a list given to a key that takes one value says to make it a grid axis."""
    key, _, text = item.partition("=")
    key, loc = key.strip(), _fmt_loc(tuple(err["loc"]))
    if isinstance(err.get("input"), list) and loc == key and _valid_dotted_key(key):
        return (
            f"--set {item}: {key} takes one value; to run each of them, use --set grid.{key}={text.strip()}"
        )
    what = _EXPECTED.get(err["type"]) or err["msg"]
    if loc != key:
        return f"--set {item}: {loc}: {what}; found {err.get('input')!r}"
    return f"--set {item}: {what}"


def _validation_error(src: _Source, exc: ValidationError) -> ConfigError:
    msgs = []
    for err in exc.errors():
        item = src.set_for(tuple(err["loc"]))
        msgs.append(_set_message(item, err) if item else located_messages(src.path, [err], src.lines)[0])
    if all(m.startswith("--set ") for m in msgs):
        return ConfigError("\n".join(msgs))
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
    """Is `key` a field path of RunSpec (what a grid axis may vary)? `written_paths` is bookkeeping."""
    return not key.startswith("written_paths") and _valid_path(RunSpec, key.split("."))


def _valid_override_key(key: str) -> bool:
    """What `--set` may change: a RunSpec field, or a field of a sweep-level section (profile.iters...)."""
    parts = key.split(".")
    if _valid_dotted_key(key):
        return True
    return len(parts) > 1 and parts[0] not in ("grid", "exclude") and _valid_path(SweepConfig, parts)


def apply_overrides(
    raw: dict[str, Any],
    overrides: list[str],
    written: paths.Written | None = None,
    sets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Apply `--set key=value`; a key that is a grid axis replaces that axis with the single value.
    A relative path value resolves against the working directory (noted in `written`); `sets` collects
    which argument gave each key."""
    raw = copy.deepcopy(raw)
    written = {} if written is None else written
    cwd = os.getcwd()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=1")
        key, _, text = item.partition("=")
        key = key.strip()
        value = parse_value(text)
        where = f"--set {item!r}"
        _check_numbers(value, tuple(key.split(".")), lambda _k: where)  # noqa: B023
        if sets is not None:
            sets[key] = item
        axis = key[5:] if key.startswith("grid.") else None
        paths.forget(written, axis or key)
        if axis is not None:
            at = tuple(axis.split("."))
            values = value if isinstance(value, list) else [value]
            raw.setdefault("grid", {})[axis] = [paths.resolve_tree(v, at, cwd, written) for v in values]
            continue
        if key not in ("name", "output_dir", "max_runs") and not _valid_override_key(key):
            raise ConfigError(f"--set {item!r}: unknown key '{key}'")
        grid = raw.get("grid")
        if isinstance(grid, dict) and key in grid:
            del grid[key]
        _set_dotted(raw, key, paths.resolve_tree(value, tuple(key.split(".")), cwd, written))
    return raw


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read, override and validate a sweep file; every error names the file, line and key path (or the
    `--set` argument). Relative paths in the file resolve against its folder (sweep/paths.py)."""
    data, lines = load_yaml_file(path)
    return _validate(data, lines, str(path), overrides or [], os.path.dirname(os.path.abspath(path)))


def load_sweep_text(text: str, overrides: list[str] | None = None, path: str = "<string>") -> SweepConfig:
    """A sweep given as text: its relative paths resolve against the working directory."""
    data, lines = load_yaml_text(text, path)
    return _validate(data, lines, path, overrides or [], os.getcwd())


def _validate(
    data: Any, lines: dict[KeyPath, int], path: str, overrides: list[str], base: str
) -> SweepConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping with keys name, data, model, train, grid; found {data!r}"
        )
    written: paths.Written = {}
    paths.resolve_sweep(data, base, written)  # `data` is freshly parsed: resolved in place
    src = _Source(path, lines, {})
    data = apply_overrides(data, overrides, written, src.sets)
    where = src.at
    _check_numbers(data, (), where)
    try:
        cfg = SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(src, exc) from None
    cfg._written_paths = written
    _check_numbers(_base_dict(cfg), (), where)  # again after coercion: '1e308' is a string in YAML 1.1
    _check_kept_checkpoint(cfg, where)
    # Refuse a huge grid from its axis lengths, before any combination is built.
    n_runs = math.prod(len(v) for v in cfg.grid.values())
    if n_runs > cfg.max_runs:
        sizes = " x ".join(str(len(v)) for v in cfg.grid.values())
        raise ConfigError(
            f"{src.at(('grid',))}: the grid expands to {n_runs:,} runs ({sizes}), more than max_runs "
            f"{cfg.max_runs:,}; shrink the grid or raise max_runs: in the sweep file"
        )
    for key in cfg.grid:
        if not _valid_dotted_key(key):
            raise ConfigError(
                f"{src.at(('grid', key), '?')}: grid key '{key}' is not a setting "
                "(use dotted keys such as model.name, train.lr, data.resolution, seed)"
            )
    for i, ex in enumerate(cfg.exclude):
        for key in ex:
            if key not in cfg.grid:
                raise ConfigError(
                    f"{src.at(('exclude', i), '?')}: exclude[{i}] key '{key}' "
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
                    f"{src.at(('grid', key, j), '?')}: grid.{key}[{j}]: {err['msg']}; found {v!r}"
                ) from None
            for part in key.split("."):
                resolved = resolved.get(part) if isinstance(resolved, dict) else None
            _check_numbers(resolved, ("grid", key, j), where)
    if cfg.tune is not None:
        _check_tune(cfg, src)
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


def _check_tune(cfg: SweepConfig, src: _Source) -> None:
    """`tune:` keys must be settings, may not overlap the compared axes, and every bound must be valid."""
    assert cfg.tune is not None
    tune = cfg.tune

    def where(*loc: Any) -> str:
        return src.at(("tune", *loc), "?")

    # The grid's numeric rules, after coercion ('1.0e308' is a string in YAML 1.1): finite, no overflow.
    _check_numbers(tune.model_dump(include={"space"}), ("tune",), lambda k: where(*k[1:]))
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
                f"{src.at(('grid', key), '?')}: grid axis 'seed' with tune: — the final "
                "runs' seeds come from tune.seeds; remove seed from grid"
            )
        if key not in compare:
            raise ConfigError(
                f"{src.at(('grid', key), '?')}: grid axis '{key}' is not compared; with "
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
        _check_space_values(raw_base, key, param, where("space", key))
    for i, seed in enumerate(tune.seeds):
        try:
            RunSpec.model_validate({**raw_base, "seed": seed})
        except ValidationError as exc:
            raise ConfigError(
                f"{where('seeds', i)}: tune.seeds[{i}]: {exc.errors()[0]['msg']}; found {seed!r}"
            ) from None


def _check_space_values(raw_base: dict[str, Any], key: str, param: Any, where: str) -> None:
    """A tuned key's bounds (or choices) must each be a valid value of that setting."""
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
            raise ConfigError(f"{where}: tune.space.{key}: {exc.errors()[0]['msg']}; found {v!r}") from None


def _base_dict(cfg: SweepConfig) -> dict[str, Any]:
    return cfg.model_dump(include={"data", "model", "train", "eval", "seed", "recipe"})


def expand_sweep(cfg: SweepConfig) -> list[PlannedRun]:
    """The cartesian product of the grid, minus excluded combinations, as fully resolved run specs."""
    raw_base = _base_dict(cfg)
    keys = list(cfg.grid)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    written = cfg._written_paths
    run_paths = any(k.startswith(("data.", "model.")) for k in written)
    path_axes = [k for k in keys if any(p == k or p.startswith(k + ".") for p in paths.PATH_KEYS)]
    for combo in itertools.product(*(cfg.grid[k] for k in keys)):
        resolved = dict(zip(keys, combo, strict=True))
        if any(all(resolved.get(k) == v for k, v in ex.items()) for ex in cfg.exclude):
            continue
        d = copy.deepcopy(raw_base)
        recipe = resolved.get("recipe", d.get("recipe"))
        if recipe is not None and recipe in recipe_names():  # an unknown name fails validation below
            apply_recipe(d, recipe)  # first: the grid's other axes apply on top of it
        for k, v in resolved.items():
            _set_dotted(d, k, v)
        if run_paths:
            d["written_paths"] = paths.written_paths(d, written)
        axes = dict(resolved)
        for k in path_axes:  # labels (run ids, plan, tables) show a path as written
            axes[k] = paths.as_written(copy.deepcopy(axes[k]), tuple(k.split(".")), written)
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
    "describe_paths",
    "expand_sweep",
    "load_sweep",
    "load_sweep_text",
    "run_id_for",
    "spec_hash",
    "sweep_dir",
    "validate_names",
]
