"""Post-evaluation stages (profile, explain, ...): owns their registry and the context they run in.

A stage is a function `(StageContext) -> dict | None` registered under a name; its result becomes
`record.stages[name]`. Stages read the run from disk (record, checkpoint, predictions) via artifacts.py,
so the same stage runs right after training or later on an already-completed run.
A stage that fails records `{"error": ...}` for that run; the run itself stays completed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SweepConfig
from .record import RunRecord


@dataclass
class StageContext:
    cfg: SweepConfig
    run_dir: Path
    record: RunRecord
    device: Any = None  # the device the runner resolved for this run (None: the stage resolves its own)
    _cache: dict[str, Any] = field(default_factory=dict)

    def bundle(self) -> Any:
        if "bundle" not in self._cache:
            from .artifacts import load_bundle

            self._cache["bundle"] = load_bundle(self.record)
        return self._cache["bundle"]

    def model(self, device: Any = "cpu") -> Any:
        from .artifacts import load_model

        return load_model(self.run_dir, self.record, device)


Stage = Callable[[StageContext], dict[str, Any] | None]
Enabled = Callable[[SweepConfig], bool]
_STAGES: dict[str, tuple[Stage, Enabled]] = {}
# Stage modules, imported by name when a sweep enables them (each registers itself).
STAGE_MODULES = {"profile": "archbench.profile", "explain": "archbench.explain"}


def register_stage(name: str, enabled: Enabled) -> Callable[[Stage], Stage]:
    def deco(fn: Stage) -> Stage:
        _STAGES[name] = (fn, enabled)
        return fn

    return deco


def enabled_stages(cfg: SweepConfig) -> list[tuple[str, Stage]]:
    out = []
    for name, module in STAGE_MODULES.items():
        section = getattr(cfg, name, None)
        if section is None or not getattr(section, "enabled", True):
            continue
        if name not in _STAGES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError:
                continue
        fn, enabled = _STAGES[name]
        if enabled(cfg):
            out.append((name, fn))
    return out


def run_stages(
    cfg: SweepConfig, run_dir: Path, record: RunRecord, only_missing: bool = False, device: Any = None
) -> RunRecord:
    """Run every enabled stage on a completed run; returns the record with its `stages` blocks updated."""
    from .record import update_stage

    ctx = StageContext(cfg, run_dir, record, device=device)
    for name, fn in enabled_stages(cfg):
        if only_missing and name in record.stages and "error" not in record.stages[name]:
            continue
        try:
            out = fn(ctx)
        except Exception as exc:  # a later stage failing must not lose the trained run
            out = {"error": f"{type(exc).__name__}: {exc}"}
        if out is not None:
            record = update_stage(run_dir, name, out)
            ctx.record = record
    return record
