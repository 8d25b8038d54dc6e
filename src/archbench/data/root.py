"""`data.root`: the one check that the folder a family reads is set and exists, in the two forms the
families need (an error when loading, a line when planning). Reads no file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from archbench.config import DataSpec
from archbench.util.errors import DatasetError


def _given_root(spec: DataSpec) -> tuple[Path | None, bool]:
    """(`data.root` expanded or None when unset, whether it is an existing folder)."""
    if not spec.root:
        return None, False
    root = Path(spec.root).expanduser()
    return root, root.is_dir()


def data_root(spec: DataSpec, how: Callable[[str], str], needs: str = "") -> Path:
    """The existing folder `data.root` names, else a DatasetError ending with `how(<root as text>)`: what
    to put where (`<root>` when unset). `needs` says more about the folder after "needs data.root"."""
    root, exists = _given_root(spec)
    if root is None:
        raise DatasetError(f"data.kind={spec.kind} needs data.root{needs}. {how('<root>')}")
    if not exists:
        raise DatasetError(f"data.root: folder {root} does not exist. {how(str(root))}")
    return root


def planned_root(spec: DataSpec, expected: str) -> tuple[Path | None, list[str]]:
    """For a planning check: (the existing folder, []) or (None, [the one line saying why not, ending
    with `expected`])."""
    root, exists = _given_root(spec)
    if root is None:
        return None, [f"data.kind={spec.kind} needs data.root; {expected}"]
    if not exists:
        return None, [f"data.root={root}: folder does not exist; {expected}"]
    return root, []
