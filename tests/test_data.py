"""Dataset families on real files: every fixture is generated here, into tmp_path (nothing downloaded).

Covers imagefolder (layouts, hidden entries, bad files, decompression bombs, the shared CIFAR-10 JPEGs),
CIFAR pickle batches (restricted unpickling, truncation, inconsistent batches) and MNIST-style IDX files.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archbench.config import DataSpec
from archbench.data import create_dataset
from archbench.data.imagefolder import BadImageFilesError
from archbench.data.safe_unpickle import safe_load_pickle
from archbench.util.errors import ConfigError, DatasetError

SHARED_CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_jpg"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- fixture generators


def write_image(
    path: Path, size: tuple[int, int] = (8, 8), mode: str = "RGB", seed: int = 0, fmt: str = "PNG"
) -> Path:
    """A small noise image (size is width, height)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(path, format=fmt)
    return path


def make_class_tree(folder: Path, classes: list[str], per_class: int, **kw: Any) -> None:
    for ci, name in enumerate(classes):
        for i in range(per_class):
            write_image(folder / name / f"{i:03d}.png", seed=ci * 100 + i, **kw)


def add_hidden_clutter(folder: Path) -> None:
    """Entries that must never become classes or images."""
    write_image(folder / ".ipynb_checkpoints" / "x.png")  # hidden class-level folder with an image
    write_image(folder / "a" / ".ipynb_checkpoints" / "000-checkpoint.png")  # hidden folder inside a class
    write_image(folder / "a" / ".hidden.png")  # hidden file
    (folder / ".DS_Store").write_bytes(b"\0\1junk")
    (folder / "b" / "notes.txt").write_text("not an image")


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid grayscale PNG of width×height black pixels: ~0.4 MB on disk, 400 MB once decoded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    comp = zlib.compressobj(9)
    rows = bytes((width + 1) * 1000)  # filter byte + a row of zeros, 1000 rows at a time
    idat = b"".join([comp.compress(rows) for _ in range(height // 1000)] + [comp.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb_bytes() -> bytes:
    return png_bomb()


def dump_pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_batch(rows: int, num_classes: int, seed: int, label_key: bytes = b"labels") -> dict[bytes, Any]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"generated batch",
        label_key: [int(v) for v in np.arange(rows) % num_classes],
        b"data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(rows)],
    }


def write_cifar10(parent: Path, rows: int = 20) -> Path:
    folder = parent / "cifar-10-batches-py"
    for i in range(1, 6):
        dump_pickle(folder / f"data_batch_{i}", cifar_batch(rows, 10, seed=i))
    dump_pickle(folder / "test_batch", cifar_batch(rows, 10, seed=99))
    meta = {
        b"label_names": [n.encode() for n in CIFAR10_NAMES],
        b"num_cases_per_batch": rows,
        b"num_vis": 3072,
    }
    dump_pickle(folder / "batches.meta", meta)
    return folder


class Payload:
    """Unpickling this runs a shell command: what a hostile 'dataset' file would carry."""

    def __init__(self, command: str, via_eval: bool = False) -> None:
        self.command, self.via_eval = command, via_eval

    def __reduce__(self) -> tuple[Any, ...]:
        if self.via_eval:
            return (eval, (f"__import__('os').system({self.command!r})",))
        return (os.system, (self.command,))


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool = False) -> Path:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def write_mnist(folder: Path, n_train: int = 50, n_test: int = 20, gz: bool = False) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049, gz)


def spec(kind: str, root: Path | str | None, **kw: Any) -> DataSpec:
    return DataSpec(kind=kind, root=None if root is None else str(root), **kw)


# ---------------------------------------------------------------- imagefolder


@pytest.mark.reliability
def test_imagefolder_train_test_layout_ignores_hidden(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", ["a", "b", "c"], 4)
    make_class_tree(tmp_path / "test", ["a", "b", "c"], 2)
    add_hidden_clutter(tmp_path / "train")
    add_hidden_clutter(tmp_path / "test")
    b = create_dataset(spec("imagefolder", tmp_path))
    assert b.class_names == ["a", "b", "c"]
    assert len(b.train) + len(b.val) == 12 and len(b.test) == 6
    assert b.train.x.dtype == np.uint8 and b.train.x.shape[1:] == (3, 8, 8)
    assert b.info["class_to_idx"] == {"a": 0, "b": 1, "c": 2}
    assert b.info["skipped_files"] == [] and b.info["test_split"] == "official"
    assert b.info["root"] == str(tmp_path.resolve())
    assert sorted(np.bincount(b.test.y).tolist()) == [2, 2, 2]


def test_imagefolder_pixels_match_the_files(tmp_path: Path) -> None:
    from PIL import Image

    make_class_tree(tmp_path / "train", ["a", "b"], 1)
    make_class_tree(tmp_path / "val", ["a", "b"], 1)  # val/ stands in for a missing test/
    b = create_dataset(spec("imagefolder", tmp_path))
    assert b.info["layout"] == "train/ + val/"
    expected = np.asarray(Image.open(tmp_path / "val" / "b" / "000.png")).transpose(2, 0, 1)
    np.testing.assert_array_equal(b.test.x[b.test.y == 1][0], expected)


def test_imagefolder_single_folder_carves_test(tmp_path: Path) -> None:
    make_class_tree(tmp_path, ["cat", "dog", "emu"], 5)
    b = create_dataset(spec("imagefolder", tmp_path))
    assert b.class_names == ["cat", "dog", "emu"]
    assert len(b.train) + len(b.val) + len(b.test) == 15
    assert np.bincount(b.test.y, minlength=3).tolist() == [1, 1, 1]
    assert b.info["test_split"].startswith("stratified")


def test_imagefolder_limit_applied_while_listing(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", ["a", "b"], 5)
    make_class_tree(tmp_path / "test", ["a", "b"], 1)
    (tmp_path / "train" / "a" / "zzz.png").write_text("beyond the limit: never opened")
    b = create_dataset(spec("imagefolder", tmp_path, limit_per_class=2))
    assert b.info["files_listed"] == {"train": 4, "test": 2}
    assert len(b.train) + len(b.val) == 4 and b.info["skipped_files"] == []


@pytest.fixture
def corrupt_tree(tmp_path: Path) -> tuple[Path, set[str]]:
    make_class_tree(tmp_path / "train", ["a", "b", "c"], 3)
    make_class_tree(tmp_path / "test", ["a", "b", "c"], 2)
    whole = write_image(tmp_path / "whole.jpg", size=(64, 64), fmt="JPEG").read_bytes()
    (tmp_path / "whole.jpg").unlink()
    (tmp_path / "train" / "a" / "half.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "train" / "b" / "text.png").write_text("this is not a PNG\n")
    (tmp_path / "test" / "c" / "empty.jpg").write_bytes(b"")
    return tmp_path, {"train/a/half.jpg", "train/b/text.png", "test/c/empty.jpg"}


@pytest.mark.reliability
def test_imagefolder_bad_files_fail_names_exactly_them(
    corrupt_tree: tuple[Path, set[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image, ImageFile

    root, bad = corrupt_tree
    # Even if some other library switched truncated-image loading on, the scan switches it off...
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImageFilesError) as err:
        create_dataset(spec("imagefolder", root, on_bad_file="fail"))
    # ...and restores both process-wide PIL settings afterwards.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True and Image.MAX_IMAGE_PIXELS == limit_before
    assert {b["path"] for b in err.value.bad_files} == bad
    message = str(err.value)
    assert "3 bad image file(s)" in message
    for rel in bad:
        assert str(root / rel) in message
    reasons = {b["path"]: b["reason"] for b in err.value.bad_files}
    assert "truncated" in reasons["train/a/half.jpg"]
    assert "0 bytes" in reasons["test/c/empty.jpg"]
    assert "not a readable image" in reasons["train/b/text.png"]


@pytest.mark.reliability
def test_imagefolder_bad_files_skip_records_them(corrupt_tree: tuple[Path, set[str]]) -> None:
    root, bad = corrupt_tree
    b = create_dataset(spec("imagefolder", root, on_bad_file="skip"))
    assert {s["path"] for s in b.info["skipped_files"]} == bad
    assert len(b.train) + len(b.val) == 9 and len(b.test) == 6


@pytest.mark.reliability
def test_imagefolder_empty_class_named(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", ["a", "b"], 2)
    make_class_tree(tmp_path / "test", ["a", "b"], 1)
    (tmp_path / "train" / "lonely").mkdir()
    (tmp_path / "train" / "lonely" / ".keep").write_text("")
    (tmp_path / "test" / "lonely").mkdir()
    write_image(tmp_path / "test" / "lonely" / "0.png")
    with pytest.raises(DatasetError, match="lonely"):
        create_dataset(spec("imagefolder", tmp_path))


def test_imagefolder_class_lists_must_match(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", ["a", "b"], 2)
    make_class_tree(tmp_path / "test", ["a", "c"], 1)
    with pytest.raises(DatasetError, match=r"only in train/: \['b'\].*only in test/: \['c'\]"):
        create_dataset(spec("imagefolder", tmp_path))


@pytest.mark.reliability
def test_imagefolder_decompression_bomb(tmp_path: Path, bomb_bytes: bytes) -> None:
    make_class_tree(tmp_path / "train", ["a", "b"], 3, mode="L")
    make_class_tree(tmp_path / "test", ["a", "b"], 1, mode="L")
    (tmp_path / "train" / "a" / "bomb.png").write_bytes(bomb_bytes)
    write_image(tmp_path / "train" / "b" / "big.png", size=(1200, 1000), mode="L")  # 1.2 Mpx: over, under 2x
    with pytest.raises(BadImageFilesError) as err:
        create_dataset(spec("imagefolder", tmp_path, max_image_pixels=1_000_000))
    assert {b["path"] for b in err.value.bad_files} == {"train/a/bomb.png", "train/b/big.png"}
    assert all("bomb" in b["reason"] for b in err.value.bad_files)
    b = create_dataset(spec("imagefolder", tmp_path, max_image_pixels=1_000_000, on_bad_file="skip"))
    assert {s["path"] for s in b.info["skipped_files"]} == {"train/a/bomb.png", "train/b/big.png"}
    assert b.train.x.shape[1:] == (1, 8, 8)  # all grayscale: one channel


def test_imagefolder_sizes_and_modes_unified(tmp_path: Path) -> None:
    make_class_tree(tmp_path, ["a", "b"], 4, size=(10, 6))  # width 10, height 6: the most common size
    write_image(tmp_path / "a" / "odd.png", size=(5, 5), mode="L")
    b = create_dataset(spec("imagefolder", tmp_path))
    assert b.train.x.shape[1:] == (3, 6, 10) and b.info["resized"] == 1 and b.info["channels"] == 3
    b = create_dataset(spec("imagefolder", tmp_path, options={"image_size": [12, 16]}))
    assert b.train.x.shape[1:] == (3, 12, 16) and b.info["image_size"] == [12, 16]


def test_imagefolder_options_and_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        create_dataset(spec("imagefolder", tmp_path / "nope"))
    with pytest.raises(DatasetError, match="needs data.root"):
        create_dataset(spec("imagefolder", None))
    make_class_tree(tmp_path / "train", ["a", "b"], 2)
    with pytest.raises(DatasetError, match="train/ but not its partner"):
        create_dataset(spec("imagefolder", tmp_path))
    with pytest.raises(ConfigError, match="unknown option"):
        create_dataset(spec("imagefolder", tmp_path / "train", options={"imgsize": 3}))


def test_imagefolder_real_cifar10_jpegs() -> None:
    if not (SHARED_CIFAR_JPG / "train").is_dir() or not (SHARED_CIFAR_JPG / "test").is_dir():
        pytest.skip(f"shared CIFAR-10 JPEG folder not present at {SHARED_CIFAR_JPG}")
    b = create_dataset(spec("imagefolder", SHARED_CIFAR_JPG, limit_per_class=20))
    assert b.class_names == CIFAR10_NAMES
    assert len(b.train) + len(b.val) == 200 and len(b.test) == 10_000
    assert np.bincount(np.concatenate([b.train.y, b.val.y])).tolist() == [20] * 10
    assert (
        b.train.x.dtype == np.uint8
        and b.train.x.shape[1:] == (3, 32, 32)
        and b.test.x.shape[1:] == (3, 32, 32)
    )
    assert b.info["skipped_files"] == [] and b.info["class_to_idx"]["truck"] == 9
    assert abs(b.mean[0] - 0.49) < 0.05  # it is CIFAR-10 content


# ---------------------------------------------------------------- CIFAR pickle batches


def test_cifar10_batches_load_from_parent_or_folder(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    for root in (tmp_path, folder):
        b = create_dataset(spec("cifar10", root))
        assert b.class_names == CIFAR10_NAMES
        assert len(b.train) + len(b.val) == 100 and len(b.test) == 20
        assert b.train.x.shape[1:] == (3, 32, 32) and b.train.x.dtype == np.uint8
        assert b.info["class_to_idx"]["airplane"] == 0 and b.info["root"] == str(folder.resolve())
    # Row layout: 1024 red, then green, then blue values, row-major.
    row = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")[b"data"][0]
    np.testing.assert_array_equal(b.test.x[0], row.reshape(3, 32, 32))


@pytest.mark.reliability
@pytest.mark.parametrize("via_eval", [False, True], ids=["os.system", "builtins.eval"])
def test_cifar_code_payload_refused_and_never_runs(tmp_path: Path, via_eval: bool) -> None:
    folder = write_cifar10(tmp_path / "data")
    marker = tmp_path / "PWNED"
    batch = cifar_batch(20, 10, seed=3)
    batch[b"data"] = Payload(f"touch {marker}", via_eval)
    dump_pickle(folder / "data_batch_3", batch)
    with pytest.raises(DatasetError, match=r"data_batch_3.*refused.*(system|eval)"):
        create_dataset(spec("cifar10", tmp_path / "data"))
    assert not marker.exists()
    # The payload is real: an ordinary unpickler runs it.
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(Payload(f"touch {witness}", via_eval), protocol=2))
    assert witness.exists()


@pytest.mark.reliability
def test_cifar_truncated_batch_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    data = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_2.*truncated"):
        create_dataset(spec("cifar10", tmp_path))


@pytest.mark.reliability
def test_cifar_rows_labels_mismatch_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    batch = cifar_batch(20, 10, seed=4)
    batch[b"labels"] = batch[b"labels"][:19]
    dump_pickle(folder / "data_batch_4", batch)
    with pytest.raises(DatasetError, match=r"data_batch_4: 20 image rows but 19 labels"):
        create_dataset(spec("cifar10", tmp_path))
    batch = cifar_batch(20, 10, seed=4)
    batch[b"labels"][5] = 10
    dump_pickle(folder / "data_batch_4", batch)
    with pytest.raises(DatasetError, match=r"data_batch_4: 1 label\(s\) outside \[0, 10\)"):
        create_dataset(spec("cifar10", tmp_path))
    batch[b"data"] = batch[b"data"][:, :3000]
    dump_pickle(folder / "data_batch_4", batch)
    with pytest.raises(DatasetError, match=r"data_batch_4: 'data' must be an N×3072 uint8"):
        create_dataset(spec("cifar10", tmp_path))


def test_cifar_missing_files_and_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist.*cifar-10-python.tar.gz.*never downloads"):
        create_dataset(spec("cifar10", tmp_path / "absent"))
    with pytest.raises(DatasetError, match=r"no CIFAR-10 batches found.*cifar-10-batches-py"):
        create_dataset(spec("cifar10", tmp_path))
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetError, match=r"missing CIFAR-10 file\(s\): .*test_batch"):
        create_dataset(spec("cifar10", tmp_path))


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    for name, rows, seed in (("train", 200, 1), ("test", 100, 2)):
        batch = cifar_batch(rows, 100, seed, label_key=b"fine_labels")
        batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
        dump_pickle(folder / name, batch)
    fine = [f"fine_{i:02d}".encode() for i in range(100)]
    dump_pickle(
        folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"c%d" % i for i in range(20)]}
    )
    b = create_dataset(spec("cifar100", tmp_path))
    assert b.num_classes == 100 and b.class_names[7] == "fine_07"
    assert len(b.train) + len(b.val) == 200 and len(b.test) == 100
    assert b.test.y.tolist() == [i % 100 for i in range(100)]
    b = create_dataset(spec("cifar100", folder, options={"label_type": "coarse"}))
    assert b.num_classes == 20 and b.test.y.max() == 19


def test_safe_unpickle_allows_arrays_and_containers(tmp_path: Path) -> None:
    obj = {
        b"a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "b": [1, 2.5, (3, 4)],
        "c": {5},
        "d": np.float32(1.5),
    }
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(obj, protocol=2))
    got = safe_load_pickle(tmp_path / "ok.pkl")
    np.testing.assert_array_equal(got[b"a"], obj[b"a"])
    assert got["b"] == [1, 2.5, (3, 4)] and got["c"] == {5} and got["d"] == np.float32(1.5)
    (tmp_path / "p5.pkl").write_bytes(pickle.dumps({"x": io.BytesIO}, protocol=4))
    with pytest.raises(DatasetError, match=r"p5.pkl: refused to unpickle global '_io.BytesIO'"):
        safe_load_pickle(tmp_path / "p5.pkl")


# ---------------------------------------------------------------- MNIST-style IDX files


@pytest.mark.parametrize(
    ("kind", "where", "gz", "name0"),
    [
        ("mnist", "MNIST/raw", False, "0"),
        ("fashion_mnist", "", True, "T-shirt/top"),
        ("kmnist", "KMNIST/raw", True, "o"),
    ],
)
def test_mnist_family_idx_files(tmp_path: Path, kind: str, where: str, gz: bool, name0: str) -> None:
    write_mnist(tmp_path / where if where else tmp_path, gz=gz)
    b = create_dataset(spec(kind, tmp_path))
    assert b.class_names[0] == name0 and b.num_classes == 10
    assert len(b.train) + len(b.val) == 50 and len(b.test) == 20
    assert b.train.x.shape[1:] == (1, 28, 28) and b.train.x.dtype == np.uint8
    assert b.test.y.tolist() == [i % 10 for i in range(20)]


def test_mnist_bad_files_named(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(20) % 10, 2051)  # images magic on a labels file
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: wrong IDX magic number 2051"):
        create_dataset(spec("mnist", tmp_path))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(19) % 10, 2049)
    with pytest.raises(DatasetError, match=r"20 images but .*t10k-labels-idx1-ubyte has 19 labels"):
        create_dataset(spec("mnist", tmp_path))
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: file is truncated"):
        create_dataset(spec("mnist", tmp_path))
    gz = write_idx(raw / "train-images-idx3-ubyte", np.zeros((50, 28, 28)), 2051, gz=True)
    (raw / "train-images-idx3-ubyte").unlink()
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: cannot read"):
        create_dataset(spec("mnist", tmp_path))


def test_mnist_missing_root_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist.*train-images-idx3-ubyte.*MNIST/raw"):
        create_dataset(spec("mnist", tmp_path / "absent"))
    with pytest.raises(DatasetError, match=r"no train-images-idx3-ubyte\[.gz\] found.*FashionMNIST/raw"):
        create_dataset(spec("fashion_mnist", tmp_path))
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: file is missing"):
        create_dataset(spec("mnist", tmp_path))


# RELIABILITY.md case 16: labels out of range (10 of 10 classes here; -1 in a CIFAR batch below).
@pytest.mark.reliability
def test_label_out_of_range_is_rejected_in_preflight_with_count_and_indices(tmp_path: Path) -> None:
    labels = np.tile(np.arange(10), 3)
    labels[[4, 17]] = 10
    raw = tmp_path / "MNIST" / "raw"
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((len(labels), 28, 28)), 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)
    with pytest.raises(DatasetError) as info:
        create_dataset(DataSpec(kind="mnist", root=str(tmp_path)))
    msg = str(info.value)
    assert "2 label(s) outside [0, 10)" in msg and "4, 17" in msg


@pytest.mark.reliability
def test_negative_label_in_cifar_batch_is_rejected(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    batch = cifar_batch(20, 10, seed=3)
    batch[b"labels"][7] = -1
    dump_pickle(folder / "data_batch_3", batch)
    with pytest.raises(DatasetError) as info:
        create_dataset(DataSpec(kind="cifar10", root=str(tmp_path)))
    assert "-1" in str(info.value)
