"""The prepared-data cache: owns decoding a dataset once into memory-mappable .npy files, and mapping them.

A store is keyed by the fingerprint of the source (every file under `data.root` and under path-valued
options: relative path, size and mtime — never the content, so keying a 1M-image folder costs one `stat`
per file; a cache hit re-uses a remembered listing instead when the cheap check of `remembered_source`
passes — every directory's stat unchanged plus a random sample of files, see there for what it does and
does not detect) and of the decoding options (kind, splits, limits, `on_bad_file`, `options`, the archbench,
numpy and Pillow versions). It lives in `<cache>/<key>/`:

    train_x.npy  val_x.npy  test_x.npy       pixels (N×C×H×W, as decoded: uint8, float32 for rasters)
    train_y.npy  val_y.npy  test_y.npy       labels (int64)
    train_index.npy …                        each sample's row in the source (train or test array)
    ids.json                                 per-sample names (relative paths) when the family has them
    meta.json                                class names, statistics, fingerprint, provenance, and per
                                             file: size, full sha256 and a sampled sha256; written last

`<cache>` is `data.cache_dir`, else `$ARCHBENCH_CACHE`, else `~/.cache/archbench/data`.
Writing is atomic: built in `<cache>/.tmp-<key>-<pid>-…`, every file fsynced, renamed into place. One
writer per key holds `<cache>/.locks/<key>.lock` (flock, blocking); other processes wait on it, then map
what the writer left. Opening checks each file's size and its sampled sha256 (64 blocks of 64 KiB spread
over the file, i.e. the whole file below 4 MiB) once per process; `archbench cache verify` checks the full
sha256. A store failing either check is renamed `<key>.damaged-<time>` and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from archbench.data.registry import (
    DatasetBundle,
    SampleIds,
    Split,
    build_in_memory,
    bundle_from_splits,
    family_module,
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
# The options that change the decoded arrays. `resolution` and `augment` are applied per batch on the
# device; `memory_budget` and `cache_dir` say where the arrays live, not what they are.
_DECODE_FIELDS = {
    "kind",
    "val_fraction",
    "test_fraction",
    "limit_per_class",
    "test_limit_per_class",
    "split_seed",
    "on_bad_file",
    "max_image_pixels",
    "options",
}
_verified: set[str] = set()  # stores checked by this process (path + meta mtime)


class DamagedCacheError(DatasetError):
    """A store's files do not match the sizes or hashes its meta.json recorded."""


def cache_root(spec: DataSpec | None = None) -> Path:
    if spec is not None and spec.cache_dir:
        return Path(spec.cache_dir).expanduser()
    env = os.environ.get("ARCHBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/archbench/data").expanduser()


def cacheable(spec: DataSpec) -> bool:
    """Families opt out with a module attribute `PREPARED_CACHE = False` (their sources are not one
    folder that a listing can fingerprint)."""
    return bool(getattr(family_module(spec.kind), "PREPARED_CACHE", True))


def _source_paths(spec: DataSpec) -> list[Path]:
    paths = [Path(spec.root)] if spec.root else []
    for value in spec.options.values():
        if isinstance(value, str) and value and os.path.exists(value):
            paths.append(Path(value))
    return paths


def _walk(path: Path, h: Any, lines_out: list[str], dirs: dict[str, list[int]], tag: str) -> tuple[int, int]:
    """Feed (relative path, size, mtime_ns) of every file under `path` into `h`, sorted by path:
    returns (files, bytes). One `stat` per file; nothing is read. Also collects each file's line (prefixed
    `tag/`) into `lines_out` and each directory's stat into `dirs`, for the remembered listing."""
    lines: list[str] = []
    total = 0
    stack = [(str(path), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            st = os.stat(folder)
            it = os.scandir(folder)
        except OSError:
            continue
        dirs[f"{tag}/{prefix}"] = _dir_stamp(st)
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, f"{prefix}{e.name}/"))
                elif e.is_file():
                    st = e.stat()
                    lines.append(f"{prefix}{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n")
                    total += st.st_size
    lines.sort()
    h.update("".join(lines).encode())
    lines_out.extend(f"{tag}/{line}" for line in lines)
    return len(lines), total


def _dir_stamp(st: os.stat_result) -> list[int]:
    """What changes when an entry of a directory is added, removed or renamed (mtime, ctime), or when the
    directory itself is replaced (inode, device)."""
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


@dataclass
class _Listing:
    """One full walk of the source: its fingerprint, and what the remembered listing stores of it."""

    source: dict[str, Any]
    paths: list[str]
    lines: list[str]  # "<path index>/<relative path>\0size\0mtime_ns\n", as hashed
    dirs: dict[str, list[int]]  # "<path index>/<relative dir>/" -> _dir_stamp
    files: dict[str, list[int]]  # "<path index>" -> [size, mtime_ns, ctime_ns, ino] for file sources
    missing: list[str]
    listed_at: float  # time.time() before the walk


def _list_source(spec: DataSpec) -> _Listing:
    h = hashlib.sha256()
    files, total = 0, 0
    listed_at = time.time()
    paths = _source_paths(spec)
    out = _Listing({}, [str(p) for p in paths], [], {}, {}, [], listed_at)
    for i, p in enumerate(paths):
        if p.is_dir():
            f, t = _walk(p, h, out.lines, out.dirs, str(i))
            files, total = files + f, total + t
        elif p.is_file():
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            out.files[str(i)] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            files, total = files + 1, total + st.st_size
        else:
            h.update(f"missing:{p}\n".encode())
            out.missing.append(str(p))
    if spec.kind == "digits":
        from importlib.metadata import version

        h.update(f"sklearn {version('scikit-learn')}".encode())
    out.source = {"sha256": h.hexdigest(), "files": files, "bytes": total}
    return out


def source_fingerprint(spec: DataSpec) -> dict[str, Any]:
    """Cheap fingerprint of the source: a listing (paths, sizes, mtimes), not the file contents."""
    return _list_source(spec).source


# ---------------------------------------------------------------- the remembered listing (cache hit path)
#
# Listing a 100k-file folder costs one stat per file (0.3 s of CPU; seconds on a loaded host). After a
# full walk, `<cache>/.sources/<source id>.json` remembers its fingerprint with the stat of every
# directory of the tree, and `<source id>-<sha>.listing` its lines. A later open trusts the remembered
# fingerprint when every directory's (mtime, ctime, inode, device) is unchanged and a random sample of
# SAMPLE_FILES files (all of them in a smaller folder) still has its size and mtime; otherwise it walks
# again. A directory changed less than SETTLE_SECONDS before a walk is not remembered (a coarse
# timestamp could hide a later change within the same tick).

SOURCES = ".sources"
SAMPLE_FILES = 256
SETTLE_SECONDS = 2.0


def _source_id(spec: DataSpec, paths: list[str]) -> str:
    payload = {
        "format": FORMAT,
        "kind": spec.kind,
        "paths": [os.path.realpath(p) for p in paths],
        "decode": spec.model_dump(mode="json", include=_DECODE_FIELDS),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _settled(listing: _Listing) -> bool:
    limit = int((listing.listed_at - SETTLE_SECONDS) * 1e9)
    stamps = [s[:2] for s in listing.dirs.values()] + [s[1:3] for s in listing.files.values()]
    return all(max(s) < limit for s in stamps)


def _remember(spec: DataSpec, root: Path, listing: _Listing) -> bool:
    """Store the listing for later cheap checks (atomically; the last writer wins). False when its
    directories had not settled."""
    if not (listing.dirs or listing.files) or not _settled(listing):
        return False
    folder = root / SOURCES
    folder.mkdir(parents=True, exist_ok=True)
    ident = _source_id(spec, listing.paths)
    body = "".join(listing.lines).encode()
    name = f"{ident}-{hashlib.sha256(body).hexdigest()[:16]}.listing"
    doc = {
        "paths": listing.paths,
        "source": listing.source,
        "dirs": listing.dirs,
        "files": listing.files,
        "missing": listing.missing,
        "listed_at": listing.listed_at,
        "listing": name,
        "lines": len(listing.lines),
    }
    for target, data in ((folder / name, body), (folder / f"{ident}.json", json.dumps(doc).encode())):
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    for old in folder.glob(f"{ident}-*.listing"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return True


def _sample_lines(body: bytes, count: int, k: int) -> list[bytes]:
    if count <= k:
        return [line for line in body.split(b"\n") if line]
    import random

    rng = random.Random()
    out = []
    for _ in range(k):
        start = body.rfind(b"\n", 0, rng.randrange(len(body))) + 1
        out.append(body[start : body.index(b"\n", start)])
    return out


def remembered_source(spec: DataSpec, root: Path) -> dict[str, Any] | None:
    """The remembered fingerprint of `spec`'s source when the cheap check passes, else None.

    Detects: a file or folder added, removed or renamed anywhere in the tree (its directory's mtime and
    ctime change), a folder replaced, a file source changed, a missing path that appeared, and a changed
    size or mtime of any of SAMPLE_FILES files picked at random on each call (every file when there are
    no more). Does not detect: a file rewritten in place (same name, not replaced by a rename) outside
    the sample — the full listing (`archbench prepare`) does — nor, like the listing itself, a change
    that keeps a file's size and mtime. `prepare` trusts it for a cache hit only: a store is built after
    a full listing."""
    paths = [str(p) for p in _source_paths(spec)]
    try:
        doc = json.loads((root / SOURCES / f"{_source_id(spec, paths)}.json").read_text())
        if doc["paths"] != paths:
            return None
        for name, want in doc["dirs"].items():
            i, rel = name.split("/", 1)
            if _dir_stamp(os.stat(os.path.join(paths[int(i)], rel))) != want:
                return None
        for i, want in doc["files"].items():
            st = os.stat(paths[int(i)])
            if [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino] != want:
                return None
        if any(os.path.exists(p) for p in doc["missing"]):
            return None
        body = (root / SOURCES / doc["listing"]).read_bytes()
        for line in _sample_lines(body, int(doc["lines"]), SAMPLE_FILES):
            name, size, mtime = line.decode().split("\0")
            i, rel = name.split("/", 1)
            st = os.stat(os.path.join(paths[int(i)], rel))
            if st.st_size != int(size) or st.st_mtime_ns != int(mtime):
                return None
        return dict(doc["source"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from archbench import __version__

    out = {"archbench": __version__, "numpy": np.__version__.split(".")[0]}
    try:
        out["pillow"] = version("pillow")
    except PackageNotFoundError:
        out["pillow"] = "absent"
    return out


def cache_key(spec: DataSpec, source: dict[str, Any] | None = None) -> str:
    source = source or source_fingerprint(spec)
    payload = {
        "format": FORMAT,
        "decode": spec.model_dump(mode="json", include=_DECODE_FIELDS),
        "source": source["sha256"],
        "versions": _versions(),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"{spec.kind}-{digest[:20]}"


# ---------------------------------------------------------------- hashing


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


def _check(store: Path, meta: dict[str, Any], full: bool) -> list[str]:
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


# ---------------------------------------------------------------- opening


def _read_meta(store: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((store / META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DamagedCacheError(f"{store / META}: unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "files" not in meta:
        raise DamagedCacheError(f"{store / META}: not a format-{FORMAT} store")
    return meta


def _load_x(path: Path) -> np.ndarray:
    arr = np.load(path, mmap_mode="r") if path.stat().st_size > 256 else np.load(path)
    return arr


def open_store(store: Path, verify: bool = True) -> DatasetBundle | None:
    """Map a complete store (None when absent); raises DamagedCacheError when a check fails."""
    meta = _read_meta(store)
    if meta is None:
        return None
    stamp = f"{store}:{(store / META).stat().st_mtime_ns}"
    if verify and stamp not in _verified:
        problems = _check(store, meta, full=False)
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
def _key_lock(root: Path, key: str) -> Iterator[float]:
    """Exclusive flock per key; yields the seconds spent waiting for another writer."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{key}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    t0 = time.perf_counter()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield time.perf_counter() - t0
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _set_aside(store: Path) -> Path:
    aside = store.with_name(f"{store.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}")
    os.replace(store, aside)
    fsync_dir(store.parent)
    return aside


# ---------------------------------------------------------------- writing


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_split(tmp: Path, name: str, planned: Any) -> None:
    n = int(planned.index.shape[0])
    src = planned.source
    shape = (n, *src.shape[1:])
    path = tmp / f"{name}_x.npy"
    if n == 0 or int(np.prod(shape)) == 0:
        np.save(path, np.empty(shape, dtype=src.dtype))
    else:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=src.dtype, shape=shape)
        rows = max(1, _CHUNK_BYTES // max(1, src[:1].nbytes))
        for start in range(0, n, rows):
            out[start : start + rows] = planned.gather(start, start + rows)
        out.flush()
        del out
    np.save(tmp / f"{name}_y.npy", planned.y.astype(np.int64))
    np.save(tmp / f"{name}_index.npy", planned.index.astype(np.int64))


def _build(spec: DataSpec, root: Path, key: str, source: dict[str, Any]) -> dict[str, Any]:
    """Decode, write the store in a temp folder, fsync, rename into place. Returns the timings."""
    for stale in root.glob(f".tmp-{key}-*"):  # a killed writer's leftovers; we hold the key's lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        plan = plan_dataset(spec)
        decode_s = time.perf_counter() - t0
        for name in SPLITS:
            _write_split(tmp, name, plan.splits[name])
        class_names, info = list(plan.class_names), dict(plan.info)
        ids = {s: p.ids for s, p in plan.splits.items() if p.ids is not None}
        prefixes = {s: p.prefix for s, p in plan.splits.items()}
        (tmp / "ids.json").write_text(json.dumps({"index_into": prefixes, "ids": ids}))
        del plan  # the decoded source arrays: from here on only the mapped files are read
        splits = {s: Split(_load_x(tmp / f"{s}_x.npy"), np.load(tmp / f"{s}_y.npy")) for s in SPLITS}
        # Statistics and fingerprint are computed from the written files, chunk by chunk.
        bundle = bundle_from_splits(spec.kind, class_names, splits, info)
        del splits
        files: dict[str, Any] = {}
        for p in sorted(tmp.iterdir()):
            _fsync(p)
            size = p.stat().st_size
            files[p.name] = {
                "size": size,
                "sha256": full_sha256(p),
                "sampled_sha256": sampled_sha256(p, size),
            }
        prepare_s = time.perf_counter() - t0
        return {
            "tmp": tmp,
            "class_names": class_names,
            "info": info,
            "decode_seconds": decode_s,
            "prepare_seconds": prepare_s,
            "mean": bundle.mean,
            "std": bundle.std,
            "fingerprint": bundle.fingerprint,
            "files": files,
        }
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _prepare(spec: DataSpec, root: Path, key: str, source: dict[str, Any]) -> dict[str, Any]:
    store = root / key
    t0 = time.perf_counter()
    plan_meta = _build(spec, root, key, source)
    tmp: Path = plan_meta.pop("tmp")
    try:
        meta = {
            "format": FORMAT,
            "key": key,
            "kind": spec.kind,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "decode_options": spec.model_dump(mode="json", include=_DECODE_FIELDS),
            "root": str(Path(spec.root).resolve()) if spec.root else None,
            "source": source,
            "versions": _versions(),
            **plan_meta,
        }
        meta_path = tmp / META
        meta_path.write_text(json.dumps(meta, indent=1))
        _fsync(meta_path)
        fsync_dir(tmp)
        os.replace(tmp, store)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta["wall_seconds"] = time.perf_counter() - t0
    return meta


def prepare(spec: DataSpec, full_check: bool = False) -> tuple[DatasetBundle, dict[str, Any]]:
    """Open the store for `spec`, building it first when absent or damaged. Returns (bundle, loading).

    The source is identified by its remembered listing when the cheap check passes (`remembered_source`),
    else (or with `full_check`) by a full listing, which is then remembered."""
    root = cache_root(spec)
    t0 = time.perf_counter()
    listing: _Listing | None = None
    source = None if full_check else remembered_source(spec, root)
    if source is not None and not (root / cache_key(spec, source) / META).is_file():
        source = None  # the cheap check only ever vouches for a hit: a store is built from a full listing
    if source is None:
        listing = _list_source(spec)
        source = listing.source
    key = cache_key(spec, source)
    store = root / key
    loading: dict[str, Any] = {
        "cache_key": key,
        "cache_dir": str(root),
        "source_files": source["files"],
        "source_check": "listing" if listing is not None else "directories+sample",
    }
    set_aside: str | None = None
    try:
        bundle = open_store(store)
    except DamagedCacheError:
        bundle = None
        set_aside = "pending"
    if bundle is None:
        root.mkdir(parents=True, exist_ok=True)
        with _key_lock(root, key) as waited:
            try:
                bundle = open_store(store)  # another process may have built it while we waited
            except DamagedCacheError as exc:
                set_aside = f"{_set_aside(store)}: {exc}"
                bundle = None
            if bundle is not None:
                loading.update(cache_hit=True, waited_seconds=round(waited, 3), decode_seconds=0.0)
            else:
                meta = _prepare(spec, root, key, source)
                bundle = open_store(store, verify=False)
                assert bundle is not None
                loading.update(
                    cache_hit=False,
                    decode_seconds=round(meta["decode_seconds"], 3),
                    prepare_seconds=round(meta["prepare_seconds"], 3),
                )
    else:
        loading.update(cache_hit=True, decode_seconds=0.0)
    if set_aside and set_aside != "pending":
        loading["damaged_store_set_aside"] = set_aside
    if listing is not None and not _remember(spec, root, listing) and not loading["cache_hit"]:
        # Listed while the folder was still changing: list again now that decoding took its time, and
        # remember that listing only if the source is still the one this store was keyed by.
        again = _list_source(spec)
        if again.source["sha256"] == source["sha256"]:
            _remember(spec, root, again)
    loading["ready_seconds"] = round(time.perf_counter() - t0, 3)
    loading["prepared_bytes"] = bundle.nbytes
    return bundle, loading


def open_or_prepare(spec: DataSpec) -> DatasetBundle:
    """The dataset for `spec`: mapped from the cache (decoded into it first when needed), or decoded in
    memory for families that opt out of the cache."""
    if not cacheable(spec) or (spec.root and not Path(spec.root).exists()):
        # (a missing root: the family's loader says what to put where; no cache folder is created)
        t0 = time.perf_counter()
        bundle = build_in_memory(spec)
        bundle.loading = {"cache_key": None, "cache_hit": False, "decode_seconds": time.perf_counter() - t0}
        return bundle
    bundle, loading = prepare(spec)
    bundle.loading = loading
    return bundle


# ---------------------------------------------------------------- maintenance (archbench cache …)


@dataclass
class StoreEntry:
    key: str
    path: Path
    status: str  # ok | damaged | incomplete | set-aside | writing
    bytes: int
    kind: str | None
    created_at: str | None
    samples: int | None
    root: str | None


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_stores(root: Path) -> list[StoreEntry]:
    out: list[StoreEntry] = []
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        if not p.is_dir() or p.name in (".locks", SOURCES):
            continue
        if p.name.startswith(".tmp-"):
            out.append(StoreEntry(p.name[5:], p, "writing", _du(p), None, None, None, None))
            continue
        if ".damaged-" in p.name:
            out.append(
                StoreEntry(p.name.split(".damaged-")[0], p, "set-aside", _du(p), None, None, None, None)
            )
            continue
        try:
            meta = _read_meta(p)
        except DamagedCacheError:
            meta, status = None, "damaged"
        else:
            status = "ok" if meta is not None else "incomplete"
        samples = None
        if meta is not None:
            samples = sum(int(np.load(p / f"{s}_y.npy", mmap_mode="r").shape[0]) for s in SPLITS)
        out.append(
            StoreEntry(
                p.name,
                p,
                status,
                _du(p),
                meta.get("kind") if meta else None,
                meta.get("created_at") if meta else None,
                samples,
                meta.get("root") if meta else None,
            )
        )
    return out


def verify_store(store: Path) -> list[str]:
    """Full sha256 check of every file; [] when the store is intact."""
    meta = _read_meta(store)
    if meta is None:
        return [f"{store}: no {META} (incomplete store)"]
    return _check(store, meta, full=True)


def clear_stores(root: Path, keys: list[str] | None = None) -> list[Path]:
    """Remove stores (all, or those whose key is given), each under its key's lock."""
    removed = []
    for entry in list_stores(root):
        if keys and entry.key not in keys:
            continue
        if entry.status == "writing":
            continue  # a live writer; it renames or removes its own folder
        with _key_lock(root, entry.key):
            shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    if not keys:
        shutil.rmtree(root / SOURCES, ignore_errors=True)  # remembered listings: the next run lists again
    return removed
