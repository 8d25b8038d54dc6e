"""The `map` stage: land-cover maps from a satellite scene; owns windowed prediction, map GeoTIFFs, scores
and their figures.

Modules, in the order the data flows: the scene itself (its file, windowed band/label reading) lives in
`archbench.data.scene`, beside the dataset that samples patches from it; `predict` (every valid pixel
classified by its centred patch, window by window, written as a GeoTIFF), `score` (maps against the label
raster), `forest` (the Random-Forest baseline), `figures`, `accuracy` and `area` (bootstrap intervals,
McNemar with Holm, error-adjusted areas: pure), `assess` (their CSVs), `summary` (the sweep-level figures,
tables and index.json) and `stage` (the stage's settings and entry points, `STAGE`, and `map_target` behind
`archbench map`). Importing this package imports no heavy library.
"""

from __future__ import annotations

from archbench.stages.map.stage import STAGE, MapSettings, map_target

__all__ = ["STAGE", "MapSettings", "map_target"]
