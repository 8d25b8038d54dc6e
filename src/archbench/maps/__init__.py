"""Land-cover maps from a satellite scene: owns scenes, windowed prediction, map GeoTIFFs, scores and figures.

Modules, in the order the data flows: `scene` (the scene file and windowed band/label reading), `predict`
(every valid pixel classified by its centred patch, window by window, written as a GeoTIFF), `score`
(maps against the label raster), `forest` (the Random-Forest baseline), `figures`, and `stage` (the
`archbench map` step that ties them to run records). Importing this package imports no heavy library.
"""
