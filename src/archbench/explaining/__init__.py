"""Explanations and error analysis (issue #7): owns heatmaps, the shared image selection and their figures.

Layout, following the data: `selection` picks the same test images for every model of a sweep;
`methods` turns a model and those images into heatmaps (Grad-CAM, integrated gradients, saliency,
attention rollout); `analysis` reads a run's saved predictions (per-class accuracy, confusions, confident
mistakes, calibration); `pipeline` runs one run end to end and writes its files; `figures` draws the
sweep-level grids and tables the report embeds. `archbench.explain` registers the stage; the CLI lives in
`archbench.commands.explain`. Importing this package imports no torch.
"""

METHODS = ("gradcam", "ig", "saliency", "attention")

__all__ = ["METHODS"]
