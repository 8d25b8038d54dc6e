"""The `raster_patches` dataset kind: square patches of a satellite scene centred on labelled pixels.

Options (`data.options`), checked strictly before anything reads pixels:

    scene: scenes/nc_landsat7.yaml   # the scene file (relative to the sweep file; --set: to the working dir)
    patch_size: 9        # odd; the map predictor uses the same size (halo = patch_size // 2)
    per_class: 200       # training-pool centres per class (stratified, seeded); "all" keeps every one
    test_per_class: 200  # test centres per class; default: same as per_class
    split: block         # block: test = whole spatial blocks; random: stratified over pixels;
                         # block_kfold: spatial k-fold cross-validation, one fold per run
    block_size: 32       # block side in pixels (split: block, block_kfold)
    folds: 5             # split: block_kfold: the number of folds (at least 2)
    fold: 0              # split: block_kfold: this run's fold, 0..folds-1 (a grid axis runs them all)
    in_chans: 6          # optional: the band count the models expect; a mismatch is a config error
    window: 256          # read window side in pixels (memory is bounded by it)

`data.root`, when set, replaces the scene file's `root` (relative like `scene`). The test split
is `data.test_fraction` of the labelled pixels (random) or of the labelled pixels by whole blocks (block).
With `block_kfold` the blocks holding labelled pixels are dealt to `folds` folds (seeded by `split_seed`,
balanced by labelled-pixel count); fold `fold`'s blocks are the test split and `test_fraction` is unused.

Honest splits. With `block` (and each fold of `block_kfold`), every training centre lies more than 2·halo
pixels from any test block, so no training patch overlaps any test patch (a buffer on the training side).
The common path then carves the validation split from the training pool at random, so validation patches
may overlap training ones; only the test split is spatially independent. With `random`, neighbouring
overlapping patches sit on both sides of the line and test accuracy is optimistic; the record says which
split was used.

Nodata. A centre is sampled only where every band is valid. Inside a patch, nodata and off-grid pixels
are filled with the band's mean over the valid pixels of the training-pool patches (`info.fill_values`),
so after the common path's per-band standardisation (mean/std of the training split) they sit near zero
and every batch is finite. The map predictor fills with the same recorded values.
This module reads rasters only; it never trains and never writes files.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from archbench.config import DataSpec
from archbench.data.registry import RawDataset, register_dataset, stratified_split
from archbench.util.errors import ConfigError, DatasetError

# Not held in the prepared-data cache: the scene file names rasters elsewhere, so a listing of one folder
# cannot fingerprint the source; patches are bounded by _MAX_PATCH_BYTES and decoded in memory.
PREPARED_CACHE = False
_MAX_PATCH_BYTES = 4 << 30  # refuse sampling settings whose patch arrays would exceed 4 GiB
_BLOCK_SPLIT_TRIES = 64


class RasterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scene: str = Field(..., min_length=1, description="the scene YAML file")
    patch_size: int = Field(9, ge=1, le=65)
    per_class: int | Literal["all"] = "all"
    test_per_class: int | Literal["all"] | None = None
    split: Literal["random", "block", "block_kfold"] = "block"
    block_size: int = Field(32, ge=4, le=4096)
    folds: int = Field(5, ge=2, le=1000)
    fold: int | None = Field(None, ge=0)
    in_chans: int | None = Field(None, ge=1)
    window: int = Field(256, ge=16, le=8192)

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd so a patch has a centre pixel, found {v}")
        return v

    @field_validator("per_class", "test_per_class")
    @classmethod
    def _positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be at least 1 or 'all', found {v}")
        return v


def parse_options(spec: DataSpec) -> RasterOptions:
    try:
        opts = RasterOptions.model_validate(spec.options)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = "unknown option (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
            found = "" if err["type"] == "missing" else f"; found {err.get('input')!r}"
            msgs.append(f"data.options.{loc}: {msg}{found}")
        raise ConfigError("data.kind=raster_patches: " + "; ".join(msgs)) from None
    _check_folds(opts)
    return opts


def _check_folds(opts: RasterOptions) -> None:
    """`fold`/`folds` belong to `split: block_kfold`, which runs exactly one fold per run."""
    given = opts.model_fields_set & {"fold", "folds"}
    if opts.split != "block_kfold" and given:
        raise ConfigError(
            f"data.options.{sorted(given)[0]}: only used with split: block_kfold (split is {opts.split}); "
            "remove it or set data.options.split: block_kfold"
        )
    if opts.split != "block_kfold":
        return
    if opts.fold is None:
        raise ConfigError(
            "data.options.fold: split: block_kfold runs one fold per run; add the grid axis "
            f"data.options.fold: {list(range(opts.folds))} (under grid:) to run every fold"
        )
    if opts.fold >= opts.folds:
        raise ConfigError(
            f"data.options.fold: {opts.fold} is not a fold of folds: {opts.folds} (use 0..{opts.folds - 1})"
        )


def options_record(opts: RasterOptions) -> dict[str, Any]:
    """The options as a record states them (k-fold keys only for split: block_kfold: records of the other
    splits keep their fields)."""
    skip = None if opts.split == "block_kfold" else {"folds", "fold"}
    return opts.model_dump(mode="json", exclude=skip)


LAYOUTS = {
    "raster_patches": "a scene file (data.options.scene) naming single-band GeoTIFFs or one multiband "
    "GeoTIFF, a label raster on the same grid and the classes; files relative to the scene's root "
    "(data.root replaces it)"
}
OPTIONS = {"raster_patches": frozenset(RasterOptions.model_fields)}  # data.options keys (planning)


def preflight(spec: DataSpec) -> tuple[RasterOptions, Any]:
    """Check options, scene file and raster headers (cheap: no pixels). Returns (options, Scene)."""
    from archbench.data.scene import open_scene

    opts = parse_options(spec)
    scene = open_scene(opts.scene, root=spec.root)
    if opts.in_chans is not None and opts.in_chans != scene.num_bands:
        names = ", ".join(b.name for b in scene.bands)
        raise ConfigError(
            f"data.options.in_chans={opts.in_chans} but scene {scene.path} has {scene.num_bands} band(s) "
            f"({names}); fix the band list in the scene file or set in_chans: {scene.num_bands}"
        )
    return opts, scene


def band_names(spec: DataSpec) -> list[str]:
    """The scene's band names in input order, from its scene file (planning hook: no pixels read)."""
    return [b.name for b in preflight(spec)[1].bands]


# --- masks stored in records ---------------------------------------------------------------------------


def pack_mask(mask: np.ndarray) -> dict[str, Any]:
    """A boolean grid as a compact, JSON-safe dict (packbits, zlib, base64)."""
    data = base64.b64encode(zlib.compress(np.packbits(mask.ravel()).tobytes(), 9)).decode("ascii")
    return {
        "encoding": "packbits+zlib+base64",
        "shape": list(mask.shape),
        "count": int(mask.sum()),
        "data": data,
    }


def unpack_mask(packed: dict[str, Any]) -> np.ndarray:
    h, w = (int(v) for v in packed["shape"])
    bits = np.frombuffer(zlib.decompress(base64.b64decode(packed["data"])), dtype=np.uint8)
    return np.unpackbits(bits, count=h * w).astype(bool).reshape(h, w)


def block_mask(shape: tuple[int, int], block_size: int, blocks: list[int]) -> np.ndarray:
    """True on the pixels of the given block ids (row-major ids of block_size squares)."""
    h, w = shape
    nbr, nbc = -(-h // block_size), -(-w // block_size)
    small = np.zeros(nbr * nbc, dtype=bool)
    small[np.asarray(blocks, dtype=np.int64)] = True
    grid = np.repeat(np.repeat(small.reshape(nbr, nbc), block_size, 0), block_size, 1)
    return grid[:h, :w]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square (Chebyshev) dilation: True within `radius` pixels of a True pixel."""
    if radius <= 0:
        return mask.copy()
    from scipy.ndimage import maximum_filter

    return np.asarray(maximum_filter(mask.view(np.uint8), size=2 * radius + 1, mode="constant") > 0)


# --- splits --------------------------------------------------------------------------------------------


def _random_split(
    labels: np.ndarray, centres: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    idx = np.flatnonzero(centres.ravel())
    keep, held = stratified_split(labels.ravel()[idx], fraction, rng)
    train, test = np.zeros(labels.size, bool), np.zeros(labels.size, bool)
    train[idx[keep]], test[idx[held]] = True, True
    return train.reshape(labels.shape), test.reshape(labels.shape), {}


def _block_ids(centres: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The row-major ids of the blocks holding a centre, and how many centres each holds."""
    rr, cc = np.nonzero(centres)
    ids = (rr // block) * -(-centres.shape[1] // block) + cc // block
    return np.unique(ids, return_counts=True)


def _buffered_split(
    labels: np.ndarray, centres: np.ndarray, test_blocks: list[int], block: int, halo: int, n_cls: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Test = the centres inside the test blocks; training = the centres more than 2·halo pixels from every
    test block, so no training patch overlaps a test patch. Also the per-class counts of both."""
    test_area = block_mask(labels.shape, block, test_blocks)
    train = centres & ~dilate(test_area, 2 * halo)
    test = centres & test_area
    n_train, n_test = (np.bincount(labels[m], minlength=n_cls)[:n_cls] for m in (train, test))
    return train, test, n_train, n_test


def _block_split(
    labels: np.ndarray, centres: np.ndarray, fraction: float, block: int, halo: int, n_cls: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    """Whole blocks go to test until they hold `fraction` of the labelled pixels; training centres keep
    a 2·halo buffer from every test block. Retries seeded draws until every class is in training (and,
    if possible, in test)."""
    uniq, counts = _block_ids(centres, block)
    target = fraction * counts.sum()
    fallback = None
    for attempt in range(_BLOCK_SPLIT_TRIES):
        order = rng.permutation(uniq.size)
        cum = np.cumsum(counts[order])
        n_test = int(np.searchsorted(cum, target) + 1)
        n_test = min(max(n_test, 1), uniq.size - 1)
        test_blocks = sorted(int(b) for b in uniq[order[:n_test]])
        train, test, n_train, n_tst = _buffered_split(labels, centres, test_blocks, block, halo, n_cls)
        info = {"test_blocks": test_blocks, "attempt": attempt}
        if (n_train >= 2).all():
            if (n_tst >= 1).all():
                return train, test, info
            fallback = fallback or (train, test, info)
    if fallback is not None:
        return fallback
    raise DatasetError(
        f"split: block could not keep every class in training in {_BLOCK_SPLIT_TRIES} draws "
        f"(block_size={block}, test_fraction={fraction}); use a smaller block_size or split: random"
    )


def assign_folds(counts: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """The fold of each block, balanced by labelled-pixel count: greedy, largest block first to the fold
    holding the fewest pixels so far. The seeded shuffle decides between blocks of equal count (whole
    blocks usually are), the lower fold index between equally loaded folds."""
    order = rng.permutation(counts.size)
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(folds, dtype=np.int64)
    fold = np.empty(counts.size, dtype=np.int64)
    for b in order:
        fold[b] = f = int(np.argmin(load))
        load[f] += counts[b]
    return fold


def _kfold_split(
    labels: np.ndarray, centres: np.ndarray, opts: RasterOptions, halo: int, class_names: list[str],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    """Fold `opts.fold` of a spatial k-fold: its blocks are the test split, training keeps the `block`
    split's 2·halo buffer from them. The assignment depends only on the scene, block size and split_seed,
    so the runs of one sweep share it and their test splits partition the labelled blocks."""
    block, k, fold = opts.block_size, opts.folds, int(opts.fold or 0)
    uniq, counts = _block_ids(centres, block)
    if uniq.size < k:
        raise DatasetError(
            f"split: block_kfold: {uniq.size} block(s) of {block}px hold labelled pixels, fewer than "
            f"folds: {k}; use a smaller block_size or fewer folds"
        )
    fold_of = assign_folds(counts, k, rng)
    test_blocks = sorted(int(b) for b in uniq[fold_of == fold])
    train, test, n_train, _ = _buffered_split(labels, centres, test_blocks, block, halo, len(class_names))
    short = [name for name, n in zip(class_names, n_train, strict=True) if n < 2]
    if short:
        raise DatasetError(
            f"split: block_kfold fold {fold} of {k}: fewer than 2 training centres of class(es) "
            f"{', '.join(short)} outside the buffer; use a smaller block_size, fewer folds or another "
            "data.split_seed"
        )
    pixels = np.bincount(fold_of, weights=counts, minlength=k).astype(np.int64)
    info = {"test_blocks": test_blocks, "folds": k, "fold": fold, "fold_pixels": pixels.tolist()}
    return train, test, info


def _sample(
    labels: np.ndarray, mask: np.ndarray, per_class: int | str, n_cls: int, rng: np.random.Generator
) -> np.ndarray:
    """Flat pixel indices: up to `per_class` per class (or all), sorted."""
    idx = np.flatnonzero(mask.ravel())
    if per_class == "all":
        return idx
    y = labels.ravel()[idx]
    keep = []
    for c in range(n_cls):
        ci = idx[y == c]
        if ci.size > int(per_class):
            ci = rng.choice(ci, size=int(per_class), replace=False)
        keep.append(ci)
    return np.sort(np.concatenate(keep))


def _fill_nodata(train_x: np.ndarray, test_x: np.ndarray, num_bands: int) -> np.ndarray:
    """Fill nodata (NaN) in both splits, in place, with the band mean of the training pool's valid
    pixels; returns those fill values (recorded: the map fills with them too)."""
    with np.errstate(invalid="ignore"):
        fill = np.nanmean(train_x, axis=(0, 2, 3)) if train_x.size else np.zeros(num_bands)
    fill = np.where(np.isfinite(fill), fill, 0.0).astype(np.float32)
    for x in (train_x, test_x):
        bad = np.isnan(x)
        if bad.any():
            x[bad] = np.broadcast_to(fill[None, :, None, None], x.shape)[bad]
    return fill


def _centre_mask(shape: tuple[int, ...], flat_idx: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask.ravel()[flat_idx] = True
    return mask


def _split_description(opts: RasterOptions, fraction: float, split_info: dict[str, Any], halo: int) -> str:
    blocks = len(split_info.get("test_blocks", []))
    buffer = f"training centres > {2 * halo}px from any test block (no training patch overlaps a test patch)"
    if opts.split == "block":
        return (
            f"block: {opts.block_size}px blocks, {blocks} test blocks holding "
            f"~{fraction:.0%} of labelled pixels, {buffer}"
        )
    if opts.split == "block_kfold":
        pixels = split_info["fold_pixels"]
        share = pixels[split_info["fold"]] / max(sum(pixels), 1)
        return (
            f"block_kfold: fold {split_info['fold']} of {split_info['folds']}, {opts.block_size}px blocks, "
            f"{blocks} test blocks holding {share:.0%} of labelled pixels, {buffer}"
        )
    return f"random: stratified {fraction:.0%} of labelled pixels (patches overlap the split)"


def leakage_audit(
    shape: tuple[int, int], train_idx: np.ndarray, test_idx: np.ndarray, halo: int, opts: RasterOptions,
    transform: Any, crs: Any,
) -> dict[str, Any]:  # fmt: skip
    """What the split achieved, measured rather than promised: the smallest Euclidean distance between a
    training-pool centre (train + validation) and a test centre, in pixels and map units, and how many test
    centres fall inside a training patch (Chebyshev distance ≤ halo: 0 for `block` and `block_kfold`) or
    have a patch overlapping one (≤ 2·halo). Centres only: a pixel inside a patch but not a centre is not
    a sample."""
    from scipy.spatial import cKDTree

    w = shape[1]
    train = np.stack([train_idx // w, train_idx % w], 1).astype(np.float64)
    test = np.stack([test_idx // w, test_idx % w], 1).astype(np.float64)
    px, py = abs(float(transform.a)), abs(float(transform.e))
    units = getattr(crs, "linear_units", None) if crs is not None else None
    out: dict[str, Any] = {
        "split": opts.split,
        "block_size": None if opts.split == "random" else opts.block_size,
        "buffer_px": 0 if opts.split == "random" else 2 * halo,
        "patch_size": opts.patch_size,
        "halo": halo,
        "map_units": units or None,
        "distance": "Euclidean between patch centres: training pool (train + validation) to test",
        "min_distance_px": None,
        "min_distance_map_units": None,
        "test_within_patch_radius": 0,
        "test_patches_overlapping_training_patches": 0,
    }
    if opts.split == "block_kfold":
        out["folds"], out["fold"] = opts.folds, opts.fold
    if train.size == 0 or test.size == 0:
        return out
    d_px, _ = cKDTree(train).query(test, k=1)
    d_map, _ = cKDTree(train[:, ::-1] * [px, py]).query(test[:, ::-1] * [px, py], k=1)
    cheb, _ = cKDTree(train).query(test, k=1, p=np.inf)
    out["min_distance_px"] = float(d_px.min())
    out["min_distance_map_units"] = float(d_map.min())
    out["test_within_patch_radius"] = int((cheb <= halo).sum())
    out["test_patches_overlapping_training_patches"] = int((cheb <= 2 * halo).sum())
    return out


def sample_centres(
    spec: DataSpec, opts: RasterOptions, scene: Any, reader: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """The patch centres of a scene: (class index grid, flat pixel indices of the training pool and of the
    test split, the split's provenance), by the split and sampling options. Shared by the loader and the
    chip export, so exported chips are the patches a run would train and test on."""
    from archbench.data.scene import UNLABELLED

    n_cls, halo = len(scene.class_names), opts.patch_size // 2
    rng = np.random.default_rng(spec.split_seed)
    labels = reader.label_grid(window=max(opts.window, 1024))
    centres = (labels != UNLABELLED) & reader.valid_grid(window=max(opts.window, 1024))
    if not centres.any():
        raise DatasetError(f"{scene.labels.path}: no labelled pixel where every band is valid")
    if opts.split == "block":
        train_m, test_m, split_info = _block_split(
            labels, centres, spec.test_fraction, opts.block_size, halo, n_cls, rng
        )
    elif opts.split == "block_kfold":
        train_m, test_m, split_info = _kfold_split(labels, centres, opts, halo, list(scene.class_names), rng)
    else:
        train_m, test_m, split_info = _random_split(labels, centres, spec.test_fraction, rng)
    train_idx = _sample(labels, train_m, opts.per_class, n_cls, rng)
    test_pc = opts.test_per_class if opts.test_per_class is not None else opts.per_class
    test_idx = _sample(labels, test_m, test_pc, n_cls, rng)
    return labels, train_idx, test_idx, split_info


@register_dataset("raster_patches")
def load_raster_patches(spec: DataSpec) -> RawDataset:
    """Square patches of a multiband satellite scene centred on labelled pixels (block, k-fold or random)."""
    from archbench.data.scene import SceneReader, gather_patches

    opts, scene = preflight(spec)
    n_cls, halo = len(scene.class_names), opts.patch_size // 2
    with SceneReader(scene) as reader:
        labels, train_idx, test_idx, split_info = sample_centres(spec, opts, scene, reader)
        n_bytes = (train_idx.size + test_idx.size) * scene.num_bands * opts.patch_size**2 * 4
        if n_bytes > _MAX_PATCH_BYTES:
            raise DatasetError(
                f"data.options: {train_idx.size + test_idx.size} patches of {opts.patch_size}px would take "
                f"{n_bytes / 2**30:.1f} GiB; set data.options.per_class / test_per_class"
            )
        w = scene.grid.width
        train_x = gather_patches(reader, train_idx // w, train_idx % w, opts.patch_size, opts.window)
        test_x = gather_patches(reader, test_idx // w, test_idx % w, opts.patch_size, opts.window)
    fill = _fill_nodata(train_x, test_x, scene.num_bands)
    info: dict[str, Any] = {
        "source": "raster_patches",
        "scene": {**scene.provenance(), "root": str(Path(spec.root).resolve()) if spec.root else None},
        "options": options_record(opts),
        "patch_size": opts.patch_size,
        "halo": halo,
        "split": opts.split,
        "split_description": _split_description(opts, spec.test_fraction, split_info, halo),
        "split_seed": spec.split_seed,
        "block_size": None if opts.split == "random" else opts.block_size,
        **split_info,
        "class_values": list(scene.class_values),
        "class_to_idx": {n: i for i, n in enumerate(scene.class_names)},
        "band_names": [b.name for b in scene.bands],
        "fill_values": [float(v) for v in fill],
        "fill_note": "nodata/off-grid pixels inside patches = band mean of the training pool's valid pixels",
        "train_pool_counts": np.bincount(labels.ravel()[train_idx], minlength=n_cls).tolist(),
        "test_counts": np.bincount(labels.ravel()[test_idx], minlength=n_cls).tolist(),
        # Centres of every training-pool patch (train + the val split carved from it): the map scores
        # on pixels never used in training exclude every pixel these patches cover.
        "train_pixels": pack_mask(_centre_mask(labels.shape, train_idx)),
        # Centres of the test split, in the order of the test arrays (row-major).
        "test_pixels": pack_mask(_centre_mask(labels.shape, test_idx)),
        "leakage_audit": leakage_audit(
            labels.shape, train_idx, test_idx, halo, opts, scene.grid.transform, scene.grid.crs
        ),
    }
    return RawDataset(
        train_x=train_x,
        train_y=labels.ravel()[train_idx].astype(np.int64),
        class_names=list(scene.class_names),
        test_x=test_x,
        test_y=labels.ravel()[test_idx].astype(np.int64),
        info=info,
    )
