"""Fair tuning (`tune:` in a sweep file): owns the two-phase protocol; never changes how one run trains.

Phase 1 tunes every compared grid cell with the same Optuna budget on the validation split (each trial an
ordinary archbench run tagged `role: trial`, test split withheld); phase 2 trains each cell's best
configuration over `tune.seeds` and evaluates it on test (`role: final`). Modules, in data order:
plan.py (pure: cells, trial and final run specs), study.py (Optuna storage, sampling, stale trials, budget),
trials.py (a trial where it trains: epochs reported to the shared storage, the pruner asked there),
protocol.py (the loop, side effects), summary.py (summary.json, the report's tuning section and figures).
"""

from __future__ import annotations

from archbench.tune.protocol import TuneOutcome, run_tuned

__all__ = ["TuneOutcome", "run_tuned"]
