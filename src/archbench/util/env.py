"""Process environment variables: owns changing them for a block and putting them back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_env(values: Mapping[str, str] | None = None, *, restore: Iterable[str] = ()) -> Iterator[None]:
    """Set `values` in `os.environ` for the block; on exit put back every variable of `values` and of
    `restore` (the names the block itself may set) as it was before, unset ones unset again."""
    values = dict(values or {})
    saved = {k: os.environ.get(k) for k in [*values, *restore]}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
