"""From a data spec to its prepared store: identifies the source, derives the key, opens the store and
builds it under the key's lock when it is absent or damaged. Names no dataset: a family opts out of the
cache (`PREPARED_CACHE = False`) or adds to its source's identity (`source_identity`) in its own module.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from archbench.config import DataSpec
from archbench.data.cache.source import Listing, list_source, remember, remembered_source
from archbench.data.cache.store import (
    FORMAT,
    META,
    DamagedCacheError,
    key_lock,
    open_store,
    set_aside,
    versions,
    write_store,
)
from archbench.data.identity import decode_options
from archbench.data.registry import DatasetBundle, build_in_memory, family_module


def cache_root(spec: DataSpec | None = None) -> Path:
    """`data.cache_dir`, else `$ARCHBENCH_CACHE`, else `~/.cache/archbench/data`."""
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


def cache_key(spec: DataSpec, source: dict[str, Any] | None = None) -> str:
    """`<kind>-<digest>` of the store format, the decoding options, the source listing's sha256 and the
    decoders' versions."""
    source = source or list_source(spec).source
    payload = {
        "format": FORMAT,
        "decode": decode_options(spec),
        "source": source["sha256"],
        "versions": versions(),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"{spec.kind}-{digest[:20]}"


def _identify_source(spec: DataSpec, root: Path, full_check: bool) -> tuple[dict[str, Any], Listing | None]:
    """The source's fingerprint, and the full listing it came from (None: the remembered one passed the
    cheap check, which is trusted only when its store exists)."""
    source = None if full_check else remembered_source(spec, root)
    if source is not None and (root / cache_key(spec, source) / META).is_file():
        return source, None
    listing = list_source(
        spec
    )  # the cheap check only ever vouches for a hit: a store is built from a listing
    return listing.source, listing


def _open_or_build(
    spec: DataSpec, root: Path, key: str, source: dict[str, Any], loading: dict[str, Any]
) -> tuple[DatasetBundle, str | None]:
    """Map `root/key`, building it first when absent or damaged (fills `loading`). Returns the bundle
    and, when a damaged store was set aside, where it went and why."""
    store = root / key
    try:
        bundle = open_store(store)
    except DamagedCacheError:
        bundle = None  # checked again, set aside and rebuilt under the key's lock
    if bundle is not None:
        loading.update(cache_hit=True, decode_seconds=0.0)
        return bundle, None
    aside = None
    root.mkdir(parents=True, exist_ok=True)
    with key_lock(root, key) as waited:
        try:
            bundle = open_store(store)  # another process may have built it while we waited
        except DamagedCacheError as exc:
            aside = f"{set_aside(store)}: {exc}"
        if bundle is not None:
            loading.update(cache_hit=True, waited_seconds=round(waited, 3), decode_seconds=0.0)
            return bundle, aside
        built = write_store(spec, root, key, source)
        bundle = open_store(store, verify=False)
        assert bundle is not None
    loading.update(
        cache_hit=False,
        decode_seconds=round(built.decode_seconds, 3),
        prepare_seconds=round(built.prepare_seconds, 3),
    )
    return bundle, aside


def _remember_listing(spec: DataSpec, root: Path, listing: Listing, built: bool) -> None:
    if remember(spec, root, listing) or not built:
        return
    # Listed while the folder was still changing: list again now that decoding took its time, and
    # remember that listing only if the source is still the one this store was keyed by.
    again = list_source(spec)
    if again.source["sha256"] == listing.source["sha256"]:
        remember(spec, root, again)


def prepare(spec: DataSpec, full_check: bool = False) -> tuple[DatasetBundle, dict[str, Any]]:
    """Open the store for `spec`, building it first when absent or damaged. Returns (bundle, loading).

    The source is identified by its remembered listing when the cheap check passes (`remembered_source`),
    else (or with `full_check`) by a full listing, which is then remembered."""
    root = cache_root(spec)
    t0 = time.perf_counter()
    source, listing = _identify_source(spec, root, full_check)
    key = cache_key(spec, source)
    loading: dict[str, Any] = {
        "cache_key": key,
        "cache_dir": str(root),
        "source_files": source["files"],
        "source_check": "listing" if listing is not None else "directories+sample",
    }
    bundle, aside = _open_or_build(spec, root, key, source, loading)
    if aside:
        loading["damaged_store_set_aside"] = aside
    if listing is not None:
        _remember_listing(spec, root, listing, built=not loading["cache_hit"])
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
