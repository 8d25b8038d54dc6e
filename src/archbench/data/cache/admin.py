"""Maintenance of a cache folder, for `archbench cache ls|verify|clear`: list the stores with their
status and size, check them in full, remove them. Never decodes or builds a store."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.cache.source import SOURCES
from archbench.data.cache.store import META, SPLITS, DamagedCacheError, check_files, key_lock, read_meta


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


def _entry(p: Path) -> StoreEntry:
    """What a folder of the cache is: a store being written, one set aside, or a (complete, damaged or
    incomplete) store."""
    if p.name.startswith(".tmp-"):
        return StoreEntry(p.name[5:], p, "writing", _du(p), None, None, None, None)
    if ".damaged-" in p.name:
        return StoreEntry(p.name.split(".damaged-")[0], p, "set-aside", _du(p), None, None, None, None)
    meta: dict[str, Any] | None
    try:
        meta = read_meta(p)
    except DamagedCacheError:
        meta, status = None, "damaged"
    else:
        status = "ok" if meta is not None else "incomplete"
    if meta is None:
        return StoreEntry(p.name, p, status, _du(p), None, None, None, None)
    samples = sum(int(np.load(p / f"{s}_y.npy", mmap_mode="r").shape[0]) for s in SPLITS)
    return StoreEntry(
        p.name, p, status, _du(p), meta.get("kind"), meta.get("created_at"), samples, meta.get("root")
    )


def list_stores(root: Path) -> list[StoreEntry]:
    """Every store folder under the cache folder `root`, sorted by name."""
    if not root.is_dir():
        return []
    return [_entry(p) for p in sorted(root.iterdir()) if p.is_dir() and p.name not in (".locks", SOURCES)]


def verify_store(store: Path) -> list[str]:
    """Full sha256 check of every file; [] when the store is intact."""
    meta = read_meta(store)
    if meta is None:
        return [f"{store}: no {META} (incomplete store)"]
    return check_files(store, meta, full=True)


def clear_stores(root: Path, keys: list[str] | None = None) -> list[Path]:
    """Remove stores (all, or those whose key is given), each under its key's lock."""
    removed = []
    for entry in list_stores(root):
        if keys and entry.key not in keys:
            continue
        if entry.status == "writing":
            continue  # a live writer; it renames or removes its own folder
        with key_lock(root, entry.key):
            shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    if not keys:
        shutil.rmtree(root / SOURCES, ignore_errors=True)  # remembered listings: the next run lists again
    return removed
