"""archbench: one YAML sweep file -> trained, evaluated, recorded runs; owns only the public API surface."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_results(path: Any) -> Any:
    """A pandas DataFrame of a sweep's run records, one row per planned or present run (for notebooks)."""
    from archbench.store.results import load_results as _load

    return _load(path)


__all__ = ["__version__", "load_results"]
