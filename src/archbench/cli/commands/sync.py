"""`archbench sync DIR --mlflow-uri URI`: owns its arguments, messages and exit codes (tracking/ works).

Makes MLflow equal to the local records of every sweep under DIR (records are the truth), then empties
each sweep's tracking outbox. Idempotent: a second sync reports every run unchanged and writes nothing.
Exit codes: 0 in sync, 1 the tracking server could not be reached or refused a run, 2 invalid input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from archbench.config import MlflowSpec


def _saved_tracking(sweep_dir: Path) -> MlflowSpec | None:
    """The `tracking.mlflow` section of the sweep's saved sweep file, if it has one and it loads."""
    from archbench.store.layout import SweepLayout
    from archbench.sweep.expand import load_sweep
    from archbench.util.errors import ArchbenchError

    saved = SweepLayout(sweep_dir).sweep_file
    if not saved.is_file():
        return None
    try:
        cfg = load_sweep(saved)
    except (ArchbenchError, OSError):
        return None
    return cfg.tracking.mlflow if cfg.tracking is not None else None


def command(
    path: Annotated[Path, typer.Argument(help="a sweep folder, or the output_dir holding sweeps")],
    mlflow_uri: Annotated[
        str, typer.Option("--mlflow-uri", help="http://host:port of an mlflow server, or sqlite:///file.db")
    ],
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment (default: the sweep's own)")
    ] = None,
    log_models: Annotated[
        bool | None,
        typer.Option(
            "--log-models/--no-log-models",
            help="log each completed run's evaluated checkpoint as a model (default: the sweep file's "
            "tracking.mlflow.log_models)",
        ),
    ] = None,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="per-request timeout")] = 30.0,
) -> None:
    """Make MLflow equal to the local run records (create, complete or fix runs; idempotent)."""
    from archbench.store.results import find_sweep_dirs, iter_records
    from archbench.sweep.endpoints import tracking_uri_problems
    from archbench.tracking import outbox
    from archbench.tracking.mlflow import client, open_sweep, sync_record

    for problem in tracking_uri_problems(mlflow_uri, "--mlflow-uri"):  # before anything is read or made
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(code=2)
    sweeps = find_sweep_dirs(path)
    if not sweeps:
        typer.echo(f"error: {path}: no sweep found (expected a folder with runs/ inside)", err=True)
        raise typer.Exit(code=2)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    failed: list[str] = []
    skipped = 0
    cl = client(mlflow_uri, timeout_s)
    for sd in sweeps:
        records = [(d, r) for d, r, _ in iter_records(sd) if r is not None]
        skipped += sum(1 for _, r, _ in iter_records(sd) if r is None)
        if not records:
            continue
        saved = _saved_tracking(sd)
        name = experiment or (saved.experiment if saved else None) or records[0][1].sweep
        models = log_models if log_models is not None else bool(saved and saved.log_models)
        try:
            target = open_sweep(cl, name, sd, records[0][1].sweep, log_models=models)
        except Exception as exc:
            typer.echo(f"error: {mlflow_uri}: experiment {name!r}: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(code=1) from None
        sweep_failed = False
        for run_dir, rec in records:
            try:
                counts[sync_record(target, run_dir, rec)] += 1
            except Exception as exc:
                failed.append(f"{rec.run_id}: {type(exc).__name__}: {str(exc).strip()[:200]}")
                sweep_failed = True
        if not sweep_failed:
            outbox.clear(sd)
    line = ", ".join(f"{n} {k}" for k, n in counts.items())
    typer.echo(
        f"sync {path} → {mlflow_uri}: {line}" + (f"; {skipped} without a valid record" if skipped else "")
    )
    for f in failed:
        typer.echo(f"  not synced {f}", err=True)
    if failed:
        raise typer.Exit(code=1)
