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
from typing import TYPE_CHECKING, Any

from archbench.config import ExplainSpec, SweepConfig
from archbench.stages.base import Stage, StageContext
from archbench.store.record import StageIndex

if TYPE_CHECKING:
    import torch


@dataclass
class ExplainSettings:
    """The sweep's `explain:` section plus what only the command sets: how to treat a stored image
    selection (reuse, match or new) and the device (None: the stage base's rule, the run's device)."""

    spec: ExplainSpec
    policy: str = "reuse"
    device: str | None = None


class ExplainStage(Stage):
    """What the explain stage adds to the stage base: its settings, its check, its block, its figures."""

    name = "explain"

    def settings(self, cfg: SweepConfig) -> ExplainSettings | None:
        return ExplainSettings(cfg.explain) if cfg.explain is not None and cfg.explain.enabled else None

    def prepare(self, ctx: StageContext) -> None:
        if not ctx.layout.predictions.exists():
            raise FileNotFoundError(f"{ctx.layout.predictions}: missing (the run was never evaluated)")

    def compute(self, ctx: StageContext, device: torch.device, prepared: Any) -> dict[str, Any]:
        from archbench.stages.explain.pipeline import explain_run

        settings: ExplainSettings = ctx.settings
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
