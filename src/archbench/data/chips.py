"""Chip files: owns reading one multispectral chip (GeoTIFF with rasterio, or .npy) at its native dtype —
its header, its pixels, its nodata mask — and writing one GeoTIFF chip. Lists no folder and never decides
splits (`raster_folder.py` does); never trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.util.errors import DatasetError

CHIP_EXTENSIONS = frozenset({".tif", ".tiff", ".npy"})
# The dtypes a chip may have; each is stored as is (the prepared-data cache keeps it, lossless).
CHIP_DTYPES = ("uint8", "uint16", "int16", "float32")


@dataclass(frozen=True)
class ChipHeader:
    """What a chip's header says: size, bands, dtype, band descriptions and per-band nodata values."""

    height: int
    width: int
    count: int
    dtype: str
    descriptions: tuple[str | None, ...]
    nodata: tuple[float | None, ...]

    def shape_text(self) -> str:
        return f"{self.height}x{self.width} with {self.count} band(s) of {self.dtype}"


def _npy_header(path: Path) -> ChipHeader:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise DatasetError(f"{path}: a .npy chip must be C×H×W (or H×W for one band), found shape {shape}")
    count = int(shape[0])
    return ChipHeader(int(shape[1]), int(shape[2]), count, str(dtype), (None,) * count, (None,) * count)


def _tif_header(path: Path) -> ChipHeader:
    import rasterio

    with rasterio.open(path) as ds:
        dtypes = sorted(set(ds.dtypes))
        if len(dtypes) != 1:
            raise DatasetError(f"{path}: bands of different dtypes ({', '.join(dtypes)}); use one dtype")
        descriptions = tuple(d or None for d in ds.descriptions)
        nodata = tuple(None if v is None else float(v) for v in ds.nodatavals)
        return ChipHeader(int(ds.height), int(ds.width), int(ds.count), dtypes[0], descriptions, nodata)


def read_header(path: Path) -> ChipHeader:
    """The header of one chip (reads no pixels); a DatasetError naming the file when unreadable."""
    try:
        if path.suffix.lower() == ".npy":
            return _npy_header(path)
        return _tif_header(path)
    except DatasetError:
        raise
    except Exception as exc:  # any reader failure on a damaged file names the file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatasetError(f"{path}: cannot read this chip ({first}); is it truncated or corrupt?") from exc


def read_pixels(path: Path, bands: list[int]) -> np.ndarray:
    """The chip's `bands` (0-based, in that order) as C×H×W in the file's dtype."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            arr = arr[None] if arr.ndim == 2 else arr
            return np.array(arr[bands])
        import rasterio

        with rasterio.open(path) as ds:
            return np.asarray(ds.read(indexes=[b + 1 for b in bands]))
    except Exception as exc:  # any reader failure on a damaged file names the file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatasetError(f"{path}: cannot read this chip ({first}); is it truncated or corrupt?") from exc


def invalid_mask(chips: np.ndarray, nodata: list[float | None]) -> np.ndarray:
    """True where a pixel of `chips` (…×C×H×W) is nodata: equal to its band's nodata value, or not finite
    (float chips)."""
    bad = ~np.isfinite(chips) if chips.dtype.kind == "f" else np.zeros(chips.shape, dtype=bool)
    for b, value in enumerate(nodata):
        if value is None or not np.isfinite(value):
            continue
        cast = np.asarray(value).astype(chips.dtype)
        if chips.dtype.kind in "iu" and float(cast) != value:
            continue  # a value the dtype cannot hold matches no pixel
        bad[..., b, :, :] |= chips[..., b, :, :] == cast
    return bad


def write_chip(
    path: Path,
    chip: np.ndarray,
    band_names: list[str],
    nodata: float | None = None,
    georef: dict[str, Any] | None = None,
) -> None:
    """One C×H×W chip as a GeoTIFF whose band descriptions are `band_names` (georeferenced when `georef`
    gives `crs` and `transform`)."""
    import rasterio

    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": int(chip.shape[1]),
        "width": int(chip.shape[2]),
        "count": int(chip.shape[0]),
        "dtype": str(chip.dtype),
        "nodata": nodata,
        **(georef or {}),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(chip)
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)
