"""The prepared-data cache: owns decoding a dataset once into memory-mappable .npy files, and mapping them.

A store is keyed by the fingerprint of the source (every file under `data.root` and under path-valued
options: relative path, size and mtime — never the content, so keying a 1M-image folder costs one `stat`
per file; a cache hit re-uses a remembered listing instead when the cheap check of `remembered_source`
passes — every directory's stat unchanged plus a random sample of files, see there for what it does and
does not detect) and of the decoding options (`data.identity.decode_options`: kind, splits, limits,
`on_bad_file`, `options`; plus the archbench, numpy and Pillow versions). `<cache>` is `data.cache_dir`,
else `$ARCHBENCH_CACHE`, else `~/.cache/archbench/data`. One writer per key holds
`<cache>/.locks/<key>.lock` (flock, blocking); other processes wait on it, then map what the writer left.
A store failing its checks is renamed `<key>.damaged-<time>` and rebuilt.

By concern:
    source.py   listing and fingerprinting the source folder; the remembered listing and its cheap check
    store.py    one store on disk: its format, atomic build, checks, memory-mapping
    lookup.py   spec → key → store: `prepare`, `open_or_prepare`
    admin.py    what `archbench cache ls|verify|clear` use
"""

from archbench.data.cache.admin import StoreEntry, clear_stores, list_stores, verify_store
from archbench.data.cache.lookup import cache_key, cache_root, cacheable, open_or_prepare, prepare
from archbench.data.cache.source import SOURCES, remembered_source, source_fingerprint
from archbench.data.cache.store import DamagedCacheError, open_store

__all__ = [
    "SOURCES",
    "DamagedCacheError",
    "StoreEntry",
    "cache_key",
    "cache_root",
    "cacheable",
    "clear_stores",
    "list_stores",
    "open_or_prepare",
    "open_store",
    "prepare",
    "remembered_source",
    "source_fingerprint",
    "verify_store",
]
