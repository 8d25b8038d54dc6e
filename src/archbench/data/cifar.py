"""CIFAR-10 / CIFAR-100 from the original python pickle batches; reads and validates, never downloads.

Layout (what `tar -xzf cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` produces), with `data.root`
pointing at the extracted folder or at its parent:

    cifar-10-batches-py/  data_batch_1 … data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Batches are read with the restricted unpickler (`safe_unpickle`): a batch naming any global other than
what numpy arrays need is refused and nothing in it runs. Every batch is checked: `data` must be an N×3072
uint8 array, the labels a sequence of N integers in range.

Options (`data.options`): cifar100 accepts `label_type: fine | coarse` (default fine: 100 classes;
coarse: the 20 superclasses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.data.registry import RawDataset, register_dataset
from archbench.data.root import data_root, planned_root
from archbench.data.safe_unpickle import safe_load_pickle
from archbench.util.errors import ConfigError, DatasetError


@dataclass(frozen=True)
class _Layout:
    kind: str
    title: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    num_classes: dict[str, int]  # label_type -> number of classes


_CIFAR10 = _Layout(
    kind="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    num_classes={"fine": 10},
)
_CIFAR100 = _Layout(
    kind="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    num_classes={"fine": 100, "coarse": 20},
)
# Keys inside the batches / meta file for each label type.
_LABEL_KEYS = {"cifar10": ("labels", "label_names"), "fine": ("fine_labels", "fine_label_names")}
_COARSE_KEYS = ("coarse_labels", "coarse_label_names")


def _how_to_provide(layout: _Layout, root: Path) -> str:
    return (
        f"Download {layout.archive} from https://www.cs.toronto.edu/~kriz/cifar.html on a machine with "
        f"network access and extract it with `tar -xzf {layout.archive} -C {root}` so that "
        f"{root / layout.folder / layout.train_files[0]} exists (archbench never downloads). "
        "A folder of images (one sub-folder per class) loads with data.kind: imagefolder instead."
    )


def _layout_text(layout: _Layout) -> str:
    files = (*layout.train_files, layout.test_file, layout.meta_file)
    return (
        f"<root>/{layout.folder}/{{{', '.join(files)}}} (what `tar -xzf {layout.archive}` makes; "
        f"data.root may also be {layout.folder}/ itself)"
    )


LAYOUTS = {layout.kind: _layout_text(layout) for layout in (_CIFAR10, _CIFAR100)}
OPTIONS = {"cifar10": frozenset(), "cifar100": frozenset({"label_type"})}  # data.options keys


def check_files(spec: DataSpec) -> list[str]:
    """Planning check: one line per missing folder or batch file, each naming the expected layout."""
    layout = _CIFAR10 if spec.kind == "cifar10" else _CIFAR100
    expected = f"expected layout: {_layout_text(layout)}"
    root, problems = planned_root(spec, expected)
    if root is None:
        return problems
    folder = next(
        (
            f
            for f in (root / layout.folder, root)
            if (f / layout.meta_file).is_file() or (f / layout.train_files[0]).is_file()
        ),
        None,
    )
    if folder is None:
        where = f"{root / layout.folder} or {root}"
        return [f"data.root={root}: no {layout.title} batches in {where}; {expected}"]
    files = (*layout.train_files, layout.test_file, layout.meta_file)
    return [
        f"data.root={root}: {folder / name} is missing; {expected}"
        for name in files
        if not (folder / name).is_file()
    ]


def _resolve_folder(layout: _Layout, spec: DataSpec) -> Path:
    root = data_root(
        spec,
        lambda where: _how_to_provide(layout, Path(where)),
        needs=f": the folder that holds {layout.folder}/ (or that folder itself)",
    )
    for folder in (root / layout.folder, root):
        if (folder / layout.meta_file).is_file() or (folder / layout.train_files[0]).is_file():
            return folder
    raise DatasetError(
        f"data.root={root}: no {layout.title} batches found; expected "
        f"{root / layout.folder / layout.train_files[0]} or {root / layout.train_files[0]}. "
        f"{_how_to_provide(layout, root)}"
    )


def _text_keys(obj: Any, path: Path, what: str) -> dict[str, Any]:
    """Batches are Python-2 pickles loaded with encoding='bytes': keys are bytes. Accept str keys too."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict in a {what} file, found {type(obj).__name__}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out[key.decode("latin1") if isinstance(key, bytes) else str(key)] = value
    return out


def _names(meta: dict[str, Any], key: str, path: Path, expected: int) -> list[str]:
    if key not in meta:
        raise DatasetError(f"{path}: meta file has no '{key}' entry (keys: {', '.join(sorted(meta))})")
    raw = meta[key]
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw]
    if len(names) != expected:
        raise DatasetError(f"{path}: '{key}' lists {len(names)} class names, expected {expected}")
    return names


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: batch file is missing")
    batch = _text_keys(safe_load_pickle(path), path, "batch")
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetError(f"{path}: batch has no '{key}' entry (keys: {', '.join(sorted(batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DatasetError(f"{path}: 'data' must be an N×3072 uint8 array (32×32×3 per row), found {desc}")
    try:
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: '{label_key}' is not a list of integers ({exc})") from exc
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: '{label_key}' must be a flat list of integers, found {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(
            f"{path}: {data.shape[0]} image rows but {labels.shape[0]} labels in '{label_key}'; "
            "the file is inconsistent — replace it with a fresh copy"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DatasetError(
            f"{path}: {bad.size} label(s) outside [0, {num_classes}) in '{label_key}' "
            f"(first at rows {', '.join(str(int(i)) for i in bad[:5])})"
        )
    # Each row is 1024 red, 1024 green, 1024 blue values, row-major: exactly C×H×W.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _load(layout: _Layout, spec: DataSpec) -> RawDataset:
    known = OPTIONS[layout.kind]
    unknown = sorted(set(spec.options) - known)
    if unknown:
        raise ConfigError(
            f"data.options: unknown option(s) {', '.join(unknown)} for data.kind={layout.kind} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    label_type = str(spec.options.get("label_type", "fine"))
    if label_type not in layout.num_classes:
        raise ConfigError(
            f"data.options.label_type: '{label_type}' must be one of {', '.join(layout.num_classes)}"
        )
    if layout.kind == "cifar10":
        label_key, names_key = _LABEL_KEYS["cifar10"]
    else:
        label_key, names_key = _LABEL_KEYS["fine"] if label_type == "fine" else _COARSE_KEYS
    num_classes = layout.num_classes[label_type]

    folder = _resolve_folder(layout, spec)
    missing = [
        f for f in (*layout.train_files, layout.test_file, layout.meta_file) if not (folder / f).is_file()
    ]
    if missing:
        raise DatasetError(
            f"{folder}: missing {layout.title} file(s): {', '.join(str(folder / f) for f in missing)}. "
            f"{_how_to_provide(layout, folder.parent if folder.name == layout.folder else folder)}"
        )
    meta_path = folder / layout.meta_file
    class_names = _names(
        _text_keys(safe_load_pickle(meta_path), meta_path, "meta"), names_key, meta_path, num_classes
    )

    parts = [_read_batch(folder / f, label_key, num_classes) for f in layout.train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_batch(folder / layout.test_file, label_key, num_classes)
    return RawDataset(
        train_x=train_x,
        train_y=train_y,
        class_names=class_names,
        test_x=test_x,
        test_y=test_y,
        info={
            "source": f"{layout.title} python batches",
            "root": str(folder.resolve()),
            "files": [*layout.train_files, layout.test_file, layout.meta_file],
            "label_type": label_type,
            "class_to_idx": {name: i for i, name in enumerate(class_names)},
        },
    )


@register_dataset("cifar10")
def load_cifar10(spec: DataSpec) -> RawDataset:
    """CIFAR-10: 50,000 train / 10,000 test 32×32 RGB images in 10 classes (official test split)."""
    return _load(_CIFAR10, spec)


@register_dataset("cifar100")
def load_cifar100(spec: DataSpec) -> RawDataset:
    """CIFAR-100: 50,000 train / 10,000 test 32×32 RGB images; 100 fine classes (or 20 coarse)."""
    return _load(_CIFAR100, spec)
