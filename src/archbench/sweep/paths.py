"""Input paths of a sweep: owns which keys are paths and what a relative one resolves against. Pure.

The rule: a relative path written in a sweep file resolves against the file's folder (as a scene file's
`root` resolves against the scene file), a relative path given with `--set` against the working directory.
Absolute paths and `~/…` are kept. It applies to `output_dir` too. Nothing here reads or checks a file;
the planning checks (checks.py) and the dataset families do.

A run spec holds the resolved path, so every stage, Ray worker and later command reads the same files
wherever it runs; `RunSpec.written_paths` keeps each path as written and a run's identity hashes that
form (config.py), so a sweep run from its own folder keeps the spec hashes it had when paths resolved
against the working directory, and running it from another folder does not change them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from archbench.config import SweepConfig

# Every key of the schema that names a file or folder (data.options is free-form: of its keys only the
# raster family's `scene` is a path).
PATH_KEYS = (
    "output_dir",
    "data.root",
    "data.cache_dir",
    "data.options.scene",
    "model.pretrained",
    "map.scene",
    "map.root",
    "tune.storage",
    "tracking.mlflow.uri",
)
_NOT_A_PATH = {"model.pretrained": "imagenet"}
_SQLITE = "sqlite:///"  # tracking.mlflow.uri: only a local SQLite file is a path

# dotted key -> {resolved path: path as written}
Written = dict[str, dict[str, str]]


def _is_path(key: str, value: Any) -> bool:
    """Does `value` of `key` name a file or folder (not null, `imagenet` or a server URI)?"""
    if not isinstance(value, str) or not value or _NOT_A_PATH.get(key) == value:
        return False
    if key == "tracking.mlflow.uri":
        return value.startswith(_SQLITE) and value[len(_SQLITE) :] not in ("", ":memory:")
    return True


def resolve_one(key: str, value: Any, base: str) -> str | None:
    """The resolved form of a relative path `value` of `key` (None: not a relative path, keep it)."""
    if not _is_path(key, value):
        return None
    prefix = _SQLITE if key == "tracking.mlflow.uri" else ""
    value = value[len(prefix) :]
    if os.path.isabs(value) or value.startswith("~"):
        return None
    # Lexical, like a shell's `cd`: `configs/../results` stays beside configs even when configs is a link.
    return prefix + os.path.normpath(os.path.join(base, value))


def _map_tree(tree: Any, at: tuple[str, ...], fn: Callable[[str, Any], Any]) -> Any:
    """`tree` (the value found at dotted key `at`) with `fn(key, value)` applied to every path key in it."""
    for key in PATH_KEYS:
        parts = tuple(key.split("."))
        if parts[: len(at)] != at:
            continue
        rest = parts[len(at) :]
        if not rest:
            tree = fn(key, tree)
            continue
        node = tree
        for part in rest[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and rest[-1] in node:
            node[rest[-1]] = fn(key, node[rest[-1]])
    return tree


def resolve_tree(tree: Any, at: tuple[str, ...], base: str, written: Written) -> Any:
    """Resolve every relative path in `tree` (found at `at`) against `base`, remembering the written form."""

    def fn(key: str, value: Any) -> Any:
        resolved = resolve_one(key, value, base)
        if resolved is None:
            return value
        written.setdefault(key, {})[resolved] = value
        return resolved

    return _map_tree(tree, at, fn)


def as_written(tree: Any, at: tuple[str, ...], written: Written) -> Any:
    """`tree` with each resolved path put back as it was written (grid labels, so run ids keep them)."""
    return _map_tree(tree, at, lambda key, v: written.get(key, {}).get(v, v) if isinstance(v, str) else v)


def forget(written: Written, dotted: str) -> None:
    """Drop what was written for `dotted` and the keys under it (a `--set` replaces them)."""
    for key in [k for k in written if k == dotted or k.startswith(dotted + ".")]:
        del written[key]


def _each_value(raw: dict[str, Any], key: str, fn: Callable[[Any, tuple[str, ...]], Any]) -> None:
    """Apply `fn` to each value listed under `raw[key]` for a dotted key: grid lists, exclude entries."""
    section = raw.get(key)
    if key == "grid" and isinstance(section, dict):
        for k, values in section.items():
            if isinstance(values, list):
                section[k] = [fn(v, tuple(k.split("."))) for v in values]
    elif key == "exclude" and isinstance(section, list):
        for entry in section:
            if isinstance(entry, dict):
                for k in entry:
                    entry[k] = fn(entry[k], tuple(k.split(".")))


def resolve_sweep(raw: dict[str, Any], base: str, written: Written) -> None:
    """Resolve, in place, every relative path of a parsed sweep file (base sections, grid values and
    exclude entries) against `base`, the file's folder. A missing `output_dir` takes its default here, so
    the default is relative to the file too."""
    raw.setdefault("output_dir", SweepConfig.model_fields["output_dir"].default)
    resolve_tree(raw, (), base, written)
    for section in ("grid", "exclude"):
        _each_value(raw, section, lambda v, at: resolve_tree(v, at, base, written))


def written_paths(spec: dict[str, Any], written: Written) -> dict[str, dict[str, str]]:
    """`RunSpec.written_paths` of a run spec (as a dict) whose paths were resolved from `written`."""
    out: dict[str, dict[str, str]] = {}

    def fn(key: str, value: Any) -> Any:
        if isinstance(value, str) and value in written.get(key, {}):
            out[key] = {"written": written[key][value], "resolved": value}
        return value

    _map_tree(spec, (), fn)
    return out


def describe(cfg: SweepConfig) -> list[str]:
    """One line per path the sweep uses, resolved, and as written when it was relative (--dry-run)."""
    raw = cfg.model_dump(mode="json")
    axes = tuple(cfg.grid)

    def unused(key: str, value: Any) -> Any:  # a base value that a grid axis replaces is not used
        return None if any(key == a or key.startswith(a + ".") for a in axes) else value

    _map_tree(raw, (), unused)
    seen: dict[tuple[str, str], None] = {}

    def fn(key: str, value: Any) -> Any:
        if _is_path(key, value):
            seen[(key, value)] = None
        return value

    _map_tree(raw, (), fn)
    _each_value(raw, "grid", lambda v, at: _map_tree(v, at, fn))
    lines = []
    for key, value in seen:
        was = cfg._written_paths.get(key, {}).get(value)
        lines.append(f"path {key}: {value}" + (f" (as written: {was})" if was is not None else ""))
    return lines
