"""`archbench report DIR`: owns its arguments, messages and exit codes; archbench.report does the work.

Exit codes: 0 report written (even for an incomplete sweep: the report says so), 2 invalid input (no sweep
under DIR, unknown format).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    path: Annotated[Path, typer.Argument(help="a sweep folder, or the output_dir holding sweeps")],
    out: Annotated[Path | None, typer.Option("--out", help="report folder (default: DIR/report)")] = None,
    formats: Annotated[
        str, typer.Option("--formats", help="comma-separated subset of html,md,csv,tex")
    ] = "html,md,csv,tex",
    every_run: Annotated[
        bool, typer.Option("--all", help="also report the runs that the current plan no longer lists")
    ] = False,
) -> None:
    """Write a report from the run records of a sweep's current plan: tables, figures, significance tests,
    provenance."""
    from archbench.report import build_report, parse_formats
    from archbench.util.errors import ArchbenchError

    try:
        fmts = parse_formats(formats)
        result = build_report(path, out, fmts, every_run=every_run)
    except ArchbenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for w in result.warnings:
        typer.echo(f"note: {w}")
    done = f"{result.completed} of {result.runs} runs completed"
    if result.not_completed:
        done += " (" + ", ".join(f"{n} {k}" for k, n in sorted(result.not_completed.items())) + ")"
    typer.echo(f"report: {result.configurations} configuration(s), {done}")
    main = result.html or result.out_dir
    typer.echo(f"wrote {len(result.files)} files to {result.out_dir}; open {main}")
