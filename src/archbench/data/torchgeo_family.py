"""The `torchgeo` dataset kind: one adapter for torchgeo's classification datasets (EuroSAT, UCMerced,
RESISC45, PatternNet, FireRisk, So2Sat, …), read from files already on disk; never downloads.

    data: {kind: torchgeo, root: data/eurosat, options: {name: EuroSAT, select_bands: [B04, B03, B02]}}

`options.name` is the class name in `torchgeo.datasets`; any of its datasets whose samples are
`{"image": C×H×W, "label": class index}` works. Each official split the class offers (`split=` train,
val, test) becomes archbench's split of that name; a class without splits gives one source from which
the common path carves test and validation. `select_bands` is handed to the class's own `bands=` argument
when it has one (torchgeo's band names), else picks channels by the band names below.

Band names: the dataset's `bands` (or `all_band_names`) when they match the channel count; else R, G, B for
three channels; else band1..bandN. Samples come as float tensors; values that are all integers in the
range of uint8, uint16 or int16 are stored in the narrowest of these (lossless: EuroSAT's reflectance is
uint16, as in its files), else float32. Normalisation is the common path's per-band mean/std of the
training split. `torchgeo` is an optional extra: `pip install 'archbench[geo]'`.
This module reads files only; it never trains and never writes files (torchgeo itself may extract an
archive it finds under data.root, as it always does).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.data.options import check_option_names
from archbench.data.registry import RawDataset, register_dataset
from archbench.data.root import data_root, planned_root
from archbench.util.errors import ConfigError, DatasetError

KIND = "torchgeo"
# The options this kind accepts (per-kind options are not declared in the registry yet).
OPTIONS = {KIND: frozenset({"name", "select_bands"})}
LAYOUTS = {
    KIND: "the on-disk layout torchgeo's dataset class (data.options.name) expects under <root>, e.g. "
    "EuroSAT: <root>/eurosat-{train,val,test}.txt and <root>/ds/images/remote_sensing/otherDatasets/"
    "sentinel_2/tif/<class>/<chip>.tif (or EuroSATallBands.zip); never downloaded"
}
INSTALL = "data.kind=torchgeo needs torchgeo: pip install 'archbench[geo]'"
_SPLITS = ("train", "val", "test")
# Narrowest first: the first dtype that holds every value of the dataset exactly is the one stored.
_INTEGER_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16))


def source_identity(spec: DataSpec) -> str:
    """The torchgeo release whose reading the prepared store holds (added to the source fingerprint)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"torchgeo {version('torchgeo')}"
    except PackageNotFoundError:
        return "torchgeo absent"


def _datasets_module() -> Any:
    """`torchgeo.datasets`, or a ConfigError saying how to install it (the one line a user sees)."""
    try:
        import torchgeo.datasets
    except ImportError:
        raise ConfigError(INSTALL) from None
    return torchgeo.datasets


def classification_names() -> list[str]:
    """torchgeo's image-folder classification datasets (others, e.g. So2Sat, are accepted by name)."""
    tgd = _datasets_module()
    base = tgd.NonGeoClassificationDataset
    return sorted(
        n
        for n in dir(tgd)
        if isinstance(getattr(tgd, n), type)
        and issubclass(getattr(tgd, n), base)
        and getattr(tgd, n) is not base
    )


def _options(spec: DataSpec) -> tuple[str, list[str] | None]:
    check_option_names(spec, OPTIONS[KIND])
    name = spec.options.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("data.options.name: give torchgeo's dataset class, e.g. name: EuroSAT")
    bands = spec.options.get("select_bands")
    if bands is not None and (not isinstance(bands, list) or not all(isinstance(b, str) for b in bands)):
        raise ConfigError(f"data.options.select_bands: expected a list of band names, got {bands!r}")
    return name, bands


def dataset_class(name: str) -> Any:
    """The torchgeo dataset class `name`; a ConfigError naming close matches when there is none."""
    tgd = _datasets_module()
    cls = getattr(tgd, name, None)
    if isinstance(cls, type) and issubclass(cls, tgd.NonGeoDataset) and not inspect.isabstract(cls):
        return cls
    import difflib

    known = classification_names()
    near = difflib.get_close_matches(name, sorted(set(known) | set(dir(tgd))), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise ConfigError(
        f"data.options.name: {name!r} is not a torchgeo dataset of image chips{hint} "
        f"(classification datasets: {', '.join(known)}, So2Sat, …)"
    )


def where_to_get(cls: Any, root: str) -> str:
    """What to put under `root` for `cls` and where to get it, from the class's own file attributes."""
    files: list[str] = []
    for attr in ("filename", "filenames", "zipfile", "split_filenames"):
        value = getattr(cls, attr, None)
        if isinstance(value, str):
            files.append(value)
        elif isinstance(value, dict):
            files.extend(str(v) for v in value.values())
        elif isinstance(value, list | tuple):
            files.extend(str(v) for v in value)
    base = getattr(cls, "base_dir", None) or getattr(cls, "directory", None)
    extracted = f" (or the archive already extracted: {base}/)" if isinstance(base, str) else ""
    url = getattr(cls, "url", None)
    src = f"; get them from {url}" if isinstance(url, str) else ""
    what = ", ".join(dict.fromkeys(files)) if files else "its files"
    return (
        f"put {what}{extracted} in {root}{src} (see torchgeo's documentation of {cls.__name__}); "
        "archbench never downloads"
    )


def _splits_of(cls: Any) -> list[str | None]:
    """The official splits the class offers (None: one source, no `split` argument)."""
    if "split" not in inspect.signature(cls.__init__).parameters:
        return [None]
    offered = getattr(cls, "splits", _SPLITS)
    return [s for s in _SPLITS if s in offered] or [None]


def _open(cls: Any, spec: DataSpec, split: str | None, bands: list[str] | None) -> Any:
    """One split of the dataset, never downloading; a DatasetError saying what to put where."""
    tgd = _datasets_module()
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"root": spec.root}
    if "download" in params:
        kwargs["download"] = False
    if split is not None:
        kwargs["split"] = split
    if bands is not None and "bands" in params:
        kwargs["bands"] = bands
    try:
        return cls(**kwargs)
    except tgd.DatasetNotFoundError as exc:
        raise DatasetError(
            f"data.kind=torchgeo name={cls.__name__}: not found under {spec.root}; "
            f"{where_to_get(cls, str(spec.root))}"
        ) from exc
    except FileNotFoundError as exc:  # e.g. a split file naming no chip of some class
        raise DatasetError(f"data.kind=torchgeo name={cls.__name__} under {spec.root}: {exc}") from exc
    except (AssertionError, ValueError, KeyError) as exc:
        raise ConfigError(f"data.options for torchgeo {cls.__name__}: {exc}") from exc


def check_files(spec: DataSpec) -> list[str]:
    """Planning check: torchgeo installed, a known dataset name, data.root present and the dataset's
    files found there (its train split is opened; no sample is read)."""
    try:
        name, bands = _options(spec)
        cls = dataset_class(name)
    except ConfigError as exc:
        return [str(exc)]
    root, problems = planned_root(spec, where_to_get(cls, spec.root or "<root>"))
    if root is None:
        return problems
    try:
        _open(cls, spec, _splits_of(cls)[0], bands)
    except (ConfigError, DatasetError) as exc:
        return [str(exc)]
    return []


def _band_names(ds: Any, channels: int) -> list[str]:
    for attr in ("bands", "all_band_names"):
        names = getattr(ds, attr, None)
        if isinstance(names, list | tuple) and len(names) == channels:
            return [str(b) for b in names]
    if channels == 3:
        return ["R", "G", "B"]
    return [f"band{i + 1}" for i in range(channels)]


def _narrowest(x: np.ndarray, current: np.dtype | None) -> np.dtype:
    """The narrowest dtype (not narrower than `current`'s place) holding every value of `x` exactly."""
    if current == np.float32 or not np.array_equal(x, np.round(x)):
        return np.dtype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    start = _INTEGER_DTYPES.index(current) if current in _INTEGER_DTYPES else 0
    for dt in _INTEGER_DTYPES[start:]:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.dtype(np.float32)


def _sample_id(ds: Any, i: int, root: str) -> str | None:
    """The sample's file relative to data.root (image-folder datasets list (path, class index))."""
    samples = getattr(ds, "samples", None)
    if isinstance(samples, list) and i < len(samples):
        return Path(os.path.relpath(str(samples[i][0]), root)).as_posix()
    return None


def _read_split(ds: Any, where: str, root: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Every sample of one split: (N×C×H×W in the narrowest exact dtype, labels, ids or None)."""
    n = len(ds)
    if n == 0:
        raise DatasetError(f"{where}: the split holds no samples")
    out: np.ndarray | None = None
    labels = np.empty(n, dtype=np.int64)
    ids: list[str | None] = []
    for i in range(n):
        sample = ds[i]
        image, label = sample.get("image"), sample.get("label")
        if image is None or label is None or image.ndim != 3 or label.ndim != 0:
            raise DatasetError(
                f"{where}: not a classification dataset (a sample must be an image C×H×W and one class "
                "index label)"
            )
        x = image.detach().cpu().numpy()
        if out is None:
            out = np.empty((n, *x.shape), dtype=_narrowest(x, None))
        elif x.shape != out.shape[1:]:
            raise DatasetError(
                f"{where}: sample {i} ({_sample_id(ds, i, root) or 'no file name'}) is {x.shape}, the "
                f"first is {out.shape[1:]}; every sample must have the same size and band count"
            )
        dtype = _narrowest(x, out.dtype)
        if dtype != out.dtype:
            out = out.astype(dtype)
        out[i] = x
        labels[i] = int(label)
        ids.append(_sample_id(ds, i, root))
    assert out is not None
    return out, labels, None if any(s is None for s in ids) else [str(s) for s in ids]


def _common_dtype(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every split in one dtype (the widest place any split needed)."""
    order = [*_INTEGER_DTYPES, np.dtype(np.float32)]
    widest = max((a.dtype for a in arrays.values()), key=order.index)
    return {s: a.astype(widest, copy=False) for s, a in arrays.items()}


@register_dataset(KIND)
def load_torchgeo(spec: DataSpec) -> RawDataset:
    """torchgeo's classification datasets (EuroSAT, UCMerced, RESISC45, …) with their official splits."""
    name, bands = _options(spec)
    cls = dataset_class(name)
    data_root(spec, lambda where: where_to_get(cls, where))
    arrays, labels, ids = {}, {}, {}
    first: Any = None
    for split in _splits_of(cls):
        ds = _open(cls, spec, split, bands)
        first = first if first is not None else ds
        key = split or "train"
        arrays[key], labels[key], ids[key] = _read_split(ds, f"torchgeo {name} ({key})", str(spec.root))
    arrays = _common_dtype(arrays)
    channels = int(arrays["train"].shape[1])
    band_names = _band_names(first, channels)
    if bands is not None and "bands" not in inspect.signature(cls.__init__).parameters:
        missing = [b for b in bands if b not in band_names]
        if missing:
            raise ConfigError(f"data.options.select_bands: {missing} not among {name}'s bands {band_names}")
        pick = [band_names.index(b) for b in bands]
        arrays = {s: np.ascontiguousarray(a[:, pick]) for s, a in arrays.items()}
        band_names = list(bands)
    classes = [str(c) for c in getattr(first, "classes", range(int(labels["train"].max()) + 1))]
    info: dict[str, Any] = {
        "source": f"torchgeo.datasets.{name}",
        "root": str(spec.root),
        "splits": {s: int(a.shape[0]) for s, a in arrays.items()},
        "dtype": str(arrays["train"].dtype),
        "band_names": band_names,
        "class_to_idx": {c: i for i, c in enumerate(classes)},
        "normalisation": "per-band mean/std of the training split, in the stored units (uint8: /255)",
    }
    if "test" in arrays:
        info["test_split"] = f"official ({name} test)"
    return RawDataset.from_splits(arrays, labels, ids, classes, info)
