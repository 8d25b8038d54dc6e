"""The Python API: owns `run`, `plan` and `load_run` for notebooks and scripts; prints nothing.

`run` goes through the same planning checks as `archbench run` (archbench.sweep.checks.check_sweep) and
writes the same records; what the CLI turns into an exit code is an exception here:

* 2 (invalid input, nothing created): `ArchbenchError` — `ConfigError` for the file or an override,
  `PlanningError` with one line per planning problem in `.problems`, `DatasetError`, `OutputError`,
  `ExecutorUnavailable`;
* 1 (some runs failed): `RunsFailed`; 3 (runs busy in another process): `RunsBusy`; 130 (stopped by
  SIGINT or SIGTERM): `SweepStopped` — each a `SweepIncomplete` carrying the sweep's `results` DataFrame
  and each run's `outcomes`.

`exit_code(exc)` gives the CLI's code for any of them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.ship.load import NotARunError, Preprocessing, Run, load_run
from archbench.util.errors import ArchbenchError, ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from archbench.sweep.checks import CheckedSweep

SweepPath = str | os.PathLike[str]
Overrides = Sequence[str] | Mapping[str, Any]
"""`--set` strings ("train.epochs=1"), or a mapping of the same keys to values ({"train.epochs": 1})."""

__all__ = [
    "ExecutorUnavailable",
    "NotARunError",
    "Preprocessing",
    "Run",
    "RunsBusy",
    "RunsFailed",
    "SweepIncomplete",
    "SweepStopped",
    "exit_code",
    "load_run",
    "plan",
    "run",
]


class ExecutorUnavailable(ConfigError):
    """The executor cannot be reached (e.g. the address of a Ray cluster that is not there)."""


class SweepIncomplete(ArchbenchError):
    """The sweep ran but not every run completed; `results` is the sweep's DataFrame (as `run` returns
    it) and `outcomes` maps each run id of this call to trained, skipped, failed, killed or busy."""

    exit_code = 1

    def __init__(self, message: str, results: pd.DataFrame, outcomes: dict[str, str]) -> None:
        super().__init__(message)
        self.results = results
        self.outcomes = outcomes


class RunsFailed(SweepIncomplete):
    """At least one run failed (its record says why: `failure_reason`)."""

    exit_code = 1


class RunsBusy(SweepIncomplete):
    """Some runs were being trained by another process; run the sweep again when it is done."""

    exit_code = 3


class SweepStopped(SweepIncomplete):
    """SIGINT or SIGTERM stopped the sweep between runs or epochs; running it again resumes."""

    exit_code = 130


def exit_code(exc: BaseException) -> int:
    """The exit code `archbench run` gives for `exc` (0 is never raised)."""
    if isinstance(exc, SweepIncomplete):
        return exc.exit_code
    if isinstance(exc, ArchbenchError | OSError):
        return 2
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def _override_strings(overrides: Overrides | None) -> list[str]:
    """`--set` strings; a mapping's values are written as JSON, which YAML reads back as the same value."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _check(
    sweep: SweepPath, overrides: Overrides | None, executor: str | None, dry_run: bool
) -> CheckedSweep:
    """The CLI's planning sequence: check_sweep (with the executor override applied first), then the
    optional extras the sweep needs."""
    from archbench.sweep.checks import check_extras, check_sweep, with_executor

    checked = check_sweep(
        Path(sweep),
        _override_strings(overrides),
        adjust=lambda cfg: with_executor(cfg, executor, flag="executor="),
        dry_run=dry_run,
    )
    check_extras(checked.cfg)
    return checked


def _plan_frame(checked: CheckedSweep) -> pd.DataFrame:
    import pandas as pd

    from archbench.execution.driver import run_done
    from archbench.sweep.expand import sweep_dir

    root = sweep_dir(checked.cfg)
    rows = [
        {
            "run_id": r.run_id,
            **r.axes,
            "spec_hash": r.spec_hash,
            "done": run_done(root, r),
            "run_dir": str(root / "runs" / r.run_id),
        }
        for r in checked.runs
    ]
    frame = pd.DataFrame(rows)
    frame.attrs["problems"] = list(checked.problems)
    frame.attrs["sweep_dir"] = str(root)
    frame.attrs["tune"] = checked.cfg.tune is not None
    return frame


def plan(sweep: SweepPath, overrides: Overrides | None = None) -> pd.DataFrame:
    """The runs a sweep file would train, one row each: `run_id`, the grid axes, `spec_hash`, `done`
    (already completed with this spec, so `run` skips it) and `run_dir`. Nothing is created.

    `overrides`: `--set` strings ("train.epochs=1") or a mapping ({"train.epochs": 1}). Planning
    problems do not raise here (as with `archbench run --dry-run`): each is issued as a warning and
    listed in `frame.attrs["problems"]`; an invalid file or override raises ConfigError. For a sweep
    with `tune:` the rows are the compared cells (their trials are chosen while tuning).
    """
    checked = _check(sweep, overrides, None, dry_run=True)
    for line in checked.problems:
        warnings.warn(f"planning: {line}", stacklevel=2)
    return _plan_frame(checked)


@contextmanager
def _graceful_stop() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM ask the sweep to stop between steps (as the CLI does), on the main thread only;
    the previous handlers come back afterwards."""
    stop = {"flag": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    saved = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: stop["flag"]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def run(
    sweep: SweepPath,
    *,
    overrides: Overrides | None = None,
    dry_run: bool = False,
    executor: str | None = None,
) -> pd.DataFrame:
    """Train, evaluate and record every run of a sweep file, as `archbench run` does (completed runs are
    skipped, interrupted ones resumed), and return the sweep's runs as `load_results` does, with the
    `outcome` of each run in this call and its `run_dir` (for `load_run`).

    `overrides`: `--set` strings ("train.epochs=1") or a mapping ({"train.epochs": 1}); `executor`:
    "local" or "ray" (the sweep's `executor:` section otherwise); `dry_run`: check and return the plan
    (see `plan`) without training.
    Raises the typed exceptions listed in this module's docstring: ArchbenchError subclasses before
    anything is created, `SweepIncomplete` subclasses after the sweep ran.
    """
    from archbench.sweep.expand import sweep_dir
    from archbench.util.paths import ensure_writable_dir

    checked = _check(sweep, overrides, executor, dry_run)
    if dry_run:
        for line in checked.problems:
            warnings.warn(f"planning: {line}", stacklevel=2)
        return _plan_frame(checked)
    ensure_writable_dir(sweep_dir(checked.cfg))
    from archbench.tracking import catch_up_line

    if said := catch_up_line(checked.cfg, sweep_dir(checked.cfg)):  # as `archbench run` says it
        warnings.warn(said, stacklevel=2)
    with _graceful_stop() as should_stop:
        summary, code = _train(checked, should_stop)
    return _finish(checked, summary, code)


def _train(checked: CheckedSweep, should_stop: Callable[[], bool]) -> tuple[Any, int]:
    """The sweep's SweepSummary (a tuned sweep's: trials and final runs) and the CLI's exit code for it."""
    cfg, runs, text = checked.cfg, checked.runs, checked.source_text
    try:
        if cfg.tune is not None:
            from archbench.tune import run_tuned

            out = run_tuned(cfg, runs, source_text=text, should_stop=should_stop)
            return out.summary, out.exit_code
        from archbench.execution.driver import run_sweep

        summary = run_sweep(cfg, runs, source_text=text, should_stop=should_stop)
        return summary, summary.exit_code
    except ConnectionError as exc:  # e.g. the address of a Ray cluster that is not there
        raise ExecutorUnavailable(f"executor {cfg.executor.kind}: {exc}") from None


def _finish(checked: CheckedSweep, summary: Any, code: int) -> pd.DataFrame:
    """The results DataFrame, or the SweepIncomplete that the exit code `code` stands for."""
    from archbench.store.results import load_results

    results = load_results(summary.sweep_dir)
    if "run_id" in results:
        results["outcome"] = results["run_id"].map(summary.outcomes)
        results["run_dir"] = [str(summary.sweep_dir / "runs" / rid) for rid in results["run_id"]]
    outcomes, name = dict(summary.outcomes), checked.cfg.name
    if code == 130:
        raise SweepStopped(f"sweep {name}: stopped by a signal; run it again to resume", results, outcomes)
    if code == 1:
        failed = [(rid, summary.reasons.get(rid, "")) for rid, o in outcomes.items() if o == "failed"]
        first = (
            f", first {failed[0][0]}: {failed[0][1]}" if failed else " (a tuned cell has no completed trial)"
        )
        raise RunsFailed(f"sweep {name}: {len(failed)} run(s) failed{first}", results, outcomes)
    if code == 3:
        busy = [rid for rid, o in outcomes.items() if o == "busy"]
        raise RunsBusy(
            f"sweep {name}: {len(busy)} run(s) busy in another process ({', '.join(busy)}); run it again "
            "when that process is done",
            results,
            outcomes,
        )
    return results
