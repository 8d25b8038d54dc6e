"""A claimed run's earlier record: owns deciding whether what an earlier attempt left is trusted.

Called under the run's claim, before anything of this attempt is written. The ways an earlier record is
met, and what becomes of it:
- a symlink anywhere in the run folder: nothing is trusted and nothing written (the run fails);
- no record: a fresh start;
- a record that does not validate, or is another run's (run id, spec hash): set aside, fresh start;
- an older schema, migrated on read: stored again in today's format, then judged like the others;
- completed and verifies (verify.py): trusted, the run is finished (a record without hashes too);
- completed but does not verify: set aside (with its checkpoints when they are what failed), redone;
- pruned tuning trial: finished (its pruner decided);
- "running" with no live owner (we hold the claim): its process was killed; stored as killed, resumed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.store.layout import RunLayout
from archbench.store.record import RunRecord, now_iso, read_record, write_record
from archbench.sweep.expand import PlannedRun


@dataclass
class EarlierRecord:
    """What an earlier attempt of a run left, as this attempt may use it."""

    record: RunRecord | None = None  # the trusted earlier record (None: start afresh)
    events: list[dict[str, Any]] = field(default_factory=list)  # carried into this attempt's record
    symlinks: list[str] = field(default_factory=list)  # planted links found: the run must fail

    def finishes(self, planned: PlannedRun) -> bool:
        """True when the earlier record already ends the run: a completed run that verified, or a pruned
        trial (its pruner decided; rerunning changes nothing)."""
        rec = self.record
        if rec is None:
            return False
        return rec.status == "completed" or (rec.status == "pruned" and planned.is_trial)


def reconcile_earlier_record(run_dir: Path, planned: PlannedRun) -> EarlierRecord:
    """Judge the record an earlier attempt left in `run_dir` (see the module docstring for the cases)."""
    links = unsafe_entries(run_dir)
    if links:
        # Nothing is written into a folder holding a planted link (not even the record: a completed one
        # stays as it is); the run fails and the link stays for inspection.
        return EarlierRecord(symlinks=links)
    layout = RunLayout(run_dir)
    prev = read_record(run_dir)
    if prev is not None and (prev.spec_hash != planned.spec_hash or prev.run_id != planned.run_id):
        prev = None
    if prev is None and layout.record.exists():
        # Invalid, foreign or tampered record: never trusted, kept aside for inspection.
        set_aside(layout.record)
    if prev is not None and prev.migrated_from is not None:
        write_record(run_dir, prev)  # an older schema, migrated on read: store it in today's format
    events: list[dict[str, Any]] = list(prev.events) if prev else []
    if prev is not None and prev.status == "completed":
        why = _untrusted_completed(layout, planned, prev)
        if why is not None:
            events = list(prev.events) + [{"event": "redone", "at": now_iso(), "detail": why[:2000]}]
            prev = None
    if prev is not None and prev.status == "running":
        # We hold the claim, so the process that wrote "running" is gone: it was killed.
        events.append(
            {"event": "owner_died", "at": now_iso(), "detail": "found status running with no live owner"}
        )
        prev = prev.model_copy(update={"status": "killed", "events": events, "ended_at": now_iso()})
        write_record(run_dir, prev)
    return EarlierRecord(prev, events)


def unsafe_entries(run_dir: Path) -> list[str]:
    """Symlinks inside a run folder (a planted `error.txt`, `checkpoints/`, ...): writes would follow them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(run_dir, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                found.append(str(p))
    return found


def set_aside(path: Path) -> Path:
    """Rename `path` to the first free `<name>.untrusted-<n>` beside it (kept for inspection)."""
    n = 0
    while os.path.lexists(path.with_name(f"{path.name}.untrusted-{n}")):
        n += 1
    dest = path.with_name(f"{path.name}.untrusted-{n}")
    os.replace(path, dest)
    return dest


def _untrusted_completed(layout: RunLayout, planned: PlannedRun, prev: RunRecord) -> str | None:
    """Why a completed record cannot be trusted as is (None: it verifies). Sets the record aside, and
    the checkpoints too when they are what failed, so the run is redone: from its own checkpoint when
    only derived files (predictions, history) or stored numbers are damaged, from scratch otherwise."""
    from archbench.store.verify import verify_run

    if not prev.artifacts:
        return None  # written before records carried hashes: kept (verify and ls say it is unverified)
    plan_entry = {"run_id": planned.run_id, "spec_hash": planned.spec_hash}
    verdict = verify_run(layout.run_dir, plan_entry, prev)
    if verdict.ok:
        return None
    ckpt_bad = any(p.startswith("checkpoints/") or "sha256 for checkpoints" in p for p in verdict.problems)
    if ckpt_bad and layout.checkpoints.is_dir():
        set_aside(layout.checkpoints)
    set_aside(layout.record)
    return "; ".join(verdict.problems)
