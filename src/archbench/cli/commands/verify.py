"""`archbench verify DIR`: owns the command line of verification; archbench.store.verify does the checks.

Prints one verdict per run of the current plan and per other run folder present (literal text). Exit codes:
0 every run of the current plan completed and verified, and every other run folder is intact (a completed
one verified; an unfinished one that the plan no longer lists is only reported); 1 some run did not verify
(or a planned run is not completed); 2 invalid input (no sweep under DIR).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    path: Annotated[Path, typer.Argument(help="a sweep folder, or the output_dir holding sweeps")],
) -> None:
    """Re-hash every artifact, recompute every metric from predictions.npz, check each record's folder."""
    from rich.table import Table

    from archbench.store.results import find_sweep_dirs
    from archbench.store.verify import verify_path
    from archbench.util.terminal import literal, make_console

    console, err = make_console(), make_console(stderr=True)
    if not find_sweep_dirs(path):
        err.print(
            f"error: {literal(path)}: no sweep found (expected a folder with runs/ inside)", soft_wrap=True
        )
        raise typer.Exit(code=2)
    verdicts = verify_path(path)
    table = Table(title=literal(f"verify {path}"))
    for col in ("run_id", "sweep", "status", "verdict"):
        table.add_column(col, overflow="fold")
    for sweep, v in verdicts:
        table.add_row(literal(v.run_id), literal(sweep), literal(v.status), literal(v.text))
    console.print(table)
    bad = [v for _, v in verdicts if not v.intact]
    if bad:
        console.print(
            f"{len(bad)} of {len(verdicts)} runs NOT verified: " + literal(", ".join(v.run_id for v in bad)),
            soft_wrap=True,
        )
        for v in bad:
            console.print(literal(f"  {v.run_id}: {v.text}"), soft_wrap=True)
        raise typer.Exit(code=1)
    unfinished = sum(1 for _, v in verdicts if not v.ok)  # intact: unfinished runs the plan no longer lists
    verified = f"all {len(verdicts)} runs verified"
    if unfinished:
        n_ok = len(verdicts) - unfinished
        verified = (
            f"all {len(verdicts)} runs intact ({n_ok} verified, {unfinished} unfinished, not in the plan)"
        )
    console.print(
        f"{verified}: artifacts match their sha256, every metric recomputes from predictions.npz, every "
        "record sits in its own folder",
        soft_wrap=True,
    )
