"""A sweep folder's plans: owns plan.json (the current plan), plans/ (every plan the folder has had) and
finding the run folders that a spec already has.

A plan is `{"sweep": name, "runs": [{"run_id", "spec_hash", "axes", "spec", ["role"]}, ...]}`. Each distinct
plan is also kept as `plans/plan-<key>.json`, its key a digest of the runs it plans (run id and spec hash;
tuning trials aside, so a tuned sweep's plan grows in one file as its trials are asked), with the sweep file
it came from and when it was first and last the current plan. Nothing here deletes a run or a plan: a run
that the current plan no longer lists is "not in the current plan", and `ls --all` / `report --all` still
find it. Reads tolerate anything on disk (a malformed entry is skipped, never trusted as a path).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archbench.config import canonical_json
from archbench.store.layout import SweepLayout
from archbench.store.lock import file_lock
from archbench.store.record import RunRecord, now_iso, read_record
from archbench.util.errors import OutputError
from archbench.util.paths import atomic_write_text

_HASH_SUFFIX = re.compile(r"-([0-9a-f]{10})$")


@dataclass(frozen=True)
class PlanChange:
    """How a new plan differs from the folder's current one, by run id."""

    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped)


def read_plan(path: Path) -> dict[str, Any] | None:
    """A plan file as a dict, or None when it is absent or not a JSON object."""
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None


def plan_runs(plan: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """run id -> entry of a plan read from disk (entries that are not objects with a run id are skipped)."""
    runs = (plan or {}).get("runs")
    if not isinstance(runs, list):
        return {}
    return {str(r["run_id"]): r for r in runs if isinstance(r, dict) and "run_id" in r}


def current_plan(sweep_dir: Path) -> dict[str, dict[str, Any]] | None:
    """run id -> entry of plan.json; None when the folder has no readable plan.json."""
    plan = read_plan(SweepLayout(sweep_dir).plan)
    return None if plan is None else plan_runs(plan)


def plan_versions(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every kept plan version, oldest first (by when each was last the current plan)."""
    folder = SweepLayout(sweep_dir).plans
    if not folder.is_dir() or folder.is_symlink():
        return []
    versions = [v for p in sorted(folder.glob("plan-*.json")) if (v := read_plan(p)) is not None]
    return sorted(versions, key=lambda v: str(v.get("last_planned_at") or ""))


def every_planned(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """run id -> its latest entry in any plan the folder has had (the current plan last, so it wins)."""
    out: dict[str, dict[str, Any]] = {}
    for version in plan_versions(sweep_dir):
        out.update(plan_runs(version))
    out.update(current_plan(sweep_dir) or {})
    return out


def plan_key(runs: list[dict[str, Any]]) -> str:
    """The digest naming a plan version: its runs' ids and spec hashes (tuning trials aside)."""
    pairs = sorted([str(r.get("run_id")), str(r.get("spec_hash"))] for r in runs if r.get("role") != "trial")
    return hashlib.sha256(canonical_json(pairs).encode()).hexdigest()[:16]


def plan_change(sweep_dir: Path, run_ids: list[str]) -> PlanChange:
    """What planning `run_ids` adds to the folder's current plan and what it no longer plans (read only;
    nothing when the folder has no plan yet)."""
    current = current_plan(sweep_dir)
    if current is None:
        return PlanChange()
    new = set(run_ids)
    return PlanChange([r for r in run_ids if r not in current], [r for r in current if r not in new])


def save_plan(sweep_dir: Path, plan: dict[str, Any], source_text: str | None) -> None:
    """Make `plan` the current plan (plan.json, and the sweep file beside it) and keep it in plans/; the
    plan it replaces is kept there too (a folder made before plans/ existed gets its old plan filed)."""
    layout = SweepLayout(sweep_dir)
    if layout.plans.is_symlink():  # never written through: it could point anywhere
        raise OutputError(f"{layout.plans} is a symlink; remove it (archbench keeps plan versions there)")
    layout.plans.mkdir(exist_ok=True)
    with file_lock(layout.plan_lock):
        before = read_plan(layout.plan)
        if before is not None:
            _keep_version(layout, before, _read_text(layout.sweep_file), _mtime_iso(layout.plan), False)
        _keep_version(layout, plan, source_text, now_iso(), True)
        atomic_write_text(layout.plan, json.dumps(plan, indent=2))
        if source_text is not None:
            atomic_write_text(layout.sweep_file, source_text)


def _keep_version(
    layout: SweepLayout, plan: dict[str, Any], source: str | None, when: str, current: bool
) -> None:
    """Write (or refresh) the plans/ file of `plan`. An earlier plan already filed is left as it is; the
    current one is stamped now, keeping the trials its file listed (a tuned sweep asks them one by one)."""
    runs = list(plan_runs(plan).values())
    path = layout.plan_version(plan_key(runs))
    old = read_plan(path)
    if old is not None and not current:
        return
    ids = {str(r["run_id"]) for r in runs}
    runs += [r for rid, r in plan_runs(old).items() if r.get("role") == "trial" and rid not in ids]
    version = {
        "sweep": plan.get("sweep"),
        "first_planned_at": (old or {}).get("first_planned_at") or when,
        "last_planned_at": when,
        "sweep_file": source if source is not None else (old or {}).get("sweep_file"),
        "runs": runs,
    }
    atomic_write_text(path, json.dumps(version, indent=2))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _mtime_iso(path: Path) -> str:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        return now_iso()


@dataclass(frozen=True)
class RunFolder:
    """A run folder already in the sweep folder, with the full spec hash it was confirmed to hold."""

    name: str
    spec_hash: str
    record: RunRecord | None  # its valid record, if it has one


def folders_for_specs(sweep_dir: Path, spec_hashes: set[str]) -> dict[str, list[RunFolder]]:
    """spec hash -> the run folders in `runs/` that hold that spec, among `spec_hashes`.

    A folder is a candidate when its name ends with `-<first 10 hex digits of the hash>`; it holds the spec
    only when confirmed by the full hash, in its valid record or else in a plan entry naming it. Tuning
    folders (trials and final runs) are never offered: their ids belong to the tuning protocol."""
    runs_dir = SweepLayout(sweep_dir).runs
    by_prefix = {h[:10]: h for h in spec_hashes}
    if not by_prefix or not runs_dir.is_dir() or runs_dir.is_symlink():
        return {}
    planned: dict[str, dict[str, Any]] | None = None
    out: dict[str, list[RunFolder]] = {}
    for d in sorted(runs_dir.iterdir()):
        m = _HASH_SUFFIX.search(d.name)
        if m is None or m.group(1) not in by_prefix or d.name.startswith("trial-"):
            continue
        if d.is_symlink() or not d.is_dir():
            continue
        rec = read_record(d)
        if rec is not None:
            held, tuned = rec.spec_hash if rec.run_id == d.name else None, rec.tune is not None
        else:
            planned = every_planned(sweep_dir) if planned is None else planned
            entry = planned.get(d.name) or {}
            held, tuned = entry.get("spec_hash"), entry.get("role") is not None
        if held == by_prefix[m.group(1)] and not tuned:
            out.setdefault(held, []).append(RunFolder(d.name, held, rec))
    return out


__all__ = [
    "PlanChange",
    "RunFolder",
    "current_plan",
    "every_planned",
    "folders_for_specs",
    "plan_change",
    "plan_key",
    "plan_runs",
    "plan_versions",
    "read_plan",
    "save_plan",
]
