"""`archbench map`: owns the map stage's arguments and printing; calls the stage driver the runner calls.

The options are the sweep file's `map:` section (scene, rf, rf_trees, window, batch_size, threads, device)
plus --out and --force; the work is in archbench.stages.map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def command(
    target: Annotated[
        Path, typer.Argument(help="a run folder, a sweep folder (every completed run), or a run id")
    ],
    scene: Annotated[
        Path | None,
        typer.Option("--scene", help="scene YAML file to map (default: the scene each run was trained on)"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="folder for maps, figures, map_scores.csv (default <sweep>/stages/map)"),
    ] = None,
    rf: Annotated[
        bool, typer.Option("--rf", help="also fit, map and score the Random-Forest baseline")
    ] = False,
    root: Annotated[
        str | None, typer.Option("--root", help="folder of the scene's rasters (overrides the scene's root)")
    ] = None,
    window: Annotated[int, typer.Option("--window", min=16, help="read/write window side in pixels")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="patches per forward pass")] = 2048,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads")] = None,
    rf_trees: Annotated[int, typer.Option("--rf-trees", min=1, help="trees in the Random Forest")] = 100,
    force: Annotated[bool, typer.Option("--force", help="map runs again even if already mapped")] = False,
) -> None:
    """Predict a land-cover map per run (windowed GeoTIFF), score it against the labels, draw figures."""
    from rich.console import Console

    from archbench.stages import Outcome
    from archbench.stages.map import MapSettings, map_target
    from archbench.util.errors import ArchbenchError

    console = Console()
    err = Console(stderr=True)
    from archbench.engine.runtime import resolve_device

    try:
        dev = resolve_device(device)
    except ArchbenchError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(code=2) from None

    def report(o: Outcome) -> None:
        line = f"{'mapped' if o.status == 'done' else o.status:8s} {o.run_id}"
        if o.block is not None and "scores" in o.block:
            s = o.block["scores"].get("never_in_training") or o.block["scores"]["all_labelled"]
            line += (
                f"  OA {s['overall_accuracy']:.4f}  kappa {s['kappa']:.4f}  "
                f"{o.block['prediction']['pixels_per_s']:.0f} px/s"
            )
        elif o.reason:
            line += f"  {o.reason}"
        console.print(line, highlight=False, markup=False)

    settings = MapSettings(
        scene=scene, root=root, out=out, rf=rf, window=window, batch_size=batch_size, device=device,
        rf_trees=rf_trees, force=force, threads=threads,
    )  # fmt: skip
    try:
        summary = map_target(target, settings, report, device=dev)
    except ArchbenchError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(code=2) from None
    rows: list[tuple[str, dict[str, Any]]] = [
        (o.run_id, o.block) for o in summary.outcomes if o.block is not None
    ] + [(b["name"], b) for b in summary.baselines]
    if rows:
        from archbench.cli.listing import print_full_width

        cols = ["model", "OA unseen", "kappa unseen", "OA all", "kappa all", "map"]
        cells = []
        for name, b in rows:
            sc = b["scores"]
            un = sc.get("never_in_training") or sc["all_labelled"]
            al = sc["all_labelled"]
            cells.append(
                [
                    name,
                    *(f"{v:.4f}" if v is not None else "" for v in (un["overall_accuracy"], un["kappa"])),
                    *(f"{v:.4f}" if v is not None else "" for v in (al["overall_accuracy"], al["kappa"])),
                    str(b["map_path"]),
                ]
            )
        title = "map accuracy (pixels never used in training / all labelled)"
        print_full_width(console, title, cols, cells, tuple(cols[1:5]))
    for d in summary.out_dirs:
        console.print(f"maps, figures and index.json in {d}", highlight=False)
    raise typer.Exit(code=summary.exit_code)
