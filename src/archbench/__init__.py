"""archbench: one YAML sweep file -> trained, evaluated, recorded runs; owns only the public API surface.

The Python API lives in archbench.api and is imported on first use, so `import archbench` (and the CLI's
start-up) stays light: `run(sweep)` trains a sweep and returns its runs as a DataFrame, `plan(sweep)` lists
what it would train, `load_results(path)` reads a sweep's records, `load_run(run_dir)` loads one run
(model, preprocessing, predictions, history) for use. Their types are in `__init__.pyi` (the lazy-loading
stub pattern): type checkers read it; at run time `__getattr__` imports the API by name, so the package
root imports no layer of its own (import-linter's layers stay intact).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_API = ("Run", "load_run", "plan", "run")


def load_results(path: Any) -> Any:
    """A pandas DataFrame of a sweep's run records, one row per planned or present run (for notebooks)."""
    from archbench.store.results import load_results as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("archbench.api"), name)
    raise AttributeError(f"module 'archbench' has no attribute {name!r}")


__all__ = ["Run", "__version__", "load_results", "load_run", "plan", "run"]
