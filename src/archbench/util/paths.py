"""Safe names and paths: owns slugging and the rule that every write stays inside the output directory."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import shutil
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(text: str, max_len: int = 48) -> str:
    """A filesystem- and HTML-safe slug; hostile names (`../../x`, NUL, `<script>`) lose their meaning.

    Long or altered names get a short hash suffix so two different names never share a slug.
    """
    s = _SAFE.sub("-", text.replace(os.sep, "-")).strip("-.")
    s = re.sub(r"-{2,}", "-", s) or "x"
    if s != text or len(s) > max_len:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
        s = f"{s[: max_len - 7].rstrip('-.')}-{digest}"
    return s


def safe_join(root: Path, *parts: str) -> Path:
    """Join under `root` and refuse any result that escapes it (symlinks resolved, `..` refused)."""
    root_real = Path(os.path.realpath(root))
    for p in parts:
        if not p or "\x00" in p or p in (".", "..") or "/" in p or "\\" in p or os.path.isabs(p):
            raise ValueError(f"unsafe path component {p!r} under {root}")
    candidate = root_real.joinpath(*parts)
    real = Path(os.path.realpath(candidate))
    if real != root_real and root_real not in real.parents:
        raise ValueError(f"path {candidate} resolves outside {root_real} (symlink?)")
    return candidate


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: Path, what: str = "results folder") -> None:
    """Create `path` (and parents) and prove a file can be written there, or raise `OutputError`.

    Called before a sweep starts, so a file in the way or a read-only folder is one clear error and
    nothing is half-created.
    """
    from archbench.util.errors import OutputError

    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(
                    f"{parent}: exists and is not a folder, so the {what} {path} cannot be created; "
                    "move it or choose another output_dir"
                )
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "?")
        raise OutputError(
            f"{exc.filename or path}: cannot write the {what} ({code}: {exc.strerror}); "
            "make it writable, free space, or choose another output_dir"
        ) from None


_RENAME_EXCHANGE = 2  # linux/fs.h


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)


def replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`, replacing what was there: one atomic exchange where the
    system has it (readers see the old folder or the new one, never a mix), else two renames. The old
    content is removed afterwards; `new` must be a sibling of `target` (same filesystem)."""
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
    elif target.is_dir() and not target.is_symlink() and _rename_exchange(new, target):
        shutil.rmtree(new)  # now holds the previous content
    else:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    fsync_dir(target.parent)
