"""Checkpoints: owns writing them atomically, verifying them on load, and falling back to the last good one.

Format: a plain `torch.save` file (loadable with `torch.load(..., weights_only=True)`) whose zip comment is
`archbench-sha256:<hex>`, the sha256 of the file's bytes as `torch.save` wrote them (comment empty). The
state is serialised once (the one host copy of every tensor) and those bytes are hashed: nothing is walked
or copied a second time. Truncated files fail to unzip, flipped bits fail the digest; both raise
`CheckpointError` naming the file, which is then set aside (`*.bad-N`). Files from before the zip comment
(a `_digest` entry: sha256 over every tensor and value, `state_digest`) still load and verify.
Writes go to a temp file, are fsynced and renamed; the previous good file is kept as `<name>.prev.pt`
while the run trains (resume falls back to it), and removed once the run is finished (`keep_only`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
from pathlib import Path
from typing import Any

import torch

from archbench.util import faults
from archbench.util.errors import CheckpointError, RunFailure
from archbench.util.paths import file_sha256, fsync_dir

__all__ = [
    "check_owner",
    "file_sha256",
    "keep_only",
    "load_checkpoint",
    "load_latest",
    "save_checkpoint",
    "state_digest",
]


def _digest_into(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(repr(k).encode())
            _digest_into(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for v in obj:
            _digest_into(h, v)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def state_digest(state: dict[str, Any]) -> str:
    h = hashlib.sha256()
    _digest_into(h, {k: v for k, v in state.items() if k != "_digest"})
    return h.hexdigest()


def _float_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _float_tensors(v)]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _float_tensors(v)]
    return []


def _all_finite(state: Any) -> bool:
    """One reduction on each device and one read of it (not one read per tensor: each is a GPU sync)."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for t in _float_tensors(state):
        by_device.setdefault(t.device, []).append(torch.isfinite(t.detach()).all())
    return all(bool(torch.stack(flags).all()) for flags in by_device.values())


_writes = 0  # checkpoint writes by this process (for the kill@checkpoint_write:N fault)


_MAGIC = b"archbench-sha256:"
_COMMENT_LEN = len(_MAGIC) + 64
_EOCD = b"PK\x05\x06"  # a zip's end-of-central-directory record: 22 bytes, the last 2 the comment length


def _signature(data: memoryview) -> bytes:
    """What replaces the last two bytes (the empty comment's length) of `torch.save`'s zip: the comment's
    length and the comment, the sha256 of `data` (a zip reader ignores the comment)."""
    if len(data) < 22 or data[-22:-18] != _EOCD or data[-2:] != b"\x00\x00":
        raise ValueError("torch.save did not end its zip with an empty comment")
    comment = _MAGIC + hashlib.sha256(data).hexdigest().encode()
    return struct.pack("<H", len(comment)) + comment


def _signed_digest(raw: bytes) -> tuple[str, str] | None:
    """(stored, actual) sha256 of a signed file's bytes; None for a file without the comment."""
    tail = len(raw) - _COMMENT_LEN
    if tail < 22 or raw[tail - 22 : tail - 18] != _EOCD or not raw[tail:].startswith(_MAGIC):
        return None
    if struct.unpack("<H", raw[tail - 2 : tail])[0] != _COMMENT_LEN:
        return None
    h = hashlib.sha256(memoryview(raw)[: tail - 2])
    h.update(b"\x00\x00")
    return raw[tail + len(_MAGIC) :].decode("ascii", "replace"), h.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write `state` to `path`, keeping the previous complete file as `<stem>.prev.pt`.

    The model's finiteness is one on-device reduction and one read; `torch.save` is the one host copy;
    its bytes are hashed as they are (see the module docstring)."""
    global _writes
    _writes += 1
    if not _all_finite(state.get("model")):
        raise RunFailure("non_finite_weights", f"refusing to save {path}: the model holds NaN/inf")
    buf = io.BytesIO()
    torch.save({k: v for k, v in state.items() if k != "_digest"}, buf)
    body = buf.getbuffer()
    signature = _signature(body)
    body = body[:-2]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if faults.active("enospc@checkpoint"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        with open(tmp, "wb") as f:
            if faults.active("kill@checkpoint_write") or faults.active("kill@checkpoint_write", _writes):
                f.write(body[: len(body) // 2])
                f.flush()
                faults.die()
            f.write(body)
            f.write(signature)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            # Keep the previous complete checkpoint: link it aside, then swap in the new one atomically.
            prev = prev_path(path)
            prev_tmp = prev.with_name(f".{prev.name}.tmp-{os.getpid()}")
            if prev_tmp.exists():
                prev_tmp.unlink()
            os.link(path, prev_tmp)
            os.replace(prev_tmp, prev)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if exc.filename is None:  # write() errors (ENOSPC, EFBIG) carry no path: name the checkpoint
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def prev_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def keep_only(folder: Path, keep: tuple[str, ...]) -> list[Path]:
    """Remove the rollback copies (`best.prev.pt`, `last.prev.pt`) and the checkpoints not in `keep` from a
    finished run's `checkpoints/` folder; returns what was removed. Files set aside as damaged (`*.bad-N`)
    stay for inspection. A file that cannot be removed is left: disk is not worth failing a run for."""
    removed = []
    for name in ("best", "last"):
        path = folder / f"{name}.pt"
        for victim in (prev_path(path), *(() if name in keep else (path,))):
            try:
                victim.unlink()  # removes a link itself, never what it points at
            except OSError:  # absent, or cannot be removed (read-only): left as it is
                continue
            removed.append(victim)
    return removed


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and verify one checkpoint (weights_only=True: tensors and plain containers, no code)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(path, "file not found") from None
    if size == 0:
        raise CheckpointError(path, "empty file (zero bytes)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"unreadable ({exc.strerror or exc})") from None
    signed = _signed_digest(raw)
    if signed is not None and signed[0] != signed[1]:
        raise CheckpointError(path, "content does not match its digest (corrupted bits)")
    data = io.BytesIO(raw)  # read once: these bytes were hashed, these bytes are loaded
    try:
        state = torch.load(data, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, refused global
        raise CheckpointError(
            path, f"unreadable or unsafe ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(path, "not an archbench checkpoint (not a dict)")
    if signed is None:  # the older format: a digest over the loaded values
        if "_digest" not in state:
            raise CheckpointError(path, "not an archbench checkpoint (no digest)")
        if state_digest(state) != state.pop("_digest"):
            raise CheckpointError(path, "content does not match its digest (corrupted bits)")
    return state


def set_aside(path: Path) -> Path:
    n = 0
    while True:
        dest = path.with_name(f"{path.name}.bad-{n}")
        if not dest.exists():
            os.replace(path, dest)
            return dest
        n += 1


def check_owner(path: Path, state: dict[str, Any], owner: dict[str, str] | None) -> None:
    """Raise `CheckpointError` unless the checkpoint says it belongs to `owner` (run id and spec hash)."""
    if owner is None:
        return
    for key, want in owner.items():
        got = state.get(key)
        if got != want:
            raise CheckpointError(
                path, f"belongs to another run ({key} {str(got)[:40]!r}, expected {want!r}); not used"
            )


def load_latest(path: Path, owner: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest good checkpoint among `path` and its `.prev`; damaged or foreign files are set aside.

    `owner` (e.g. {"run_id": ..., "spec_hash": ...}) must match what the checkpoint carries, so a file
    from another run is never resumed. Returns (state or None, notes about files set aside).
    """
    notes: list[str] = []
    for candidate in (path, prev_path(path)):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
            check_owner(candidate, state, owner)
            return state, notes
        except CheckpointError as exc:
            moved = set_aside(candidate)
            notes.append(f"{exc}; set aside as {moved.name}")
    return None, notes
