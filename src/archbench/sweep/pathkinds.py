"""Path keys of a sweep: owns checking at planning that each points at the kind of thing it must be (a
folder, a file), reading only, so a wrong kind is one line naming the key and exit 2, with nothing created.

Whether the right files are *inside* a folder is the dataset family's check (data/registry.py); this one
only catches the kind: a cache folder that is a file, a scene or weights file that is a folder, a data
root that is a file, a folder to be created under a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from archbench.config import DataSpec, SweepConfig
from archbench.util.escape import visible

Kind = Literal["file", "folder"]


def _what(path: Path) -> str:
    return "folder" if path.is_dir() else "file" if path.is_file() else "special file"


def kind_problem(key: str, value: str | os.PathLike[str], want: Kind, purpose: str) -> str | None:
    """One line when `value` exists and is not a `want`, or when it would be created under a file."""
    path = Path(value).expanduser()
    if path.exists():
        if (want == "folder" and path.is_dir()) or (want == "file" and path.is_file()):
            return None
        return f"{key}: {visible(path)} is a {_what(path)}; expected a {want} ({purpose})"
    above = path.parent
    while not above.exists() and above.parent != above:
        above = above.parent
    if above.exists() and not above.is_dir():
        return (
            f"{key}: {visible(above)} is a {_what(above)}, so {visible(path)} cannot be created there; "
            f"expected a {want} ({purpose})"
        )
    return None


def data_path_problems(spec: DataSpec) -> list[str]:
    """The data section's path keys: root, cache folder and (raster_patches) the scene file."""
    checks: list[tuple[str, object, Kind, str]] = [
        ("data.root", spec.root, "folder", "the dataset's files"),
        ("data.cache_dir", spec.cache_dir, "folder", "the prepared-data cache"),
        ("ARCHBENCH_CACHE", None if spec.cache_dir else os.environ.get("ARCHBENCH_CACHE"), "folder",
         "the prepared-data cache"),
    ]  # fmt: skip
    scene = spec.options.get("scene") if spec.kind == "raster_patches" else None
    if isinstance(scene, str) and scene:
        checks.append(("data.options.scene", scene, "file", "the scene YAML"))
    return _problems(checks)


def sweep_path_problems(cfg: SweepConfig) -> list[str]:
    """Sweep-level path keys: the map stage's scene and raster folder, the tuning study's SQLite file."""
    checks: list[tuple[str, object, Kind, str]] = []
    if cfg.map is not None and cfg.map.enabled:
        checks += [
            ("map.scene", cfg.map.scene, "file", "the scene YAML to map"),
            ("map.root", cfg.map.root, "folder", "the scene's rasters"),
        ]
    if cfg.tune is not None:
        checks.append(("tune.storage", cfg.tune.storage, "file", "the Optuna SQLite database"))
    return _problems(checks)


def _problems(checks: list[tuple[str, object, Kind, str]]) -> list[str]:
    found = (kind_problem(k, v, want, why) for k, v, want, why in checks if isinstance(v, str) and v)
    return [p for p in found if p]


__all__ = ["data_path_problems", "kind_problem", "sweep_path_problems"]
