"""The `explain` stage: registers it and documents its record block; the work is in `archbench.explaining`.

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

from typing import Any

from .config import ExplainSpec
from .stages import StageContext, register_stage


@register_stage("explain", enabled=lambda cfg: cfg.explain is not None and cfg.explain.enabled)
def explain_stage(ctx: StageContext) -> dict[str, Any]:
    from .explaining.figures import refresh_figures
    from .explaining.pipeline import explain_run, sweep_of
    from .runtime import resolve_device

    params = ctx.cfg.explain or ExplainSpec()
    device = ctx.device if ctx.device is not None else resolve_device(ctx.record.spec.train.device)
    block = explain_run(
        ctx.run_dir, ctx.record, ctx.bundle(), params, device=device, policy="reuse", model=ctx.model(device)
    )
    try:
        refresh_figures(sweep_of(ctx.run_dir), pending={ctx.record.run_id: block})
    except Exception as exc:  # figures are a convenience; the run's explanations are already saved
        block["figures_error"] = f"{type(exc).__name__}: {exc}"
    return block
