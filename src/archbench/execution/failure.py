"""Why a run did not complete: owns turning what a run raised into the status and reason of its record."""

from __future__ import annotations

import errno
import re

from archbench.store.record import Status
from archbench.util.errors import ArchbenchError, RunFailure, RunKilled, RunPruned

# What torch's CPU allocator (and friends) say when the host runs out of memory (e.g. under RLIMIT_AS).
_ALLOC_FAILED = re.compile(r"can't allocate memory|not enough memory|out of memory|std::bad_alloc", re.I)


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failed run: the reason a short kind (`oom`, `disk_full`, ...), the detail what
    a user needs to act on it."""
    import torch

    if isinstance(exc, RunFailure):
        return exc.reason, exc.detail
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or (
        isinstance(exc, RuntimeError) and _ALLOC_FAILED.search(str(exc))
    ):
        return "oom", f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (
            "disk_full",
            f"errno {exc.errno} ({errno.errorcode.get(exc.errno or 0, '?')}) writing {exc.filename}",
        )
    if isinstance(exc, OSError):
        code = errno.errorcode.get(exc.errno or 0, "?")
        return "os_error", f"errno {exc.errno} ({code}) {exc.strerror} on {exc.filename}"
    if isinstance(exc, ArchbenchError):
        return type(exc).__name__, str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


def how_it_ended(exc: Exception) -> tuple[Status, str | None, str]:
    """(status, failure reason, detail) of a run whose training, evaluation or stages raised `exc`:
    pruned (a tuning trial its pruner stopped; no reason), killed (SIGTERM/SIGINT after a checkpoint) or
    failed."""
    if isinstance(exc, RunPruned):
        return "pruned", None, str(exc)
    if isinstance(exc, RunKilled):
        return "killed", "killed", str(exc)
    reason, detail = failure_reason(exc)
    return "failed", reason, detail
