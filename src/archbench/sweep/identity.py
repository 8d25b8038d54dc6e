"""Which folder a planned run uses: owns "a run is its spec" (the spec hash its identity, the name a label).

A new spec gets the usual `<label>-<hash10>` folder (`run_id_for`). A spec that already has a folder in the
sweep folder keeps it, whatever label the current grid would give it: adding, removing or reordering grid
axes never retrains (or duplicates) a finished spec, and folders made before this rule need no migration.
Reads the sweep folder (records and plans) and writes nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from archbench.store.plans import RunFolder, folders_for_specs
from archbench.sweep.expand import PlannedRun


def reuse_run_folders(sweep_dir: Path, runs: list[PlannedRun]) -> list[PlannedRun]:
    """`runs` with each spec's existing folder as its run id (tuning runs keep theirs: their ids belong to
    the tuning protocol). Idempotent: a run already named after its folder keeps the name."""
    found = folders_for_specs(sweep_dir, {r.spec_hash for r in runs if r.tune is None})
    out = []
    for r in runs:
        folders = found.get(r.spec_hash) if r.tune is None else None
        chosen = _choose(r.run_id, folders) if folders else r.run_id
        out.append(r if chosen == r.run_id else dataclasses.replace(r, run_id=chosen))
    return out


def _choose(label: str, folders: list[RunFolder]) -> str:
    """The folder a spec uses when it has several (e.g. one retrained under a new label before this rule):
    a completed one first, then the one the current label names, then one with a record (resumable), then
    the first by name."""

    def rank(f: RunFolder) -> tuple[bool, bool, bool, str]:
        completed = f.record is not None and f.record.status == "completed"
        return (not completed, f.name != label, f.record is None, f.name)

    return min(folders, key=rank).name


__all__ = ["reuse_run_folders"]
