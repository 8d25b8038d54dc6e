"""The `profile` stage: a network's cost (params, MACs/FLOPs, latency, throughput, training step, peak
memory); owns the stage's entry points, never trains.

Modules, following the data: `target` (what is profiled: architecture, input size, the run's training
settings), `counting` (params and FLOPs), `timing`, `memory`, `measure` (one target at one size → a plain
dict), `conditions` (the load, threads and spread it was measured under, and whether that was noisy), and
`stage` (a run's `stages.profile` block, the sweep's profile table, and `profile_models`, the
quick look behind `archbench profile MODEL...|RUN_DIR|SWEEP_DIR`). Importing this package imports no torch.
"""

from __future__ import annotations

from archbench.stages.profile.stage import STAGE, profile_models, profile_record, run_targets, trained_runs

__all__ = ["STAGE", "profile_models", "profile_record", "run_targets", "trained_runs"]
