"""`archbench prepare SWEEP --chips OUT`: owns picking the sweep's scene dataset and reporting the export;
the data package writes the chips (`archbench.data.chip_export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archbench.util.errors import ConfigError


def export_sweep_chips(runs: list[Any], out: Path) -> str:
    """Export the one `raster_patches` dataset of the planned `runs` to `out`; returns the line to print.
    A ConfigError when the sweep has none, or several distinct ones."""
    from archbench.data.chip_export import export_chips
    from archbench.data.identity import decode_identity

    specs = {decode_identity(r.spec.data): r.spec.data for r in runs if r.spec.data.kind == "raster_patches"}
    if not specs:
        kinds = sorted({r.spec.data.kind for r in runs})
        raise ConfigError(
            f"--chips exports a scene's patches (data.kind: raster_patches); the sweep has {', '.join(kinds)}"
        )
    if len(specs) > 1:
        raise ConfigError(
            f"--chips: the sweep has {len(specs)} different raster_patches datasets; pick one with --set "
            "(e.g. --set data.options.patch_size=9)"
        )
    manifest = export_chips(next(iter(specs.values())), out)
    counts = manifest["counts"]
    total = {split: sum(c.values()) for split, c in counts.items()}
    return (
        f"{out}: {total['train']} train and {total['test']} test chips of {len(manifest['band_names'])} "
        f"band(s), {manifest['dtype']}, {len(manifest['class_names'])} classes; use it with "
        f"data: {{kind: raster_folder, root: {out}}}"
    )
