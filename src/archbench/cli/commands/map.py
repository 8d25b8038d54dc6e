"""`archbench map`: owns the map stage's arguments and printing; calls the stage driver the runner calls.

The options are the sweep file's `map:` section (scene, root, rf, rf_trees, window, batch_size, threads,
device) plus --out and --force; an option not given takes the section's default (archbench.config.MapSpec,
the one place they live), except --device, which defaults to auto like every command's. The work is in
archbench.stages.map. Exit codes: 0 ok, 1 a run failed, 2 invalid input or nothing to map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from archbench.util.terminal import make_console, one_line

console = make_console()
err_console = make_console(stderr=True)


def _fail(message: str) -> NoReturn:
    err_console.print(f"error: {one_line(message)}", soft_wrap=True)
    raise typer.Exit(code=2)


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
    window: Annotated[
        int | None,
        typer.Option("--window", min=16, help="read/write window side in pixels (default: as map.window)"),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="patches per forward pass (default: as map.batch_size)"),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="torch CPU threads (default: the run's)")
    ] = None,
    rf_trees: Annotated[
        int | None,
        typer.Option("--rf-trees", min=1, help="trees in the Random Forest (default: as map.rf_trees)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="map runs again even if already mapped")] = False,
) -> None:
    """Predict a land-cover map per run (windowed GeoTIFF), score it against the labels, draw figures."""
    from archbench.engine.runtime import resolve_device
    from archbench.stages.map import map_target
    from archbench.util.errors import ArchbenchError

    given = {
        "scene": str(scene) if scene is not None else None,
        "root": root,
        "rf": rf or None,
        "window": window,
        "batch_size": batch_size,
        "device": device,
        "threads": threads,
        "rf_trees": rf_trees,
    }
    try:
        resolve_device(device)  # a device that is not there fails before any run is touched
        summary = map_target(target, _settings(given, out, force), _print_outcome)
    except ArchbenchError as exc:
        _fail(str(exc))
    rows = [(o.run_id, o.block) for o in summary.outcomes if o.block is not None]
    _print_scores(rows + [(b["name"], b) for b in summary.baselines])
    if summary.exit_code == 2:
        _fail(f"{target}: nothing was mapped (every run was skipped)")
    for d in summary.out_dirs:
        console.print(f"maps, figures and index.json in {d}", highlight=False)
    raise typer.Exit(code=summary.exit_code)


def _settings(given: dict[str, Any], out: Path | None, force: bool) -> Any:
    """The stage's settings: the options given, over MapSpec's defaults."""
    from pydantic import ValidationError

    from archbench.config import MapSpec
    from archbench.stages.map import MapSettings

    try:
        spec = MapSpec(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")
    return MapSettings(spec, out=out, force=force)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"  # None: no labelled pixel in the subset


def _print_outcome(o: Any) -> None:
    line = f"{'mapped' if o.status == 'done' else o.status:8s} {o.run_id}"
    if o.block is not None and "scores" in o.block:
        s = o.block["scores"].get("never_in_training") or o.block["scores"]["all_labelled"]
        line += (
            f"  OA {_fmt(s['overall_accuracy'])}  kappa {_fmt(s['kappa'])}  "
            f"{o.block['prediction']['pixels_per_s']:.0f} px/s"
        )
    elif o.reason:
        line += f"  {o.reason}"
    console.print(line, highlight=False, markup=False)


def _print_scores(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """One row per map (runs, then baselines): OA and kappa on unseen pixels and on all labelled ones."""
    if not rows:
        return
    from archbench.cli.listing import print_full_width

    def fmt(*values: float | None) -> list[str]:
        return [f"{v:.4f}" if v is not None else "" for v in values]

    cols = ["model", "OA unseen", "kappa unseen", "OA all", "kappa all", "map"]
    cells = []
    for name, b in rows:
        sc = b["scores"]
        un = sc.get("never_in_training") or sc["all_labelled"]
        al = sc["all_labelled"]
        cells.append(
            [
                name,
                *fmt(un["overall_accuracy"], un["kappa"]),
                *fmt(al["overall_accuracy"], al["kappa"]),
                str(b["map_path"]),
            ]
        )
    title = "map accuracy (pixels never used in training / all labelled)"
    print_full_width(console, title, cols, cells, tuple(cols[1:5]))
