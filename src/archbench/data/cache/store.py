"""One prepared store on disk: owns its file format, building it atomically, checking it and mapping it.
It does not decide which key a spec maps to (`lookup.py`) and never lists the source (`source.py`).

A store lives in `<cache>/<key>/`:

    train_x.npy  val_x.npy  test_x.npy       pixels (N×C×H×W in the decoded dtype, kept bit for bit:
                                             uint8 images, float32 patches, chips' uint16/int16/…)
    train_y.npy  val_y.npy  test_y.npy       labels (int64)
    train_index.npy …                        each sample's row in the source (train or test array)
    ids.json                                 per-sample names (relative paths) when the family has them
    meta.json                                class names, statistics, fingerprint, provenance, and per
                                             file: size, full sha256 and a sampled sha256; written last

Writing is atomic: built in `<cache>/.tmp-<key>-<pid>-…`, every file fsynced, renamed into place, under
the key's lock (`key_lock`). Opening checks each file's size and its sampled sha256 (64 blocks of 64 KiB
spread over the file, i.e. the whole file below 4 MiB) once per process; `verify_store` checks the full
sha256. A store failing either check is set aside as `<key>.damaged-<time>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import DataSpec
from archbench.data.identity import decode_options
from archbench.data.registry import (
    DatasetBundle,
    PlannedSplit,
    SampleIds,
    Split,
    bundle_from_splits,
    plan_dataset,
)
from archbench.util.errors import DatasetError
from archbench.util.paths import fsync_dir

FORMAT = 1
SPLITS = ("train", "val", "test")
META = "meta.json"
_BLOCK = 64 << 10
_SAMPLES = 64
_CHUNK_BYTES = 64 << 20
_verified: set[str] = set()  # stores checked by this process (path + meta mtime)


class DamagedCacheError(DatasetError):
    """A store's files do not match the sizes or hashes its meta.json recorded."""


def versions() -> dict[str, str]:
    """The releases whose decoding a store depends on (part of its key and of meta.json)."""
    from importlib.metadata import PackageNotFoundError, version

    from archbench import __version__

    out = {"archbench": __version__, "numpy": np.__version__.split(".")[0]}
    try:
        out["pillow"] = version("pillow")
    except PackageNotFoundError:
        out["pillow"] = "absent"
    return out


# ---------------------------------------------------------------- hashing and checking


def sampled_sha256(path: Path, size: int) -> str:
    """sha256 of 64 blocks of 64 KiB spread evenly over the file (the whole file when it is small)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= _BLOCK * _SAMPLES:
            h.update(f.read())
        else:
            step = (size - _BLOCK) // (_SAMPLES - 1)
            for i in range(_SAMPLES):
                f.seek(i * step)
                h.update(f.read(_BLOCK))
    return h.hexdigest()


def full_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_files(store: Path, meta: dict[str, Any], full: bool) -> list[str]:
    """One line per file that is missing or differs from meta.json (sampled or `full` sha256)."""
    problems = []
    for name, want in meta["files"].items():
        p = store / name
        try:
            size = p.stat().st_size
        except OSError:
            problems.append(f"{name}: missing")
            continue
        if size != want["size"]:
            problems.append(f"{name}: {size} bytes, expected {want['size']}")
        elif full and full_sha256(p) != want["sha256"]:
            problems.append(f"{name}: sha256 differs")
        elif not full and sampled_sha256(p, size) != want["sampled_sha256"]:
            problems.append(f"{name}: sampled sha256 differs")
    return problems


def read_meta(store: Path) -> dict[str, Any] | None:
    """The store's meta.json (None: not written, i.e. an incomplete store); DamagedCacheError when
    unreadable or of another format."""
    try:
        meta = json.loads((store / META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DamagedCacheError(f"{store / META}: unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "files" not in meta:
        raise DamagedCacheError(f"{store / META}: not a format-{FORMAT} store")
    return meta


# ---------------------------------------------------------------- opening


def _load_x(path: Path) -> np.ndarray:
    arr = np.load(path, mmap_mode="r") if path.stat().st_size > 256 else np.load(path)
    return arr


def open_store(store: Path, verify: bool = True) -> DatasetBundle | None:
    """Map a complete store (None when absent); raises DamagedCacheError when a check fails."""
    meta = read_meta(store)
    if meta is None:
        return None
    stamp = f"{store}:{(store / META).stat().st_mtime_ns}"
    if verify and stamp not in _verified:
        problems = check_files(store, meta, full=False)
        if problems:
            raise DamagedCacheError(f"{store}: " + "; ".join(problems))
        _verified.add(stamp)
    try:
        splits = {}
        for s in SPLITS:
            x = _load_x(store / f"{s}_x.npy")
            splits[s] = Split(x, np.load(store / f"{s}_y.npy"))
        test_ids = _test_ids(store)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedCacheError(f"{store}: {exc}") from exc
    return DatasetBundle(
        kind=meta["kind"],
        class_names=list(meta["class_names"]),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        mean=list(meta["mean"]),
        std=list(meta["std"]),
        fingerprint=meta["fingerprint"],
        info=dict(meta["info"]),
        test_ids=test_ids,
    )


def _test_ids(store: Path) -> SampleIds | None:
    """The test split's source rows and names (None for a store written before they were kept)."""
    index_path, ids_path = store / "test_index.npy", store / "ids.json"
    if not index_path.exists() or not ids_path.exists():
        return None
    doc = json.loads(ids_path.read_text())
    names = doc["ids"].get("test")
    return SampleIds(np.load(index_path).astype(np.int64), str(doc["index_into"]["test"]), names)


@contextlib.contextmanager
def key_lock(root: Path, key: str) -> Iterator[float]:
    """Exclusive flock per key; yields the seconds spent waiting for another writer."""
    from archbench.store.lock import file_lock

    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with file_lock(locks / f"{key}.lock") as waited:
        yield waited


def set_aside(store: Path) -> Path:
    """Rename a damaged store out of its key's way (kept for inspection; `archbench cache clear`)."""
    aside = store.with_name(f"{store.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}")
    os.replace(store, aside)
    fsync_dir(store.parent)
    return aside


# ---------------------------------------------------------------- writing


@dataclass
class BuiltStore:
    """What decoding wrote into a folder, and what meta.json records of it (in this order)."""

    class_names: list[str]
    info: dict[str, Any]
    decode_seconds: float
    prepare_seconds: float
    mean: list[float]
    std: list[float]
    fingerprint: str
    files: dict[str, Any]  # name -> size, sha256, sampled_sha256

    def meta_fields(self) -> dict[str, Any]:
        return dict(vars(self))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_split(folder: Path, name: str, planned: PlannedSplit) -> None:
    n = int(planned.index.shape[0])
    src = planned.source
    shape = (n, *src.shape[1:])
    path = folder / f"{name}_x.npy"
    if n == 0 or int(np.prod(shape)) == 0:
        np.save(path, np.empty(shape, dtype=src.dtype))
    else:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=src.dtype, shape=shape)
        rows = max(1, _CHUNK_BYTES // max(1, src[:1].nbytes))
        for start in range(0, n, rows):
            out[start : start + rows] = planned.gather(start, start + rows)
        out.flush()
        del out
    np.save(folder / f"{name}_y.npy", planned.y.astype(np.int64))
    np.save(folder / f"{name}_index.npy", planned.index.astype(np.int64))


def _fsync_and_hash(folder: Path) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for p in sorted(folder.iterdir()):
        _fsync(p)
        size = p.stat().st_size
        files[p.name] = {"size": size, "sha256": full_sha256(p), "sampled_sha256": sampled_sha256(p, size)}
    return files


def decode_into(spec: DataSpec, folder: Path) -> BuiltStore:
    """Decode `spec` and write every file of a store but meta.json into the empty `folder`, fsynced."""
    t0 = time.perf_counter()
    plan = plan_dataset(spec)
    decode_s = time.perf_counter() - t0
    for name in SPLITS:
        _write_split(folder, name, plan.splits[name])
    class_names, info = list(plan.class_names), dict(plan.info)
    ids = {s: p.ids for s, p in plan.splits.items() if p.ids is not None}
    prefixes = {s: p.prefix for s, p in plan.splits.items()}
    (folder / "ids.json").write_text(json.dumps({"index_into": prefixes, "ids": ids}))
    del plan  # the decoded source arrays: from here on only the mapped files are read
    splits = {s: Split(_load_x(folder / f"{s}_x.npy"), np.load(folder / f"{s}_y.npy")) for s in SPLITS}
    # Statistics and fingerprint are computed from the written files, chunk by chunk.
    bundle = bundle_from_splits(spec.kind, class_names, splits, info)
    del splits
    files = _fsync_and_hash(folder)
    return BuiltStore(
        class_names,
        info,
        decode_s,
        time.perf_counter() - t0,
        bundle.mean,
        bundle.std,
        bundle.fingerprint,
        files,
    )


def _store_meta(spec: DataSpec, key: str, source: dict[str, Any], built: BuiltStore) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "key": key,
        "kind": spec.kind,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "decode_options": decode_options(spec),
        "root": str(Path(spec.root).resolve()) if spec.root else None,
        "source": source,
        "versions": versions(),
        **built.meta_fields(),
    }


def write_store(spec: DataSpec, root: Path, key: str, source: dict[str, Any]) -> BuiltStore:
    """Build the store `root/key` for `spec`, whose source listing is `source`: decoded into a temp
    folder, meta.json written last, renamed into place. The caller holds the key's lock."""
    for stale in root.glob(f".tmp-{key}-*"):  # a killed writer's leftovers; we hold the key's lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    try:
        built = decode_into(spec, tmp)
        meta_path = tmp / META
        meta_path.write_text(json.dumps(_store_meta(spec, key, source, built), indent=1))
        _fsync(meta_path)
        fsync_dir(tmp)
        os.replace(tmp, root / key)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return built
