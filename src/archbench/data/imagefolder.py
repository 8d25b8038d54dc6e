"""Image folders (one sub-folder per class): lists, preflights and decodes every file; never trains.

Layouts (`data.root`):

* `root/train/<class>/…` and `root/test/<class>/…` (or `root/val/` when there is no `test/`): the official
  split; both must hold the same class folders.
* `root/<class>/…`: one folder; the common path then carves a stratified test split from it.

Classes are the sub-folder names sorted by name (torchvision `ImageFolder` order); files are found
recursively in torchvision's order. Entries whose name starts with `.` (`.ipynb_checkpoints`, `.DS_Store`)
are never classes or images; only files ending in .jpg .jpeg .png .bmp .gif .tif .tiff .webp (any case)
are read. A class folder without images is an error naming the class.

`data.limit_per_class` is applied while listing the official train split (the first N files per class in
sorted order), so a 3,000-per-class folder decodes only N per class. In the one-folder layout every file is
read: the test split is carved from the whole folder first, as for every other family.

Preflight: before anything trains, every listed file is opened (header only) and its pixel count checked
against `data.max_image_pixels` before decoding (decompression bombs are never decoded), then decoded in
full (truncated files are not accepted). Empty files, unreadable or truncated images and bombs are "bad
files": `data.on_bad_file: fail` raises one error listing all of them; `skip` leaves them out and lists them
in `info["skipped_files"]` as {path, reason} with paths relative to `root`.

Pixels: if every image is grayscale (PIL mode L or 1, or 16-bit) the dataset has 1 channel, otherwise
everything is converted to RGB (as torchvision's loader does: alpha is dropped, palettes expanded). Deep
images are never clipped: 16-bit grayscale PNG/TIFF (PIL modes I;16*) are scaled by their bit depth into the
uint8 range by their high byte (v >> 8, what Pillow does for 16-bit RGB), and the record's data info says
how many (`deep_images`); 32-bit integer or float images (modes I, F) have no agreed range, so they are bad
files naming their mode. Images of another size
are resized (bilinear, aspect ratio not kept) to `data.options.image_size` (an int or [height, width]) when
given, else to the most common size among all listed images (ties: the larger area). Option `threads`
(default 2) sets the number of decoding threads.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.data.registry import RawDataset, register_dataset
from archbench.data.root import data_root
from archbench.util.errors import ConfigError, DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Formats PIL may identify a file as. Restricting them keeps content sniffing from handing a renamed file to
# a plugin we never meant to run (EPS, for instance, calls Ghostscript). Camera JPEGs (MPO) open as JPEG.
_PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
_GRAY_MODES = frozenset({"L", "1"})
SCALED_16BIT = "16-bit grayscale scaled to 8 bits by its high byte (v >> 8)"
_OPTIONS = {"image_size", "threads"}
OPTIONS = {"imagefolder": frozenset(_OPTIONS)}  # data.options keys (checked at planning)
_CHUNK = 256  # files per thread-pool task: keeps per-future overhead negligible for tiny images


class BadImageFilesError(DatasetError):
    """Preflight found undecodable, empty or oversized images and `data.on_bad_file` is `fail`."""

    def __init__(self, message: str, bad_files: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.bad_files = bad_files


@dataclass
class _Listing:
    """The files of one split: absolute paths, labels, and paths relative to the dataset root."""

    paths: list[Path]
    labels: list[int]
    rel: list[str]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not _is_hidden(e.name))


def _image_files(class_dir: Path) -> list[Path]:
    """Image files under `class_dir`, recursively, in torchvision ImageFolder order; hidden ones skipped."""
    walked = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]  # prune while walking: never descend
        walked.append((dirpath, filenames))
    found: list[Path] = []
    for dirpath, filenames in sorted(walked):
        for name in sorted(filenames):
            if not _is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found


def _list_split(
    root: Path, folder: Path, classes: list[str], limit: int | None, split: str
) -> tuple[_Listing, dict[str, int]]:
    listing = _Listing([], [], [])
    available: dict[str, int] = {}
    for idx, name in enumerate(classes):
        files = _image_files(folder / name)
        available[name] = len(files)
        if not files:
            raise DatasetError(
                f"{folder / name}: class folder '{name}' ({split}) holds no image files "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        if limit is not None:
            files = files[:limit]
        listing.paths.extend(files)
        listing.labels.extend([idx] * len(files))
        listing.rel.extend(p.relative_to(root).as_posix() for p in files)
    return listing, available


def _decode_one(path: Path, max_pixels: int, formats: tuple[str, ...]) -> tuple[np.ndarray | None, str]:
    """Open, size-check, then decode one file. Returns (H×W or H×W×3 uint8 array, "" or how it was scaled)
    or (None, reason)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path, formats=formats) as im:  # lazy: reads the header only
            width, height = im.size
            if width * height > max_pixels:
                return None, (
                    f"{width}x{height} = {width * height} pixels exceeds data.max_image_pixels={max_pixels} "
                    "(decompression-bomb guard); not decoded"
                )
            if im.mode.startswith("I;16"):  # 16-bit grayscale: convert() would clip at 255
                im.load()
                return (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8), SCALED_16BIT
            if im.mode in ("I", "F"):
                kind = "32-bit integer" if im.mode == "I" else "float"
                return None, f"mode {im.mode} ({kind}) pixels have no 8-bit range; convert to 8- or 16-bit"
            target = "L" if im.mode in _GRAY_MODES else "RGB"
            if im.mode == target:
                im.load()
                return np.asarray(im, dtype=np.uint8), ""
            return np.asarray(im.convert(target), dtype=np.uint8), ""
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"decompression-bomb guard: over data.max_image_pixels={max_pixels}; not decoded ({exc})"
    except UnidentifiedImageError:
        return None, f"not a readable image (content is none of {', '.join(formats)})"
    except Exception as exc:  # any decoder failure on a hostile file makes it a bad file
        return None, f"cannot decode: {type(exc).__name__}: {exc}"


@contextmanager
def _pil_guards(max_pixels: int) -> Iterator[None]:
    """Process-wide PIL settings for the scan, restored after: PIL's own bomb limit follows
    data.max_image_pixels (its warning becomes an error), and truncated images are never loaded."""
    from PIL import Image, ImageFile

    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _decode_all(paths: Sequence[Path], max_pixels: int, threads: int) -> list[tuple[np.ndarray | None, str]]:
    from PIL import Image

    Image.init()  # register every plugin once, here, rather than racily from the worker threads
    formats = tuple(f for f in _PIL_FORMATS if f in Image.OPEN)  # e.g. WEBP only when Pillow has it

    def work(chunk: Sequence[Path]) -> list[tuple[np.ndarray | None, str]]:
        return [_decode_one(p, max_pixels, formats) for p in chunk]

    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with _pil_guards(max_pixels):
        if threads <= 1 or len(chunks) <= 1:
            results = [work(c) for c in chunks]
        else:
            # PIL releases the GIL while decoding; two threads roughly halve the wall time on 2 cores.
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(work, chunks))
    return [r for chunk in results for r in chunk]


def _parse_image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ConfigError(
        f"data.options.image_size: expected an int or [height, width] in 1..8192, got {value!r}"
    )


def _common_size(arrays: Sequence[np.ndarray]) -> tuple[int, int]:
    counts = Counter((int(a.shape[0]), int(a.shape[1])) for a in arrays)
    return max(counts, key=lambda hw: (counts[hw], hw[0] * hw[1], hw))


def _to_chw(arr: np.ndarray, size: tuple[int, int], channels: int) -> tuple[np.ndarray, bool]:
    """One decoded image → C×H×W uint8 at `size`; returns whether it was resized."""
    resized = (arr.shape[0], arr.shape[1]) != size
    if resized:
        from PIL import Image

        arr = np.asarray(Image.fromarray(arr).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    if arr.ndim == 2:
        arr = arr[None, :, :]
        if channels == 3:  # a grayscale image in an RGB dataset: replicate, as PIL's convert("RGB") does
            arr = np.repeat(arr, 3, axis=0)
    else:
        arr = arr.transpose(2, 0, 1)
    return arr, resized


def _resolve_layout(spec: DataSpec) -> tuple[Path, Path, Path | None]:
    """Returns (root, train folder, test folder or None)."""
    how = (
        "Point data.root at a folder with train/<class>/ and test/<class>/ sub-folders, or at one folder of "
        "class sub-folders (a stratified test split is then carved out). archbench never downloads."
    )
    root = data_root(spec, lambda _where: how)
    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        return root, train_dir, test_dir
    if train_dir.is_dir() or test_dir is not None:
        present = "train/" if train_dir.is_dir() else f"{test_dir.name}/" if test_dir else ""
        raise DatasetError(
            f"data.root={root}: found {present} but not its partner (needs both train/ and test/ or val/). "
            f"Add the missing split with the same class folders, or point data.root at {root / present} to "
            "use it as one folder and carve a test split from it."
        )
    return root, root, None


LAYOUTS = {
    "imagefolder": "<root>/train/<class>/<image> and <root>/test/<class>/<image> (or val/ for test), or "
    "<root>/<class>/<image> (one folder; a stratified test split is carved out); images: "
    + " ".join(sorted(IMAGE_EXTENSIONS))
}


def _has_image(class_dir: Path) -> bool:
    for _dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        if any(not _is_hidden(n) and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS for n in filenames):
            return True
    return False


def _class_mismatch(root: Path, train_dir: Path, test_dir: Path, classes: list[str]) -> str | None:
    """The line saying how the test split's class folders differ from the train split's (None: same)."""
    test_classes = _class_folders(test_dir)
    if test_classes == classes:
        return None
    only_train = sorted(set(classes) - set(test_classes))
    only_test = sorted(set(test_classes) - set(classes))
    return (
        f"data.root={root}: class folders of {train_dir.name}/ and {test_dir.name}/ differ "
        f"(only in {train_dir.name}/: {only_train or 'none'}; "
        f"only in {test_dir.name}/: {only_test or 'none'})"
    )


def check_files(spec: DataSpec) -> list[str]:
    """Planning check: the layout (splits, class folders, at least one image per class) without opening
    any image; one line per problem, each naming the expected layout."""
    expected = f"expected layout: {LAYOUTS['imagefolder']}"
    try:
        root, train_dir, test_dir = _resolve_layout(spec)
    except DatasetError as exc:
        return [f"{' '.join(str(exc).split('. ')[0].split())}; {expected}"]
    classes = _class_folders(train_dir)
    if not classes:
        return [f"data.root={root}: {train_dir} has no class sub-folders; {expected}"]
    problems = []
    mismatch = _class_mismatch(root, train_dir, test_dir, classes) if test_dir is not None else None
    if mismatch is not None:
        problems.append(f"{mismatch}; {expected}")
    for split_dir in [train_dir] + ([test_dir] if test_dir is not None else []):
        empty = [c for c in _class_folders(split_dir) if not _has_image(split_dir / c)]
        if empty:
            problems.append(
                f"data.root={root}: class folder(s) without images in {split_dir}: {', '.join(empty)}; "
                f"{expected}"
            )
    return problems


def _options(spec: DataSpec) -> tuple[tuple[int, int] | None, int]:
    """(`image_size`, `threads`) from data.options, checked."""
    unknown = sorted(set(spec.options) - _OPTIONS)
    if unknown:
        raise ConfigError(
            f"data.options: unknown option(s) {', '.join(unknown)} for data.kind=imagefolder "
            f"(known: {', '.join(sorted(_OPTIONS))})"
        )
    image_size = _parse_image_size(spec.options.get("image_size"))
    threads = spec.options.get("threads", 2)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 64:
        raise ConfigError(f"data.options.threads: expected an int in 1..64, got {threads!r}")
    return image_size, threads


def _classes(root: Path, train_dir: Path, test_dir: Path | None) -> list[str]:
    """The class names: the train split's sub-folders, which an official test split must match."""
    classes = _class_folders(train_dir)
    if not classes:
        raise DatasetError(
            f"{train_dir}: no class sub-folders (hidden folders are ignored); expected one folder per class"
        )
    mismatch = _class_mismatch(root, train_dir, test_dir, classes) if test_dir is not None else None
    if mismatch is not None:
        raise DatasetError(mismatch)
    return classes


def _decode_listed(
    root: Path, splits: dict[str, _Listing], spec: DataSpec, threads: int
) -> tuple[list[tuple[np.ndarray | None, str]], list[dict[str, str]]]:
    """Preflight and decode every listed file. Returns (per file: array or None and why, the bad files);
    raises BadImageFilesError when there are bad files and `data.on_bad_file` is `fail`."""
    all_paths = [p for s in splits.values() for p in s.paths]
    decoded = _decode_all(all_paths, spec.max_image_pixels, threads)
    all_rel = [r for s in splits.values() for r in s.rel]
    bad = [
        {"path": rel, "reason": reason}
        for rel, (arr, reason) in zip(all_rel, decoded, strict=True)
        if arr is None
    ]
    if bad and spec.on_bad_file == "fail":
        lines = "\n".join(f"  {root / b['path']}: {b['reason']}" for b in bad)
        raise BadImageFilesError(
            f"{len(bad)} bad image file(s) under {root} (data.on_bad_file=fail; nothing was trained):\n"
            f"{lines}\nFix or remove them, or set data.on_bad_file: skip to leave them out (they are then "
            "listed in the run record).",
            bad,
        )
    if not any(a is not None for a, _ in decoded):
        raise DatasetError(f"data.root={root}: none of the {len(all_paths)} image files could be read")
    return decoded, bad


@dataclass
class _Decoded:
    """The decoded splits as arrays at one size and channel count, with each kept file's name."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    ids: dict[str, list[str]]
    resized: int


def _stack(
    root: Path,
    splits: dict[str, _Listing],
    decoded: list[tuple[np.ndarray | None, str]],
    classes: list[str],
    shape: tuple[int, tuple[int, int]],
    bad: list[dict[str, str]],
) -> _Decoded:
    """Each split's good images as one C×H×W uint8 array (`shape`: channels, size) and int64 labels; a
    class whose every image in a split is bad is an error."""
    channels, size = shape
    out = _Decoded({}, {}, 0)
    offset = 0
    for split, listing in splits.items():
        results = decoded[offset : offset + len(listing.paths)]
        offset += len(listing.paths)
        keep = [i for i, (a, _) in enumerate(results) if a is not None]
        x = np.empty((len(keep), channels, *size), dtype=np.uint8)
        for j, i in enumerate(keep):
            arr = results[i][0]
            assert arr is not None
            x[j], resized = _to_chw(arr, size, channels)
            out.resized += resized
        y = np.asarray([listing.labels[i] for i in keep], dtype=np.int64)
        emptied = [classes[c] for c in np.flatnonzero(np.bincount(y, minlength=len(classes)) == 0)]
        if emptied:
            raise DatasetError(
                f"data.root={root}: every {split} image of class(es) {', '.join(emptied)} is bad "
                f"({len(bad)} bad file(s) in all, first: {bad[0]['path']}: {bad[0]['reason']}); "
                "fix those files or remove the class"
            )
        out.arrays[split] = (x, y)
        out.ids[split] = [listing.rel[i] for i in keep]
    return out


@register_dataset("imagefolder")
def load_imagefolder(spec: DataSpec) -> RawDataset:
    """Folder of class sub-folders (see the module docstring for layouts, preflight and resizing)."""
    image_size, threads = _options(spec)
    root, train_dir, test_dir = _resolve_layout(spec)
    classes = _classes(root, train_dir, test_dir)
    # The limit is applied at listing only for an official train split; see the module docstring.
    limit = spec.limit_per_class if test_dir is not None else None
    train, train_available = _list_split(root, train_dir, classes, limit, "train")
    splits = {"train": train}
    if test_dir is not None:
        splits["test"], _ = _list_split(root, test_dir, classes, None, "test")

    decoded, bad = _decode_listed(root, splits, spec, threads)
    good = [a for a, _ in decoded if a is not None]
    size = image_size or _common_size(good)
    channels = 1 if all(a.ndim == 2 for a in good) else 3
    out = _stack(root, splits, decoded, classes, (channels, size), bad)

    info: dict[str, Any] = {
        "source": "image folder",
        "root": str(root.resolve()),
        "layout": f"{train_dir.name}/ + {test_dir.name}/"
        if test_dir is not None
        else "one folder (test carved)",
        "class_to_idx": {name: i for i, name in enumerate(classes)},
        "files_listed": {s: len(listing.paths) for s, listing in splits.items()},
        "train_files_available": sum(train_available.values()),
        "image_size": list(size),
        "channels": channels,
        "resized": int(out.resized),
        "skipped_files": bad,
    }
    deep = sum(1 for a, note in decoded if a is not None and note == SCALED_16BIT)
    if deep:
        info["deep_images"] = {"files": deep, "scaling": SCALED_16BIT}
    test_x, test_y = out.arrays.get("test", (None, None))
    train_x, train_y = out.arrays["train"]
    return RawDataset(
        train_x,
        train_y,
        classes,
        test_x,
        test_y,
        info=info,
        train_ids=out.ids["train"],
        test_ids=out.ids.get("test"),
    )


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in the order and with the filters a class folder is read
    (for prediction on a folder of new images)."""
    return _image_files(Path(folder))


def conform_image(arr: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """One decoded image (H×W grayscale or H×W×3 RGB uint8, as PIL gives it) → C×H×W uint8 at `size`, as
    a dataset's images are stored; an RGB image for a 1-channel dataset is converted to L."""
    from PIL import Image

    if channels == 1 and arr.ndim == 3:
        arr = np.asarray(Image.fromarray(arr).convert("L"))
    return _to_chw(arr, size, channels)[0]


def decode_images(
    paths: Sequence[Path], size: tuple[int, int], channels: int, max_pixels: int, threads: int = 2
) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Files → N×C×H×W uint8 exactly as this family decodes a dataset's images (same guards, mode
    conversion and bilinear resize to `size`), for prediction. Returns the arrays and paths of the
    readable files, and (path, reason) for the others."""
    arrays, kept, bad = [], [], []
    for path, (arr, reason) in zip(paths, _decode_all(paths, max_pixels, threads), strict=True):
        if arr is None:
            bad.append((path, reason))
            continue
        arrays.append(conform_image(arr, size, channels))
        kept.append(path)
    x = np.stack(arrays) if arrays else np.empty((0, channels, *size), dtype=np.uint8)
    return x, kept, bad
