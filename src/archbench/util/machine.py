"""This machine's capacity as a process sees it: owns counting usable cores; reads, never configures."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (as a container, cgroup cpuset or `taskset`
    limits it), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


__all__ = ["usable_cores"]
