"""The `raster_folder` dataset kind: folders of multispectral chips (GeoTIFF or .npy) at their native dtype.

Layouts (`data.root`), as `imagefolder`:

* `root/train/<class>/…` and `root/test/<class>/…` (or `root/val/` as the test split when there is no
  `test/`): the official split. With `train/`, `val/` and `test/` all present, `val/` is the official
  validation split (else validation is carved from `train/`). Every split holds the same class folders.
* `root/<class>/…`: one folder; a stratified test split is carved out (`data.test_fraction`).

Chips are found recursively, hidden entries skipped, sorted: `.tif`/`.tiff` are read with rasterio, `.npy`
are C×H×W arrays (H×W for one band). Any band count; the dtype is one of uint8, uint16, int16, float32 and
is kept as is through the prepared-data cache. Every chip must have the same height, width, band count and
dtype: the planning check opens every header (no pixels) and names the first chip that differs (exit 2).
`data.limit_per_class` is applied while listing an official train split (first N chips per class).

Options (`data.options`, checked strictly):

    bands: [B01, B02, …]        # names of the files' bands, in file order; else the first chip's GeoTIFF
                                # band descriptions; else band1..bandN
    select_bands: [B04, B03]    # a subset of those names, in the order the model gets them
    nodata: 0                   # nodata value of every band (or a list, one per file band); else each
                                # GeoTIFF's own nodata value. NaN/inf in float chips is always nodata
    threads: 2                  # reading threads

Nodata. Masked pixels are replaced by their band's mean over the valid pixels of the training pool (the
chips the test split does not hold: the training split and the validation split carved from it; an
official `val/` is not part of it), rounded for integer dtypes. `info.fill_values` records the values
and `info.masked_pixels` how many pixels of each band were filled. The common path then standardises
each band with the mean and std of the training split, in the chips' own units (uint8: of pixels / 255),
so filled pixels sit near zero. The run record's `data` holds `info.dtype`, `info.band_names`, the fill
values and the per-band `mean`/`std`.
This module reads files only; it never trains and never writes files.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.data.chips import (
    CHIP_DTYPES,
    CHIP_EXTENSIONS,
    ChipHeader,
    invalid_mask,
    read_header,
    read_pixels,
)
from archbench.data.options import check_option_names
from archbench.data.registry import RawDataset, register_dataset, training_pool
from archbench.data.root import data_root, planned_root
from archbench.util.errors import ConfigError, DatasetError

KIND = "raster_folder"
# The options this kind accepts (per-kind options are not declared in the registry yet).
OPTIONS = {KIND: frozenset({"bands", "select_bands", "nodata", "threads"})}
LAYOUTS = {
    KIND: "<root>/train/<class>/<chip> and <root>/test/<class>/<chip> (val/ as test without test/; with "
    "train/, val/ and test/, val/ is the official validation split), or <root>/<class>/<chip> (one "
    "folder; a stratified test split is carved out); chips: .tif .tiff (GeoTIFF) .npy (C×H×W), all of one "
    "size, band count and dtype (" + ", ".join(CHIP_DTYPES) + ")"
}
_CHUNK = 64  # chips per reading task


def source_identity(spec: DataSpec) -> str:
    """The reader whose decoding the prepared store holds (added to the source fingerprint)."""
    from importlib.metadata import version

    return f"rasterio {version('rasterio')}"


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class ChipOptions:
    bands: list[str] | None
    select_bands: list[str] | None
    nodata: float | list[float | None] | None
    threads: int


def _names(value: Any, key: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"data.options.{key}: expected a list of band names, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"data.options.{key}: band names repeat in {value!r}")
    return list(value)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse_options(spec: DataSpec) -> ChipOptions:
    check_option_names(spec, OPTIONS[KIND])
    nodata = spec.options.get("nodata")
    if not (
        nodata is None
        or _number(nodata)
        or (isinstance(nodata, list) and nodata and all(v is None or _number(v) for v in nodata))
    ):
        raise ConfigError(f"data.options.nodata: expected a number or a list of numbers, got {nodata!r}")
    threads = spec.options.get("threads", 2)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 64:
        raise ConfigError(f"data.options.threads: expected an int in 1..64, got {threads!r}")
    bands = _names(spec.options.get("bands"), "bands")
    return ChipOptions(bands, _names(spec.options.get("select_bands"), "select_bands"), nodata, threads)


# ---------------------------------------------------------------- layout and listing


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not _hidden(e.name))


def _chip_files(class_dir: Path) -> list[Path]:
    """Chip files under `class_dir`, recursively, sorted by folder then name; hidden entries skipped."""
    walked = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        walked.append((dirpath, sorted(filenames)))
    return [
        Path(dirpath) / name
        for dirpath, names in sorted(walked)
        for name in names
        if not _hidden(name) and os.path.splitext(name)[1].lower() in CHIP_EXTENSIONS
    ]


def _split_dirs(root: Path) -> dict[str, Path]:
    """{"train": folder, "test": folder?, "val": folder?} of the layout under `root`."""
    present = {n: root / n for n in ("train", "val", "test") if (root / n).is_dir()}
    if not present:
        return {"train": root}
    if "train" not in present or len(present) == 1:
        have = ", ".join(f"{n}/" for n in present)
        raise DatasetError(
            f"data.root={root}: found {have} but not its partner (needs train/ and test/ or val/); add the "
            f"missing split with the same class folders, or point data.root at one split folder to carve "
            "a test split from it"
        )
    if "test" in present:
        return present
    return {"train": present["train"], "test": present["val"]}


@dataclass
class Listing:
    """The chips of every split: paths, labels and paths relative to the root."""

    root: Path
    dirs: dict[str, Path]
    classes: list[str]
    paths: dict[str, list[Path]]
    labels: dict[str, list[int]]
    available: int  # chips in the train folder before data.limit_per_class

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def all_paths(self) -> list[Path]:
        return [p for split in self.paths.values() for p in split]


def _layout_problems(root: Path, dirs: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(the class names, one line per layout problem: splits with other class folders, empty classes)."""
    classes = _class_dirs(dirs["train"])
    if not classes:
        return [], [f"data.root={root}: {dirs['train']} has no class sub-folders"]
    problems = []
    for name, folder in dirs.items():
        other = _class_dirs(folder)
        if other != classes:
            problems.append(
                f"data.root={root}: class folders of {name}/ differ from train/ (only in train/: "
                f"{sorted(set(classes) - set(other)) or 'none'}; only in {name}/: "
                f"{sorted(set(other) - set(classes)) or 'none'})"
            )
        empty = [c for c in other if not _chip_files(folder / c)]
        if empty:
            problems.append(
                f"data.root={root}: class folder(s) without chips in {folder}: {', '.join(empty)}"
            )
    return classes, problems


def list_chips(spec: DataSpec) -> Listing:
    """Every chip the spec reads, by split; a DatasetError (one line per problem) for a bad layout."""
    root = data_root(spec, lambda _where: f"Expected layout: {LAYOUTS[KIND]}. archbench never downloads.")
    dirs = _split_dirs(root)
    classes, problems = _layout_problems(root, dirs)
    if problems:
        raise DatasetError("invalid chip folder:\n" + "\n".join(problems))
    limit = spec.limit_per_class if "test" in dirs else None
    out = Listing(root, dirs, classes, {}, {}, 0)
    for split, folder in dirs.items():
        out.paths[split], out.labels[split] = [], []
        for idx, name in enumerate(classes):
            files = _chip_files(folder / name)
            if split == "train":
                out.available += len(files)
                files = files[:limit] if limit is not None else files
            out.paths[split].extend(files)
            out.labels[split].extend([idx] * len(files))
    return out


def check_files(spec: DataSpec) -> list[str]:
    """Planning check: the layout and at least one chip per class folder, without opening any chip."""
    expected = f"expected layout: {LAYOUTS[KIND]}"
    root, problems = planned_root(spec, expected)
    if root is None:
        return problems
    try:
        dirs = _split_dirs(root)
    except DatasetError as exc:
        return [f"{exc}; {expected}"]
    return [f"{line}; {expected}" for line in _layout_problems(root, dirs)[1]]


# ---------------------------------------------------------------- headers and bands


def _scan(paths: list[Path], threads: int, work: Any) -> list[Any]:
    """`work` over chunks of `paths` on `threads` threads (rasterio releases the GIL while reading), each
    chunk inside one GDAL environment (else every open sets one up: half the cost of a small chip)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    def in_env(chunk: list[Path]) -> Any:
        with rasterio.Env():
            return work(chunk)

    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with warnings.catch_warnings():  # chips need no georeference (EuroSAT's have one, .npy none)
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if threads <= 1 or len(chunks) <= 1:
            return [in_env(c) for c in chunks]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(in_env, chunks))


def _headers(
    listing: Listing, spec: DataSpec, threads: int
) -> tuple[dict[Path, ChipHeader], list[dict[str, str]]]:
    """Every chip's header; unreadable chips fail (one error naming them) or, with
    `data.on_bad_file: skip`, are left out and returned as {path, reason}."""

    def work(chunk: list[Path]) -> list[tuple[Path, ChipHeader | None, str]]:
        out: list[tuple[Path, ChipHeader | None, str]] = []
        for p in chunk:
            try:
                out.append((p, read_header(p), ""))
            except DatasetError as exc:
                out.append((p, None, str(exc).split(": ", 1)[-1]))
        return out

    results = [r for chunk in _scan(listing.all_paths(), threads, work) for r in chunk]
    bad = [{"path": listing.rel(p), "reason": why} for p, h, why in results if h is None]
    if bad and spec.on_bad_file == "fail":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DatasetError(
            f"{listing.root / bad[0]['path']}: {bad[0]['reason']}{more}; fix or remove the chip(s), or set "
            "data.on_bad_file: skip to leave them out"
        )
    return {p: h for p, h, _ in results if h is not None}, bad


def _common_header(listing: Listing, headers: dict[Path, ChipHeader], named_by_option: bool) -> ChipHeader:
    """The header every chip shares; a one-line DatasetError naming the first chip that differs (in size,
    band count, dtype, or — unless `data.options.bands` names the bands — band descriptions)."""
    if not headers:
        raise DatasetError(f"data.root={listing.root}: none of the chips could be read")
    first_path, first = next(iter(headers.items()))
    if first.dtype not in CHIP_DTYPES:
        raise DatasetError(
            f"{first_path}: dtype {first.dtype} is not one of {', '.join(CHIP_DTYPES)}; convert the chips"
        )
    named: tuple[str | None, ...] | None = None
    named_at = first_path
    for path, h in headers.items():
        if (h.height, h.width, h.count, h.dtype) != (first.height, first.width, first.count, first.dtype):
            raise DatasetError(
                f"{path}: chip is {h.shape_text()} but {listing.rel(first_path)} is {first.shape_text()}; "
                "every chip of a raster_folder must have the same size, band count and dtype"
            )
        if named_by_option or all(d is None for d in h.descriptions):
            continue
        if named is None:
            named, named_at = h.descriptions, path
        elif h.descriptions != named:
            raise DatasetError(
                f"{path}: band descriptions {list(h.descriptions)} differ from those of "
                f"{listing.rel(named_at)} {list(named)}; name the bands with data.options.bands"
            )
    descriptions = named if named is not None else first.descriptions
    return ChipHeader(first.height, first.width, first.count, first.dtype, descriptions, first.nodata)


@dataclass(frozen=True)
class BandPlan:
    """Which file bands are read (0-based, in model order), their names and their nodata values."""

    indexes: list[int]
    names: list[str]
    file_names: list[str]
    names_from: str
    nodata: list[float | None]


def band_plan(opts: ChipOptions, header: ChipHeader) -> BandPlan:
    if opts.bands is not None:
        if len(opts.bands) != header.count:
            raise ConfigError(
                f"data.options.bands names {len(opts.bands)} band(s) but the chips have {header.count}"
            )
        names, source = list(opts.bands), "data.options.bands"
    elif all(d is not None for d in header.descriptions):
        names, source = [str(d) for d in header.descriptions], "band descriptions"
        if len(set(names)) != len(names):
            names, source = [f"band{i + 1}" for i in range(header.count)], "band numbers"
    else:
        names, source = [f"band{i + 1}" for i in range(header.count)], "band numbers"
    wanted = opts.select_bands or names
    missing = [b for b in wanted if b not in names]
    if missing:
        raise ConfigError(f"data.options.select_bands: {missing} not among the chips' bands {names}")
    indexes = [names.index(b) for b in wanted]
    nodata: list[float | None]
    if isinstance(opts.nodata, list):
        if len(opts.nodata) != header.count:
            raise ConfigError(
                f"data.options.nodata has {len(opts.nodata)} values for {header.count} file band(s)"
            )
        nodata = [None if v is None else float(v) for v in opts.nodata]
    elif opts.nodata is not None:
        nodata = [float(opts.nodata)] * header.count
    else:
        nodata = list(header.nodata)
    return BandPlan(indexes, list(wanted), names, source, [nodata[i] for i in indexes])


def preflight(spec: DataSpec) -> tuple[ChipOptions, Listing, ChipHeader, BandPlan, list[dict[str, str]]]:
    """Options, layout and every chip's header (no pixels): the chips agree in size, bands and dtype."""
    opts = parse_options(spec)
    listing = list_chips(spec)
    headers, bad = _headers(listing, spec, opts.threads)
    header = _common_header(listing, headers, opts.bands is not None)
    if bad:  # skipped chips: drop them from the listing
        keep = set(headers)
        for split in listing.paths:
            pairs = [
                (p, y) for p, y in zip(listing.paths[split], listing.labels[split], strict=True) if p in keep
            ]
            listing.paths[split] = [p for p, _ in pairs]
            listing.labels[split] = [y for _, y in pairs]
    return opts, listing, header, band_plan(opts, header), bad


# ---------------------------------------------------------------- pixels


def _read_split(paths: list[Path], bands: list[int], header: ChipHeader, threads: int) -> np.ndarray:
    out = np.empty((len(paths), len(bands), header.height, header.width), dtype=np.dtype(header.dtype))
    position = {p: i for i, p in enumerate(paths)}

    def work(chunk: list[Path]) -> None:
        for p in chunk:
            out[position[p]] = read_pixels(p, bands)

    _scan(paths, threads, work)
    return out


def _fill_nodata(
    arrays: dict[str, np.ndarray], pool: dict[str, np.ndarray], nodata: list[float | None]
) -> tuple[list[float] | None, list[int]]:
    """Replace nodata pixels in place with their band's mean over the training pool's valid pixels
    (`pool`: per split, which rows belong to it). Returns (fill values or None when nothing was masked,
    masked pixels per band)."""
    any_array = next(iter(arrays.values()))
    bands = any_array.shape[1]
    masked = np.zeros(bands, np.int64)
    if any_array.dtype.kind in "iu" and all(v is None for v in nodata):
        return None, masked.tolist()  # integers without a nodata value: nothing can be invalid
    total, count = np.zeros(bands, np.float64), np.zeros(bands, np.float64)
    step = max(1, (64 << 20) // max(1, any_array[:1].nbytes * 8))
    for name, x in arrays.items():
        for s in range(0, x.shape[0], step):
            part, rows = x[s : s + step], pool[name][s : s + step]
            bad = invalid_mask(part, nodata)
            masked += bad.sum(axis=(0, 2, 3))
            good = ~bad[rows]
            total += np.where(good, part[rows], 0).sum(axis=(0, 2, 3), dtype=np.float64)
            count += good.sum(axis=(0, 2, 3))
    if not masked.any():
        return None, masked.tolist()
    mean = np.divide(total, count, out=np.zeros(bands), where=count > 0)
    if any_array.dtype.kind in "iu":
        info = np.iinfo(any_array.dtype)
        mean = np.clip(np.round(mean), info.min, info.max)
    fill = mean.astype(any_array.dtype)
    for x in arrays.values():
        for s in range(0, x.shape[0], step):
            part = x[s : s + step]
            bad = invalid_mask(part, nodata)
            if bad.any():
                part[bad] = np.broadcast_to(fill[None, :, None, None], part.shape)[bad]
    return [float(v) for v in fill], masked.tolist()


def _pool_rows(listing: Listing, spec: DataSpec) -> dict[str, np.ndarray]:
    """Per split, the rows of the training pool (what the nodata fill may learn from)."""
    y = np.asarray(listing.labels["train"], dtype=np.int64)
    train = np.zeros(y.shape[0], dtype=bool)
    if "test" in listing.dirs:
        train[:] = True
    else:  # the one-folder layout: the common path carves the test split from these rows
        train[training_pool(y, spec)] = True
    out = {"train": train}
    for split in listing.paths:
        if split != "train":
            out[split] = np.zeros(len(listing.paths[split]), dtype=bool)
    return out


def band_names(spec: DataSpec) -> list[str]:
    """The chips' band names in input order (planning hook: headers only, no pixels read)."""
    return preflight(spec)[3].names


@register_dataset(KIND)
def load_raster_folder(spec: DataSpec) -> RawDataset:
    """Folders of multispectral chips (GeoTIFF or .npy), any band count, native dtype, nodata filled."""
    opts, listing, header, plan, bad = preflight(spec)
    arrays = {s: _read_split(p, plan.indexes, header, opts.threads) for s, p in listing.paths.items()}
    fill, masked = _fill_nodata(arrays, _pool_rows(listing, spec), plan.nodata)
    layout = "/ + ".join(listing.dirs) + "/" if "test" in listing.dirs else "one folder (test carved)"
    info: dict[str, Any] = {
        "source": "raster folder",
        "root": str(listing.root.resolve()),
        "layout": layout,
        "class_to_idx": {name: i for i, name in enumerate(listing.classes)},
        "files_listed": {s: len(p) for s, p in listing.paths.items()},
        "train_files_available": listing.available,
        "chip_size": [header.height, header.width],
        "dtype": header.dtype,
        "band_names": plan.names,
        "file_band_names": plan.file_names,
        "band_names_from": plan.names_from,
        "nodata": plan.nodata,
        "masked_pixels": masked,
        "fill_values": fill,
        "fill_note": "nodata pixels = band mean of the training pool's valid pixels (rounded for integers)",
        "normalisation": "per-band mean/std of the training split, in the chips' units (uint8: pixels/255)",
        "skipped_files": bad,
    }
    ids: dict[str, list[str] | None] = {s: [listing.rel(p) for p in ps] for s, ps in listing.paths.items()}
    labels = {s: np.asarray(y, dtype=np.int64) for s, y in listing.labels.items()}
    return RawDataset.from_splits(arrays, labels, ids, listing.classes, info)
