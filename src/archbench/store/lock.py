"""File locks: owns every `flock` in archbench: the per-run claim (so two sweep processes never train the
same run at once) and `file_lock`, the short blocking lock around a read-merge-write (a record, a data cache
entry, a stage's shared file).

The claim is an exclusive, non-blocking `flock` on `<run_dir>/.lock`, which holds the owner's pid and host
for people to read. The kernel drops the lock when its owner dies, so a dead owner's run is simply claimed
again by the next sweep (no stale-lock heuristics). Lock files are never opened through a symlink
(O_NOFOLLOW): a planted link cannot make archbench create or truncate a file elsewhere.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from archbench.store.layout import RunLayout
from archbench.util.errors import ArchbenchError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class RunBusy(ArchbenchError):
    """Another live process holds the run's claim."""


class RunClaim:
    def __init__(self, run_dir: Path) -> None:
        self.path = RunLayout(run_dir).lock
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
        except OSError as exc:  # e.g. disk full: write() errors carry no path, so name the lock file
            os.close(fd)  # drops the claim
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        self.fd = fd
        return True

    def owner(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def held_by_someone(self) -> bool:
        """Is the run claimed right now (by any process)? A read-only probe: it writes nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)  # a probe creates nothing
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the shared lock if we got it
        return False

    def __enter__(self) -> RunClaim:
        """Acquire the claim (non-blocking); raises RunBusy naming the owner when another process holds it."""
        if self.fd is None and not self.try_acquire():
            raise RunBusy(
                f"{self.path.parent}: claimed by {self.owner()} (a sweep is working on it); try later"
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _open_lock_file(path: Path) -> int:
    """`path` opened read-write, created 0644 if absent, never through a symlink."""
    return os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)


@contextmanager
def file_lock(path: Path) -> Iterator[float]:
    """A blocking, exclusive `flock` on `path` for the body of the `with` (e.g. a record's read-merge-write
    in `update_stage`); yields the seconds spent waiting for another holder.

    Separate from the run claim: the runner holds the claim for a whole run and still updates its record.
    """
    fd = _open_lock_file(path)
    t0 = time.perf_counter()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield time.perf_counter() - t0
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
