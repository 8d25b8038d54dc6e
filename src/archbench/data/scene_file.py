"""Scene files: owns what a valid scene file is (its schema) and reading one with `file:line` errors.
The rasters it names are opened and read by `data/scene.py`; this module never opens them.

A scene file (YAML) names the image bands (one file per band, or one multiband file), a label raster on the
same grid (full coverage or sparse), the classes with their colours, and optional ignore values:

    name: nc_landsat7
    root: ../../../shared/data/landsat7_north_carolina_landcover   # relative to this file
    bands:                                  # one file per band ...
      - {file: lsat7_2000_10.tif, name: blue}
      - {file: lsat7_2000_70.tif, name: swir2, nodata: -32768}     # nodata overrides the file's own
    # bands: {file: stack.tif, indexes: [1, 2, 3, 4], nodata: 0}  # ... or one multiband file
    labels: {file: strata.tif, ignore: [0]}  # nodata pixels and `ignore` values are unlabelled
    reference: {file: strata.tif}            # optional: the raster maps are scored against (default labels)
    classes:
      - {value: 1, name: developed, color: "#e31a1c"}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from archbench.util.errors import ConfigError

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BandFileSpec(_Strict):
    file: str = Field(..., min_length=1, description="a GeoTIFF holding this band")
    band: int = Field(1, ge=1, description="band index inside the file (1-based)")
    name: str | None = None
    nodata: float | None = Field(None, description="overrides the file's own nodata value")


class MultiBandSpec(_Strict):
    file: str = Field(..., min_length=1, description="one multiband GeoTIFF")
    indexes: list[int] | None = Field(None, description="1-based bands to use; null: all of them")
    names: list[str] | None = None
    nodata: float | list[float | None] | None = Field(None, description="one value, or one per band")


class LabelSpec(_Strict):
    file: str = Field(..., min_length=1)
    band: int = Field(1, ge=1)
    nodata: float | None = Field(None, description="overrides the file's own nodata value")
    ignore: list[float] = Field(default_factory=list, description="label values treated as unlabelled")


class ClassSpec(_Strict):
    value: int = Field(..., ge=0, le=254, description="the class's value in the label raster and in maps")
    name: str = Field(..., min_length=1)
    color: str | None = Field(None, description="#rrggbb")

    @field_validator("color")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not _HEX.match(v):
            raise ValueError(f"expected a colour like '#1f77b4', found {v!r}")
        return v


class SceneSpec(_Strict):
    name: str = Field(..., min_length=1, max_length=120)
    root: str | None = Field(None, description="folder of the files; relative to the scene file's folder")
    bands: list[BandFileSpec] | MultiBandSpec
    labels: LabelSpec
    reference: LabelSpec | None = None
    classes: list[ClassSpec] = Field(..., min_length=2)

    @field_validator("classes")
    @classmethod
    def _unique(cls, classes: list[ClassSpec]) -> list[ClassSpec]:
        values = [c.value for c in classes]
        if len(set(values)) != len(values):
            raise ValueError(f"class values must be unique, found {values}")
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, found {names}")
        return classes


def _validation_error(path: Path, exc: ValidationError, data: Any, lines: dict[Any, int]) -> ConfigError:
    """`file:line: key.path: message`, like sweep files. `bands` is a list of files or one multiband
    mapping: only the errors of the form the file uses are shown, without pydantic's union tags."""
    from archbench.util.yamlio import located_messages

    bands = data.get("bands") if isinstance(data, dict) else None
    keep = "MultiBandSpec" if isinstance(bands, dict) else "list[BandFileSpec]"
    errors = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if len(loc) > 1 and loc[0] == "bands" and isinstance(loc[1], str) and "Spec" in loc[1]:
            if loc[1] != keep:
                continue
            err = {**err, "loc": (loc[0], *loc[2:])}
        errors.append(err)
    msgs = located_messages(str(path), errors, lines)
    return ConfigError("invalid scene file:\n  " + "\n  ".join(msgs))


def load_located(path: Path) -> tuple[SceneSpec, dict[Any, int]]:
    """The validated scene file and the line of each key (for `file:line` errors about its rasters)."""
    from archbench.util.yamlio import load_yaml_file

    data, lines = load_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a scene file is a mapping with keys name, root, bands, labels, classes")
    try:
        return SceneSpec.model_validate(data), lines
    except ValidationError as exc:
        raise _validation_error(path, exc, data, lines) from None


def load_scene_spec(path: str | Path) -> SceneSpec:
    """Read and validate a scene file; every error names the file, line and key path."""
    return load_located(Path(path))[0]
