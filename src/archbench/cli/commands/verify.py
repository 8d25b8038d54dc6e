"""`archbench verify DIR [--deep]`: owns the command line of verification; archbench.store.verify does the
checks, and with --deep archbench.engine.reevaluate re-evaluates each completed run's checkpoint.

Prints one verdict per run of the current plan and per other run folder present (literal text). Exit codes:
0 every run of the current plan completed and verified, and every other run folder is intact (a completed
one verified; an unfinished one that the plan no longer lists is only reported); 1 some run did not verify
(or a planned run is not completed, or with --deep does not reproduce); 2 invalid input (no sweep under DIR).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def command(
    path: Annotated[Path, typer.Argument(help="a sweep folder, or the output_dir holding sweeps")],
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="also re-evaluate each completed run's checkpoint on its stored test samples and compare "
            "with predictions.npz (one test-set forward pass per run, in parallel over the cores)",
        ),
    ] = False,
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
    if deep:
        _deep(path, verdicts)
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
        "record sits in its own folder"
        + ("; every checkpoint re-evaluates to its predictions" if deep else ""),
        soft_wrap=True,
    )


def _deep(path: Path, verdicts: list[tuple[str, Any]]) -> None:
    """Add what re-evaluating each completed run (not a tuning trial) finds to its verdict."""
    from archbench.engine.reevaluate import reevaluate_runs
    from archbench.store.results import iter_records

    folders = {(d.parent.parent.name, d.name): d for d, rec, _ in iter_records(path) if rec is not None}
    todo = {
        folders[(sweep, v.run_id)]: v
        for sweep, v in verdicts
        if v.status == "completed" and (sweep, v.run_id) in folders and "metrics" in v.checked
    }
    for folder, problems in reevaluate_runs(list(todo)).items():
        todo[folder].problems.extend(problems)
