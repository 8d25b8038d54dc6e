"""Restricted unpickling for data files (CIFAR batches): admits numpy arrays and plain containers only.

A pickle is a program: `pickle.load` calls whatever global the file names (`os.system`, `eval`, ...).
`safe_load_pickle` resolves globals against a short allow-list and refuses everything else with a
`DatasetError` naming the file and the refused global, before anything is called. It never executes
code from the file and never imports a module the file names.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from archbench.util.errors import DatasetError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes `bytes` into protocol-2 pickles as `_codecs.encode(str, "latin1")`. Only that exact
    # use is admitted, so the codec machinery cannot be pointed at anything else.
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode is only admitted for latin1 text (got {encoding!r})")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) → object for every global a numpy-array pickle needs, under both numpy 1 and 2
    spellings. Built from objects we import ourselves, never from the names in the file."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    # Plain containers and scalars: calling these builds data and nothing else.
    for builtin in (bytes, bytearray, dict, list, tuple, set, frozenset, str, int, float, complex, bool):
        allowed[("builtins", builtin.__name__)] = builtin
        allowed[("__builtin__", builtin.__name__)] = builtin  # Python 2 pickles
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path, allowed: dict[tuple[str, str], Any]) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise DatasetError(
                f"{self._path}: refused to unpickle global '{module}.{name}': only numpy arrays and plain "
                "containers are allowed in a data file (this file may carry executable code; it was not "
                "run). Replace it with a clean copy of the original dataset file."
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError(f"{self._path}: refused a persistent id in a data pickle ({pid!r})")


_PICKLE_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
)


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle `path` (bytes keys stay bytes: Python 2 pickles load with `encoding="bytes"`).

    Raises `DatasetError` naming the file when it is missing, truncated or malformed, or when it names any
    global outside the numpy-array allow-list.
    """
    p = Path(path)
    allowed = _allowed_globals()
    try:
        with p.open("rb") as fh:
            return _RestrictedUnpickler(fh, p, allowed).load()
    except DatasetError:
        raise
    except FileNotFoundError as exc:
        raise DatasetError(f"{p}: file not found") from exc
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc})") from exc
    except _PICKLE_ERRORS as exc:
        raise DatasetError(
            f"{p}: not a complete, valid pickle ({type(exc).__name__}: {exc}); the file is probably "
            "truncated or corrupted — replace it with a fresh copy"
        ) from exc


__all__ = ["safe_load_pickle"]
