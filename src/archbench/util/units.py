"""Byte sizes as people write them (`8GB`, `512MiB`, `2000000000`): owns parsing them; nothing else."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(v: int | str) -> int:
    """`123`, `"512MB"`, `"1.5GiB"` → bytes (ValueError with what is accepted otherwise)."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v <= 0:
            raise ValueError(f"expected a positive number of bytes, got {v}")
        return v
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(v))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"expected bytes such as 2000000000, '8GB' or '512MiB', got {v!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
