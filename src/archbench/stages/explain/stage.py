"""The `explain` stage's entry points (`STAGE`) and its record block; the work is in this package's modules.

Runs after evaluation for each run of a sweep with an `explain:` section (and from `archbench explain`).
Importing this module imports no torch. The block stored in `record.stages["explain"]`:

    selection:   {hash, select, images, seed, indices, reused}   the sweep's shared test images
    target:      which class the heatmaps explain (the run's prediction)
    device, input_size, seconds
    methods_run: methods with heatmaps
    methods:     {method: {status: ok|skipped|error, seconds, reason|error, ...}}
                 (gradcam: layer; ig: n_steps, baseline, convergence_delta {mean_abs, max_abs,
                 max_relative, per_image}; attention: residual, heads)
    skipped:     {method: reason}          errors: {method: message}
    paths:       {heatmaps: explain/heatmaps.npz, selection: ../../stages/explain/selection.json,
                  figures: ../../stages/explain/index.json}   (relative to the run folder)
    error_analysis: {n_test, n_mistakes, top1, per_class, best_classes, worst_classes, confused_pairs,
                     confident_mistakes, calibration {bins, ece, mce, bin_edges, bin_count, bin_accuracy,
                     bin_confidence}}
    figures_error: only when the sweep figures could not be redrawn

`heatmaps.npz` holds one N×H×W float32 array in [0, 1] per method (H×W: the run's input size) plus
indices, y_true, targets, confidence, selection_hash and the confident mistakes' images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.config import ExplainSpec, SweepConfig
from archbench.stages import StageContext
from archbench.store.record import StageIndex


@dataclass
class ExplainSettings:
    """The sweep's `explain:` section plus how to treat a stored image selection (reuse, match or new)."""

    spec: ExplainSpec
    policy: str = "reuse"
    device: str | None = None  # None: the device the run trained on (or the caller's)


class ExplainStage:
    """The stage's entry points for the driver (archbench.stages.run_stage)."""

    name = "explain"

    def settings(self, cfg: SweepConfig) -> ExplainSettings | None:
        return ExplainSettings(cfg.explain) if cfg.explain is not None and cfg.explain.enabled else None

    def run_one(self, ctx: StageContext) -> dict[str, Any]:
        import torch

        from archbench.engine.runtime import resolve_device
        from archbench.stages.explain.pipeline import explain_run

        settings: ExplainSettings = ctx.settings
        device = ctx.device
        if device is None:
            device = resolve_device(settings.device or ctx.record.spec.train.device)
            ctx.device = device
        if ctx.record.spec.train.threads is not None:
            torch.set_num_threads(ctx.record.spec.train.threads)
        if not ctx.layout.predictions.exists():
            raise FileNotFoundError(f"{ctx.layout.predictions}: missing (the run was never evaluated)")
        # A new selection is made once, by the first run of a call; every later run reuses it.
        policy = ctx.shared.get("explain_policy", settings.policy)
        block = explain_run(
            ctx.run_dir, ctx.record, ctx.bundle(), settings.spec, device=device, policy=policy
        )
        ctx.shared["explain_policy"] = "reuse"
        return block

    def summarise(self, sweep_dir: Path, settings: Any, shared: dict[str, Any]) -> StageIndex:
        from archbench.stages.explain.figures import refresh_figures

        return StageIndex.model_validate(refresh_figures(sweep_dir))


STAGE = ExplainStage()
