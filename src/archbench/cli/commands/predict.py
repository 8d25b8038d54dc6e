"""`archbench predict RUN_DIR INPUT`: owns the command line of prediction; archbench.ship.predict does it.

An image folder → a CSV of class probabilities; a scene file (.yaml) or a GeoTIFF → a map GeoTIFF.
Exit codes: 0 written, 2 invalid input (not a run, no images, unreadable input, bands that differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="a completed run folder (<sweep>/runs/<run_id>)")
    ],
    target: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="a folder of images (searched recursively), or a scene file / GeoTIFF"
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="output CSV (images) or GeoTIFF (scene); default <INPUT>.<run_id>.csv|tif"
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, help="also list the next K-1 classes per image")
    ] = 1,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
) -> None:
    """Predict new images (CSV: path, predicted class, probabilities) or a scene (map GeoTIFF) with a run,
    through the run's own evaluation preprocessing."""
    from archbench.util.errors import ArchbenchError
    from archbench.util.terminal import literal, make_console, one_line

    console, err = make_console(), make_console(stderr=True)
    try:
        from archbench.engine.runtime import resolve_device
        from archbench.ship.load import load_run
        from archbench.ship.predict import predict_input

        dev = resolve_device(device)
        run = load_run(run_dir, dev)
        result = predict_input(run, target, out, top_k, dev)
    except (ArchbenchError, OSError) as exc:
        err.print(f"error: {one_line(exc)}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(
        literal(f"{result.count} {result.what} predicted by {run.run_id} → {result.out}"), soft_wrap=True
    )
