"""The source side of the prepared-data cache: lists the files a data spec reads (a `stat` each, never
their content), fingerprints that listing, and remembers it for a cheap check on later opens.

Listing a 100k-file folder costs one stat per file (0.3 s of CPU; seconds on a loaded host). After a
full walk, `<cache>/.sources/<source id>.json` remembers its fingerprint with the stat of every
directory of the tree, and `<source id>-<sha>.listing` its lines. A later open trusts the remembered
fingerprint when every directory's (mtime, ctime, inode, device) is unchanged and a random sample of
SAMPLE_FILES files (all of them in a smaller folder) still has its size and mtime; otherwise it walks
again. A directory changed less than SETTLE_SECONDS before a walk is not remembered (a coarse
timestamp could hide a later change within the same tick). This module never decodes and never writes
a store.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.config import DataSpec
from archbench.data.cache.store import FORMAT
from archbench.data.identity import decode_options
from archbench.data.registry import family_module

SOURCES = ".sources"
SAMPLE_FILES = 256
SETTLE_SECONDS = 2.0


def _source_paths(spec: DataSpec) -> list[Path]:
    paths = [Path(spec.root)] if spec.root else []
    for value in spec.options.values():
        if isinstance(value, str) and value and os.path.exists(value):
            paths.append(Path(value))
    return paths


def _dir_stamp(st: os.stat_result) -> list[int]:
    """What changes when an entry of a directory is added, removed or renamed (mtime, ctime), or when the
    directory itself is replaced (inode, device)."""
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _file_stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


@dataclass
class Listing:
    """One full walk of the source: its fingerprint, and what the remembered listing stores of it."""

    source: dict[str, Any]
    paths: list[str]
    lines: list[str]  # "<path index>/<relative path>\0size\0mtime_ns\n", as hashed
    dirs: dict[str, list[int]]  # "<path index>/<relative dir>/" -> _dir_stamp
    files: dict[str, list[int]]  # "<path index>" -> _file_stamp for file sources
    missing: list[str]
    listed_at: float  # time.time() before the walk


def _walk(path: Path, h: Any, out: Listing, tag: str) -> tuple[int, int]:
    """Feed (relative path, size, mtime_ns) of every file under `path` into `h`, sorted by path:
    returns (files, bytes). One `stat` per file; nothing is read. Also collects each file's line (prefixed
    `tag/`) into `out.lines` and each directory's stat into `out.dirs`, for the remembered listing."""
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
        out.dirs[f"{tag}/{prefix}"] = _dir_stamp(st)
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
    out.lines.extend(f"{tag}/{line}" for line in lines)
    return len(lines), total


def list_source(spec: DataSpec) -> Listing:
    """Walk every path of the source (`data.root` and path-valued options). A family whose data is not
    (only) files adds what else identifies it through its module's `source_identity(spec)` hook."""
    h = hashlib.sha256()
    files, total = 0, 0
    listed_at = time.time()
    paths = _source_paths(spec)
    out = Listing({}, [str(p) for p in paths], [], {}, {}, [], listed_at)
    for i, p in enumerate(paths):
        if p.is_dir():
            f, t = _walk(p, h, out, str(i))
            files, total = files + f, total + t
        elif p.is_file():
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            out.files[str(i)] = _file_stamp(st)
            files, total = files + 1, total + st.st_size
        else:
            h.update(f"missing:{p}\n".encode())
            out.missing.append(str(p))
    extra = getattr(family_module(spec.kind), "source_identity", None)
    if extra is not None:
        h.update(extra(spec).encode())
    out.source = {"sha256": h.hexdigest(), "files": files, "bytes": total}
    return out


def source_fingerprint(spec: DataSpec) -> dict[str, Any]:
    """Cheap fingerprint of the source: a listing (paths, sizes, mtimes), not the file contents."""
    return list_source(spec).source


# ---------------------------------------------------------------- the remembered listing (cache hit path)


def _source_id(spec: DataSpec, paths: list[str]) -> str:
    payload = {
        "format": FORMAT,
        "kind": spec.kind,
        "paths": [os.path.realpath(p) for p in paths],
        "decode": decode_options(spec),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _settled(listing: Listing) -> bool:
    limit = int((listing.listed_at - SETTLE_SECONDS) * 1e9)
    stamps = [s[:2] for s in listing.dirs.values()] + [s[1:3] for s in listing.files.values()]
    return all(max(s) < limit for s in stamps)


def remember(spec: DataSpec, root: Path, listing: Listing) -> bool:
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


def _unchanged(doc: dict[str, Any], paths: list[str], folder: Path) -> bool:
    """The cheap check of a remembered listing (in `folder`) against the file system: the directories
    first, then the sampled files (see `remembered_source`)."""
    if doc["paths"] != paths:
        return False
    for name, want in doc["dirs"].items():
        i, rel = name.split("/", 1)
        if _dir_stamp(os.stat(os.path.join(paths[int(i)], rel))) != want:
            return False
    for i, want in doc["files"].items():
        if _file_stamp(os.stat(paths[int(i)])) != want:
            return False
    if any(os.path.exists(p) for p in doc["missing"]):
        return False
    body = (folder / doc["listing"]).read_bytes()
    for line in _sample_lines(body, int(doc["lines"]), SAMPLE_FILES):
        name, size, mtime = line.decode().split("\0")
        i, rel = name.split("/", 1)
        st = os.stat(os.path.join(paths[int(i)], rel))
        if st.st_size != int(size) or st.st_mtime_ns != int(mtime):
            return False
    return True


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
        return dict(doc["source"]) if _unchanged(doc, paths, root / SOURCES) else None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
