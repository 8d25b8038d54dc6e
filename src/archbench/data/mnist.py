"""MNIST, Fashion-MNIST and KMNIST from their IDX files; parses the headers itself, never downloads.

Files (plain or `.gz`): `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, looked up in `<root>/<MNIST|FashionMNIST|KMNIST>/raw/` (the layout
torchvision creates), then `<root>/raw/`, then `<root>` itself. A wrong magic number, a truncated file or
an image/label count mismatch is a `DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from archbench.config import DataSpec
from archbench.data.registry import RawDataset, register_dataset
from archbench.data.root import data_root, planned_root
from archbench.util.errors import ConfigError, DatasetError

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_FAMILIES: dict[str, tuple[str, str, list[str]]] = {
    # kind: (torchvision folder, title, class names in label order)
    "mnist": ("MNIST", "MNIST", [str(i) for i in range(10)]),
    "fashion_mnist": (
        "FashionMNIST",
        "Fashion-MNIST",
        [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    ),
    "kmnist": ("KMNIST", "Kuzushiji-MNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
}
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _how_to_provide(kind: str, root: str) -> str:
    folder, title, _ = _FAMILIES[kind]
    return (
        f"Put the four {title} IDX files ({', '.join(_FILES.values())}, each plain or .gz) in "
        f"{Path(root) / folder / 'raw'} — the layout `torchvision.datasets.{folder}(root, download=True)` "
        "creates on a machine with network access — or directly in data.root (archbench never downloads)."
    )


def layout(kind: str) -> str:
    """The files data.kind=`kind` needs, relative to data.root (shown in planning errors and the README)."""
    folder = _FAMILIES[kind][0]
    return (
        f"<root>/{folder}/raw/{{{', '.join(_FILES.values())}}} (each plain or .gz; "
        f"<root>/raw/ or <root>/ itself also work)"
    )


LAYOUTS = {kind: layout(kind) for kind in _FAMILIES}
OPTIONS: dict[str, frozenset[str]] = {kind: frozenset() for kind in _FAMILIES}  # data.options keys


def check_files(spec: DataSpec) -> list[str]:
    """Planning check: one line per missing file or folder, each naming the expected layout; reads no
    file's content."""
    kind = spec.kind
    expected = f"expected layout: {layout(kind)}"
    root, problems = planned_root(spec, expected)
    if root is None:
        return problems
    folder_name = _FAMILIES[kind][0]
    candidates = [root / folder_name / "raw", root / "raw", root]
    folder = next((c for c in candidates if _find(c, _FILES["train_images"]) is not None), None)
    if folder is None:
        return [
            f"data.root={root}: no {_FILES['train_images']}[.gz] in {', '.join(str(c) for c in candidates)}; "
            f"{expected}"
        ]
    return [
        f"data.root={root}: {folder / name}[.gz] is missing; {expected}"
        for name in _FILES.values()
        if _find(folder, name) is None
    ]


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes: big-endian int32 magic, one int32 per dimension, then data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is probably truncated"
        ) from exc
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an IDX file (truncated?)")
    found = int(np.frombuffer(raw, dtype=">u4", count=1)[0])
    if found != magic:
        raise DatasetError(
            f"{path}: wrong IDX magic number {found} (expected {magic}: "
            f"{'images' if magic == _IMAGES_MAGIC else 'labels'} of unsigned bytes); is this the right file?"
        )
    if len(raw) < header:
        raise DatasetError(f"{path}: header truncated ({len(raw)} bytes, needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetError(
            f"{path}: file is {state}: header declares shape {dims} ({expected} bytes), "
            f"the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_split(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _find(folder, images_name), _find(folder, labels_name)
    for name, found in ((images_name, images_path), (labels_name, labels_path)):
        if found is None:
            raise DatasetError(f"{folder / name}: file is missing (neither {name} nor {name}.gz exists)")
    assert images_path is not None and labels_path is not None
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels; "
            "the two files must come from the same release"
        )
    bad = np.flatnonzero(labels >= 10)
    if bad.size:
        raise DatasetError(
            f"{labels_path}: {bad.size} label(s) outside [0, 10) (first at indices "
            f"{', '.join(str(int(i)) for i in bad[:5])})"
        )
    return images[:, None, :, :].copy(), labels.astype(np.int64)


def _load(kind: str, spec: DataSpec) -> RawDataset:
    folder_name, title, class_names = _FAMILIES[kind]
    if spec.options:
        raise ConfigError(
            f"data.options: data.kind={kind} takes no options (got {', '.join(sorted(spec.options))})"
        )
    root = data_root(spec, lambda where: _how_to_provide(kind, where))
    candidates = [root / folder_name / "raw", root / "raw", root]
    folder = next((c for c in candidates if _find(c, _FILES["train_images"]) is not None), None)
    if folder is None:
        looked = ", ".join(str(c) for c in candidates)
        raise DatasetError(
            f"data.root={root}: no {_FILES['train_images']}[.gz] found (looked in {looked}). "
            f"{_how_to_provide(kind, str(root))}"
        )
    train_x, train_y = _read_split(folder, _FILES["train_images"], _FILES["train_labels"])
    test_x, test_y = _read_split(folder, _FILES["test_images"], _FILES["test_labels"])
    if train_x.shape[2:] != test_x.shape[2:]:
        raise DatasetError(
            f"{folder}: train images are {train_x.shape[2:]} but test images are {test_x.shape[2:]}"
        )
    return RawDataset(
        train_x=train_x,
        train_y=train_y,
        class_names=list(class_names),
        test_x=test_x,
        test_y=test_y,
        info={
            "source": f"{title} IDX files",
            "root": str(folder.resolve()),
            "files": {k: (_find(folder, v) or Path(v)).name for k, v in _FILES.items()},
            "class_to_idx": {name: i for i, name in enumerate(class_names)},
        },
    )


@register_dataset("mnist")
def load_mnist(spec: DataSpec) -> RawDataset:
    """MNIST handwritten digits: 60,000 train / 10,000 test 28×28 grayscale images, classes "0".."9"."""
    return _load("mnist", spec)


@register_dataset("fashion_mnist")
def load_fashion_mnist(spec: DataSpec) -> RawDataset:
    """Fashion-MNIST: 60,000 train / 10,000 test 28×28 grayscale clothing images in 10 classes."""
    return _load("fashion_mnist", spec)


@register_dataset("kmnist")
def load_kmnist(spec: DataSpec) -> RawDataset:
    """Kuzushiji-MNIST: 60,000 train / 10,000 test 28×28 grayscale cursive Japanese characters, 10 classes."""
    return _load("kmnist", spec)
