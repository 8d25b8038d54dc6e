"""Explanations and error analysis (issue #7): owns heatmaps, the shared image selection and their figures.

Layout, following the data: `selection` picks the same test images for every model of a sweep;
`methods` turns a model and those images into heatmaps (Grad-CAM, integrated gradients, saliency,
attention rollout); `analysis` reads a run's saved predictions (per-class accuracy, confusions, confident
mistakes, calibration); `pipeline` runs one run end to end and writes its files; `figures` draws the
sweep-level grids and tables the report embeds. `stage` holds the stage's entry points
(`STAGE`, for archbench.stages' driver); the CLI lives in `archbench.cli.commands.explain`. Importing this
package imports no torch.
"""

from __future__ import annotations

METHODS = ("gradcam", "ig", "saliency", "attention")

from archbench.stages.explain.stage import STAGE, ExplainSettings  # noqa: E402  (after METHODS, which stage's modules import)

__all__ = ["METHODS", "STAGE", "ExplainSettings"]
