"""Executors: own *where* the runs of a sweep execute (this process, or a Ray cluster), never what a run does.

Every executor calls `runner.execute_run` for each planned run, so claiming, skipping, resuming and the
record rules are the same everywhere; a local and a Ray sweep on the same folder agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ExecutorSpec
    from ..runner import Executor


def create_executor(spec: ExecutorSpec) -> Executor:
    """The executor named by the sweep's `executor:` section (Ray is imported only when asked for)."""
    if spec.kind == "ray":
        from .ray import RayExecutor

        return RayExecutor(spec)
    from .local import LocalExecutor

    return LocalExecutor()
