"""Post-training stages (profile, explain, map): owns their registry and the one driver that both the
runner (right after training) and each stage's CLI command call; the sequence on one run is `base.py`'s.

A stage is a subpackage `archbench.stages.<name>` exposing a module-level `STAGE`, an instance of
`archbench.stages.base.Stage` (which owns the sequence on one run: device, threads, then the stage's work):

    name                                the folder `stages/<name>/`, the record key and the report section
    settings(cfg) -> settings | None    its settings from the sweep file's `<name>:` section (None: off)
    block_for(ctx) -> block             one completed run → its record block (raise StageSkip to skip)
    summarise(sweep_dir, settings, shared) -> StageIndex | None
                                        redraw `<sweep>/stages/<name>/` from every run's block

The driver reads each run from disk (record, checkpoint, predictions), so a stage runs the same right after
training or later on an old run; it stores the block with `update_stage` (lock, re-read, merge, atomic
write). A stage that fails on a run records `{"error": ...}` for it (unless a good block is already there)
and the run itself stays completed. Importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.config import SweepConfig
from archbench.stages.base import Stage, StageContext, StageSkip
from archbench.store.layout import sweep_of
from archbench.store.record import RunRecord, StageIndex

STAGE_NAMES = ("profile", "explain", "map")


def get_stage(name: str) -> Stage:
    """The registered stage `name` (its subpackage is imported on first use)."""
    if name not in STAGE_NAMES:
        raise KeyError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    stage: Stage = importlib.import_module(f"{__name__}.{name}").STAGE
    return stage


def enabled_stages(cfg: SweepConfig) -> list[tuple[str, Any]]:
    """(name, settings) of every stage the sweep file turns on, in pipeline order."""
    out = []
    for name in STAGE_NAMES:
        section = getattr(cfg, name, None)
        if section is None or not getattr(section, "enabled", True):
            continue
        settings = get_stage(name).settings(cfg)
        if settings is not None:
            out.append((name, settings))
    return out


@dataclass
class Outcome:
    run_id: str
    status: str  # done | skipped | failed
    reason: str = ""
    block: dict[str, Any] | None = None


@dataclass
class StageRun:
    """What one driver call did: an outcome per run, the sweep summaries it rewrote, and their problems."""

    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    indexes: dict[Path, StageIndex] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def run_stage(
    name: str,
    run_dirs: Iterable[Path],
    settings: Any,
    *,
    device: Any = None,
    claim: bool = True,
    report: Callable[[Outcome], None] | None = None,
    shared: dict[str, Any] | None = None,
) -> StageRun:
    """Run stage `name` on each completed run, store its blocks, then rewrite each sweep's summary.

    `claim=True` (commands) takes each run's claim, so a run a live sweep is working on is reported busy;
    the runner, which already holds the claim, passes False.
    """
    from archbench.store.lock import RunBusy, RunClaim
    from archbench.store.record import read_record, update_stage

    stage = get_stage(name)
    shared = {} if shared is None else shared
    result = StageRun(name)
    sweeps: list[Path] = []
    fresh: dict[Path, dict[str, Any]] = {}
    for run_dir in run_dirs:
        rec = read_record(run_dir)
        if rec is None or rec.status != "completed":
            why = "no valid record" if rec is None else f"status {rec.status}"
            outcome = Outcome(run_dir.name, "skipped", why)
        else:
            try:
                with RunClaim(run_dir) if claim else nullcontext():
                    outcome = _compute_and_store(stage, run_dir, settings, device, shared, update_stage)
            except RunBusy as exc:
                outcome = Outcome(rec.run_id, "failed", str(exc))
            if outcome.status == "done" and outcome.block is not None:
                fresh[run_dir] = outcome.block
            sweep = sweep_of(run_dir) or run_dir
            if outcome.status != "failed" and sweep not in sweeps:
                sweeps.append(sweep)
        result.outcomes.append(outcome)
        if report is not None:
            report(outcome)
    for sweep in sweeps:
        try:
            index = stage.summarise(sweep, settings, shared)
        except Exception as exc:  # the summary is derived; the runs' blocks are already stored
            msg = f"{type(exc).__name__}: {exc}"
            result.problems.append(f"{sweep}: {name} summary not written: {msg}")
            for run_dir, block in fresh.items():
                if (sweep_of(run_dir) or run_dir) == sweep:
                    update_stage(run_dir, name, {**block, "summary_error": msg})
            continue
        if index is not None:
            result.indexes[sweep] = index
    return result


def _compute_and_store(
    stage: Stage, run_dir: Path, settings: Any, device: Any, shared: dict[str, Any], store: Any
) -> Outcome:
    """One claimed run: the stage's block (or its error) stored in the run's newest record."""
    from archbench.store.record import read_record

    rec = read_record(run_dir)  # re-read under the claim: the block is merged into the newest record
    if rec is None or rec.status != "completed":
        return Outcome(run_dir.name, "skipped", "record vanished or is no longer completed")
    ctx = StageContext(run_dir, rec, settings, device=device, shared=shared)
    try:
        block = stage.block_for(ctx)
    except StageSkip as skip:
        return Outcome(rec.run_id, "skipped", skip.reason, skip.block)
    except Exception as exc:  # a later stage failing must not lose the trained run
        msg = f"{type(exc).__name__}: {exc}"
        previous = rec.stages.get(stage.name)
        if not (isinstance(previous, dict) and "error" not in previous):
            store(run_dir, stage.name, {"error": msg})  # retried on the next `archbench run`
        return Outcome(rec.run_id, "failed", msg)
    store(run_dir, stage.name, block)
    return Outcome(rec.run_id, "done", block=block)


def run_stages(
    cfg: SweepConfig, run_dir: Path, record: RunRecord, only_missing: bool = False, device: Any = None
) -> RunRecord:
    """The runner's call after training: every enabled stage on one completed run it holds the claim of.

    Returns the record as it is on disk afterwards (with the stages' blocks).
    """
    from archbench.store.record import read_record

    for name, settings in enabled_stages(cfg):
        block = record.stages.get(name)
        if only_missing and isinstance(block, dict) and "error" not in block:
            continue
        run_stage(name, [run_dir], settings, device=device, claim=False)
    return read_record(run_dir) or record


__all__ = [
    "STAGE_NAMES",
    "Outcome",
    "Stage",
    "StageContext",
    "StageRun",
    "StageSkip",
    "enabled_stages",
    "get_stage",
    "run_stage",
    "run_stages",
]
