"""`archbench export RUN_DIR --format onnx|torchscript`: owns the command line of export; the work is in
archbench.ship.export.

Exit codes: 0 exported and parity within tolerance, 1 exported but the parity check failed (named), 2 invalid
input (not a run, unknown format, a missing optional dependency).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="a completed run folder (<sweep>/runs/<run_id>)")
    ],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="output file (default <run_id>.onnx or <run_id>.torchscript.pt here)"),
    ] = None,
) -> None:
    """Export a run's evaluated model (dynamic batch axis), check it against PyTorch and write export.json
    (input shape, channel order, normalisation, classes, parity) beside it."""
    from archbench.util.errors import ArchbenchError
    from archbench.util.terminal import literal, make_console, one_line

    console, err = make_console(), make_console(stderr=True)
    try:
        from archbench.ship.export import export_run, parity_problem, require_extra
        from archbench.ship.load import load_run

        require_extra(fmt)  # before the model is loaded: a missing dependency is said at once
        result = export_run(load_run(run_dir), fmt, out)
    except (ArchbenchError, OSError) as exc:
        err.print(f"error: {one_line(exc)}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    parity = result.entry["parity"]
    if not result.parity_ok:
        err.print(f"error: {one_line(parity_problem(result.path, parity))}", soft_wrap=True)
        raise typer.Exit(code=1)
    console.print(
        literal(
            f"{fmt} → {result.path} (max abs difference {parity['max_abs_diff']:.2g} vs PyTorch on "
            f"{', '.join(c['inputs'] for c in parity['checks'] if c['max_abs_diff'] is not None)}); "
            f"metadata in {result.meta_path}"
        ),
        soft_wrap=True,
    )
