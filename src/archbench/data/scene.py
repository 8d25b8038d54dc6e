"""Scenes and windowed raster reading: owns what a valid scene is (its file, `data/scene_file.py`, and
its rasters) and how its pixels are read.

Relative `root` is resolved against the scene file's folder (no `root`: that folder itself). Band nodata
comes from the file unless the scene file gives one; a label pixel is unlabelled if it is the label
nodata value, non-finite or an `ignore` value; any other value that is not a class value is an error.
Class values are 0..254 and are what maps hold (map nodata is 0, or 255 if 0 is a class value).
All rasters must share the label raster's size and transform (and CRS, where both have one).

Reading is windowed: `SceneReader.read_bands` returns float32 with NaN wherever a band is nodata (its
nodata value, or a non-finite value) or the window leaves the grid, so memory is bounded by the window
(plus GDAL's block cache, capped by GDAL_CACHEMAX: 5% of RAM unless set).
This module never trains, never predicts and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from archbench.data.scene_file import BandFileSpec, LabelSpec, MultiBandSpec, SceneSpec, load_located
from archbench.util.errors import ConfigError, DatasetError
from archbench.util.paths import file_sha256

UNLABELLED = 255
"""Class index of a pixel without a label (nodata, an ignore value) in label windows."""

# Fallback colours (colour-blind-friendly tab10) for classes whose colour the scene file leaves out.
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


@dataclass(frozen=True)
class BandSource:
    path: Path
    index: int
    nodata: float | None
    name: str


@dataclass(frozen=True)
class LabelSource:
    path: Path
    band: int
    nodata: float | None
    ignore: tuple[float, ...]


@dataclass(frozen=True)
class Grid:
    height: int
    width: int
    transform: Any  # affine.Affine
    crs: Any  # rasterio.crs.CRS or None

    def same_as(self, other: Grid) -> bool:
        return (
            (self.height, self.width) == (other.height, other.width)
            and self.transform.almost_equals(other.transform, precision=1e-6)
            and (self.crs is None or other.crs is None or self.crs == other.crs)
        )

    def summary(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "transform": list(self.transform)[:6],
            "crs": self.crs.to_string() if self.crs is not None else None,
        }


@dataclass(frozen=True)
class Scene:
    """A validated scene: resolved file paths, classes and the grid every raster shares."""

    name: str
    path: Path
    bands: tuple[BandSource, ...]
    labels: LabelSource
    reference: LabelSource
    class_values: tuple[int, ...]
    class_names: tuple[str, ...]
    colors: tuple[str, ...]
    grid: Grid

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    def files(self) -> list[Path]:
        seen: dict[Path, None] = {}
        for p in [b.path for b in self.bands] + [self.labels.path, self.reference.path]:
            seen.setdefault(p, None)
        return list(seen)

    def provenance(self) -> dict[str, Any]:
        """What a record stores about the scene: paths, digests, bands, classes, grid."""
        return {
            "name": self.name,
            "scene_file": str(self.path),
            "scene_sha256": file_sha256(self.path),
            "files": {str(p): file_sha256(p) for p in self.files()},
            "bands": [
                {"file": str(b.path), "index": b.index, "name": b.name, "nodata": b.nodata}
                for b in self.bands
            ],
            "labels": str(self.labels.path),
            "reference": str(self.reference.path),
            "classes": [
                {"index": i, "value": v, "name": n, "color": c}
                for i, (v, n, c) in enumerate(
                    zip(self.class_values, self.class_names, self.colors, strict=True)
                )
            ],
            "grid": self.grid.summary(),
        }


def _raster_error(path: Path, exc: Exception) -> DatasetError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatasetError(f"{path}: cannot read this GeoTIFF ({first}); is it truncated or corrupt?")


def _open(path: Path, where: str | None = None) -> Any:
    import rasterio
    from rasterio.errors import RasterioError

    if not path.is_file():
        named = f"{where}: " if where else ""
        raise DatasetError(f"{named}{path}: file not found (check the scene file's root and file names)")
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise _raster_error(path, exc) from exc


def _grid_of(ds: Any) -> Grid:
    return Grid(int(ds.height), int(ds.width), ds.transform, ds.crs)


def _locator(path: Path, lines: dict[Any, int]) -> Callable[..., str]:
    """`at(*key)`: `file:line` of a key path in the scene file (the file alone when it has no line)."""
    from archbench.util.yamlio import line_for

    def at(*key: str | int) -> str:
        line = line_for(lines, key)
        return f"{path}:{line}" if line else str(path)

    return at


def _base_folder(spec: SceneSpec, scene_path: Path, root: str | Path | None, at: Callable[..., str]) -> Path:
    """The folder the scene's files are relative to: `root` (data.root), else the file's `root`
    (relative to the scene file), else the scene file's folder."""
    if root is not None:
        base = Path(root).resolve()
    elif spec.root is not None:
        base = (scene_path.parent / spec.root).resolve()
    else:
        base = scene_path.parent
    if not base.is_dir():
        raise DatasetError(f"{at('root')}: root folder {base} does not exist (set `root:` or data.root)")
    return base


def _multiband_sources(mb: MultiBandSpec, base: Path, at: Callable[..., str]) -> list[BandSource]:
    fpath = base / mb.file
    with _open(fpath, at("bands", "file")) as ds:
        indexes = mb.indexes or list(range(1, ds.count + 1))
        nodatas = list(ds.nodatavals)
    bad = [i for i in indexes if not 1 <= i <= len(nodatas)]
    if bad:
        raise ConfigError(
            f"{at('bands', 'indexes')}: bands.indexes {bad} not in 1..{len(nodatas)} of {fpath}"
        )
    if mb.names is not None and len(mb.names) != len(indexes):
        raise ConfigError(
            f"{at('bands', 'names')}: bands.names has {len(mb.names)} names for {len(indexes)} bands"
        )
    if isinstance(mb.nodata, list) and len(mb.nodata) != len(indexes):
        raise ConfigError(
            f"{at('bands', 'nodata')}: bands.nodata has {len(mb.nodata)} values for {len(indexes)} bands"
        )
    bands = []
    for k, i in enumerate(indexes):
        nd = mb.nodata[k] if isinstance(mb.nodata, list) else mb.nodata
        nd = nd if nd is not None else nodatas[i - 1]
        name = mb.names[k] if mb.names else f"band{i}"
        bands.append(BandSource(fpath, i, None if nd is None else float(nd), name))
    return bands


def _band_file_sources(files: list[BandFileSpec], base: Path, at: Callable[..., str]) -> list[BandSource]:
    if not files:
        raise ConfigError(f"{at('bands')}: bands: give at least one band file")
    bands = []
    for k, b in enumerate(files):
        fpath = base / b.file
        with _open(fpath, at("bands", k, "file")) as ds:
            if b.band > ds.count:
                raise ConfigError(
                    f"{at('bands', k, 'band')}: bands[{k}].band={b.band} but {fpath} has {ds.count} band(s)"
                )
            nd = b.nodata if b.nodata is not None else ds.nodatavals[b.band - 1]
        bands.append(
            BandSource(fpath, b.band, None if nd is None else float(nd), b.name or Path(b.file).stem)
        )
    return bands


def _label_source(ls: LabelSpec, key: str, base: Path, at: Callable[..., str]) -> LabelSource:
    fpath = base / ls.file
    with _open(fpath, at(key, "file")) as ds:
        if ls.band > ds.count:
            raise ConfigError(f"{at(key, 'band')}: {key}.band={ls.band} but {fpath} has {ds.count} band(s)")
        nd = ls.nodata if ls.nodata is not None else ds.nodatavals[ls.band - 1]
    return LabelSource(fpath, ls.band, None if nd is None else float(nd), tuple(ls.ignore))


def _shared_grid(labels: LabelSource, others: set[Path]) -> Grid:
    """The label raster's grid, which every other raster must share."""
    with _open(labels.path) as ds:
        grid = _grid_of(ds)
    for p in others:
        with _open(p) as ds:
            g = _grid_of(ds)
        if not g.same_as(grid):
            raise DatasetError(
                f"{p}: not on the label raster's grid ({g.height}x{g.width}, {g.transform[:6]}, {g.crs}) "
                f"vs {labels.path} ({grid.height}x{grid.width}, {grid.transform[:6]}, {grid.crs}); "
                "resample it onto the label grid first"
            )
    return grid


def open_scene(path: str | Path, root: str | Path | None = None) -> Scene:
    """Validate a scene file and its rasters (headers only: cheap). `root` overrides the file's `root`."""
    scene_path = Path(path).resolve()
    spec, lines = load_located(scene_path)
    at = _locator(scene_path, lines)
    base = _base_folder(spec, scene_path, root, at)
    if isinstance(spec.bands, MultiBandSpec):
        bands = _multiband_sources(spec.bands, base, at)
    else:
        bands = _band_file_sources(spec.bands, base, at)
    labels = _label_source(spec.labels, "labels", base, at)
    reference = _label_source(spec.reference, "reference", base, at) if spec.reference else labels
    grid = _shared_grid(labels, {b.path for b in bands} | {reference.path})
    classes = spec.classes
    return Scene(
        name=spec.name,
        path=scene_path,
        bands=tuple(bands),
        labels=labels,
        reference=reference,
        class_values=tuple(c.value for c in classes),
        class_names=tuple(c.name for c in classes),
        colors=tuple(c.color or _PALETTE[i % len(_PALETTE)] for i, c in enumerate(classes)),
        grid=grid,
    )


def _matches(arr: np.ndarray, value: float) -> np.ndarray:
    """Pixels equal to `value` compared in the array's own dtype (a value it cannot hold matches none)."""
    cast = np.asarray(value).astype(arr.dtype)
    if arr.dtype.kind in "iu" and float(cast) != value:
        return np.zeros(arr.shape, dtype=bool)
    return np.asarray(arr == cast)


def iter_windows(height: int, width: int, size: int) -> list[tuple[int, int, int, int]]:
    """(row0, col0, h, w) tiles of at most size x size covering the grid, row-major."""
    return [
        (r, c, min(size, height - r), min(size, width - c))
        for r in range(0, height, size)
        for c in range(0, width, size)
    ]


class SceneReader:
    """Keeps a scene's rasters open and reads windows of them; use as a context manager."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._ds: dict[Path, Any] = {}

    def __enter__(self) -> SceneReader:
        for p in self.scene.files():
            self._ds[p] = _open(p)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for ds in self._ds.values():
            ds.close()
        self._ds.clear()

    def _read(self, path: Path, band: int, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        try:
            return np.asarray(self._ds[path].read(band, window=Window(c0, r0, w, h)))
        except RasterioError as exc:
            raise _raster_error(path, exc) from exc

    def read_bands(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        """Bands of a window that may reach past the grid: float32 C×height×width, NaN where invalid."""
        g = self.scene.grid
        out = np.full((self.scene.num_bands, height, width), np.nan, dtype=np.float32)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + height, g.height), min(col0 + width, g.width)
        if r1 <= r0 or c1 <= c0:
            return out
        for k, b in enumerate(self.scene.bands):
            a = self._read(b.path, b.index, r0, c0, r1 - r0, c1 - c0)
            v = a.astype(np.float32)
            bad = ~np.isfinite(v)
            if b.nodata is not None and np.isfinite(b.nodata):
                bad |= _matches(a, b.nodata)
            v[bad] = np.nan
            out[k, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = v
        return out

    def read_labels(
        self, row0: int, col0: int, height: int, width: int, reference: bool = False
    ) -> np.ndarray:
        """Class indices (uint8; UNLABELLED for nodata/ignored) of a window inside the grid."""
        src = self.scene.reference if reference else self.scene.labels
        a = self._read(src.path, src.band, row0, col0, height, width)
        out = np.full(a.shape, UNLABELLED, dtype=np.uint8)
        known = np.zeros(a.shape, dtype=bool)
        for i, v in enumerate(self.scene.class_values):
            m = _matches(a, float(v))
            out[m] = i
            known |= m
        skip = ~np.isfinite(a) if a.dtype.kind == "f" else np.zeros(a.shape, dtype=bool)
        for value in ([src.nodata] if src.nodata is not None else []) + list(src.ignore):
            skip |= _matches(a, value)
        unknown = ~known & ~skip
        if unknown.any():
            vals = sorted({float(x) for x in np.unique(a[unknown])[:8]})
            r, c = (int(i[0]) for i in np.nonzero(unknown))
            raise DatasetError(
                f"{src.path}: label value(s) {vals} at e.g. row {row0 + r}, col {col0 + c} are not a class "
                f"value {list(self.scene.class_values)}, the nodata value ({src.nodata}) or an ignore value; "
                "add them to `classes` or to `labels.ignore` in the scene file"
            )
        return out

    def label_grid(self, reference: bool = False, window: int = 1024) -> np.ndarray:
        """The whole label raster as class indices (1 byte per pixel), read window by window."""
        g = self.scene.grid
        out = np.empty((g.height, g.width), dtype=np.uint8)
        for r, c, h, w in iter_windows(g.height, g.width, window):
            out[r : r + h, c : c + w] = self.read_labels(r, c, h, w, reference)
        return out

    def valid_grid(self, window: int = 1024) -> np.ndarray:
        """True where every band is valid (the pixels a map classifies), read window by window."""
        g = self.scene.grid
        out = np.empty((g.height, g.width), dtype=bool)
        for r, c, h, w in iter_windows(g.height, g.width, window):
            out[r : r + h, c : c + w] = np.isfinite(self.read_bands(r, c, h, w)).all(0)
        return out


def extract_patches(block: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    """Patches n×C×patch×patch centred on (rows, cols) of a block read with a halo of patch // 2.

    (rows, cols) index the block's core, i.e. block pixel (r + halo, c + halo) is the centre.
    """
    view = np.lib.stride_tricks.sliding_window_view(block, (patch, patch), axis=(1, 2))
    return np.ascontiguousarray(view[:, rows, cols].transpose(1, 0, 2, 3))


def gather_patches(
    reader: SceneReader, rows: np.ndarray, cols: np.ndarray, patch: int, window: int = 256
) -> np.ndarray:
    """Patches (NaN where invalid or off the grid) centred on grid pixels, read one window at a time."""
    halo = patch // 2
    out = np.empty((rows.size, reader.scene.num_bands, patch, patch), dtype=np.float32)
    if rows.size == 0:
        return out
    tile = (rows // window) * ((reader.scene.grid.width + window - 1) // window) + cols // window
    order = np.argsort(tile, kind="stable")
    bounds = np.flatnonzero(np.diff(tile[order])) + 1
    for group in np.split(order, bounds):
        r0 = int(rows[group[0]] // window * window)
        c0 = int(cols[group[0]] // window * window)
        block = reader.read_bands(r0 - halo, c0 - halo, window + 2 * halo, window + 2 * halo)
        out[group] = extract_patches(block, rows[group] - r0, cols[group] - c0, patch)
    return out
