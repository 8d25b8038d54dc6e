"""The `archbench` command line: owns argument parsing, progress display and exit codes; no logic of its own.

Starts fast: torch and the model libraries are imported only when a command needs them.
Exit codes: 0 ok, 1 some runs failed, 2 invalid input (nothing created), 3 some runs left busy (claimed by
another live process), 130 stopped by a signal (cli/conventions.py's EXIT_CODES says each in full).
Every error is one line (what, where, how to fix) without a traceback; `archbench --debug …` (or
ARCHBENCH_DEBUG=1) shows the traceback. User text is printed literally (terminal.py).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from archbench.cli.conventions import CONTEXT_SETTINGS, FlagCommand, FlagGroup, show_version
from archbench.cli.sweep_output import (
    print_dry_run,
    print_plan_change,
    print_sweep_summary,
    print_tune_plan,
    print_waiting,
)
from archbench.util.errors import ArchbenchError, ConfigError, DatasetError
from archbench.util.terminal import literal, make_console, one_line

app = typer.Typer(
    cls=FlagGroup,
    context_settings=CONTEXT_SETTINGS,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compare image-classification architectures.",
)
console = make_console()
err_console = make_console(stderr=True)
_debug = {"on": os.environ.get("ARCHBENCH_DEBUG", "") not in ("", "0")}


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=show_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    if debug:
        _debug["on"] = True


def _error_line(message: object) -> None:
    err_console.print(f"error: {one_line(message)}", soft_wrap=True)


def _config_fail(exc: Exception) -> None:
    _error_line(exc)
    raise typer.Exit(code=2)


def _plan(
    sweep_file: Path,
    overrides: list[str],
    dry_run: bool = False,
    adjust: Callable[[Any], Any] | None = None,
    extras: bool = False,
) -> tuple[Any, list[Any], str]:
    """Load, expand and check a sweep (archbench.sweep.checks.check_sweep, shared with the Python API);
    `adjust` applies command-line options (e.g. --executor) to the loaded config before the planning
    checks, so the checks see what will actually run; `extras`: then check the optional libraries it needs."""
    from archbench.sweep.checks import PlanningError, check_extras, check_sweep

    try:
        checked = check_sweep(sweep_file, overrides, adjust=adjust, dry_run=dry_run)
    except PlanningError as exc:
        # A real run stops here: exit 2, nothing created.
        for line in exc.problems:
            err_console.print(f"error: {one_line(line)}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    except (ConfigError, DatasetError) as exc:
        _config_fail(exc)
    if checked.problems:
        # A dry run still lists the plan (e.g. a full-size study on a machine without its data), with
        # what a real run would stop on.
        for line in checked.problems:
            err_console.print(f"warning: {one_line(line)}", soft_wrap=True)
        err_console.print("warning: without --dry-run this sweep would stop here (exit 2)", soft_wrap=True)
    if extras:
        try:
            check_extras(checked.cfg)
        except ConfigError as exc:
            _config_fail(exc)
    return checked.cfg, checked.runs, checked.source_text


def _with_mlflow(cfg: Any, uri: str | None) -> Any:
    """Apply --mlflow-uri over the sweep's `tracking.mlflow` (keeping its experiment and timeout)."""
    from archbench.config import MlflowSpec, TrackingSpec

    if uri is None:
        return cfg

    old = cfg.tracking.mlflow if cfg.tracking is not None else None
    spec = old.model_copy(update={"uri": uri}) if old is not None else MlflowSpec(uri=uri)
    return cfg.model_copy(update={"tracking": TrackingSpec(mlflow=spec)})


_SweepFile = Annotated[Path, typer.Argument(help="the sweep YAML file")]


def _set_option(example: str) -> Any:
    """The `--set KEY=VALUE` option (repeatable); `example` is shown in its help."""
    return typer.Option("--set", help=f"override a key: --set {example}")


_RunOverrides = Annotated[list[str] | None, _set_option("train.epochs=1")]
_PrepareOverrides = Annotated[list[str] | None, _set_option("data.root=...")]


@app.command(cls=FlagCommand)
def run(
    sweep_file: _SweepFile,
    set_: _RunOverrides = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the expanded runs and exit")] = False,
    executor: Annotated[
        str | None, typer.Option("--executor", help="local (one run at a time here) or ray")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="ray: 'auto' or HOST:PORT of a running cluster; omit for a local one"),
    ] = None,
    mlflow_uri: Annotated[
        str | None, typer.Option("--mlflow-uri", help="mirror runs into MLflow (http://… or sqlite:///…)")
    ] = None,
    progress_every: Annotated[
        float | None,
        typer.Option(
            "--progress-every",
            help="seconds between progress lines when the output is not a terminal "
            "(default $ARCHBENCH_PROGRESS_EVERY or 10)",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="wait for runs other live processes hold, then count them done or finish them here"
        ),
    ] = False,
) -> None:
    """Train, evaluate and record every configuration of a sweep (skips completed runs, resumes the rest)."""
    from archbench.sweep.checks import with_executor
    from archbench.sweep.expand import sweep_dir

    cfg, runs, text = _plan(
        sweep_file,
        set_ or [],
        dry_run,
        adjust=lambda c: _with_mlflow(with_executor(c, executor, address), mlflow_uri),
        extras=True,
    )

    if wait and cfg.tune is not None:
        _config_fail(ConfigError("--wait: a tuned sweep hands trials held elsewhere back to the study"))
    if cfg.tune is None:  # a spec that already has a folder there keeps it (sweep/identity.py)
        from archbench.sweep.identity import reuse_run_folders

        runs = reuse_run_folders(sweep_dir(cfg), runs)
        print_plan_change(console, sweep_dir(cfg), runs)
    if dry_run and cfg.tune is not None:
        print_tune_plan(console, cfg, runs)
        return
    if dry_run:
        print_dry_run(console, cfg, runs, sweep_dir(cfg))
        return

    _train(cfg, runs, text, wait=wait, progress_every=progress_every)


def _train(cfg: Any, runs: list[Any], text: str, *, wait: bool, progress_every: float | None) -> None:
    """Run a checked sweep: MLflow catch-up, signals, the runs (or the tuning protocol), the results table
    and summary; exits with the sweep's code."""
    from archbench.execution.driver import run_sweep
    from archbench.sweep.expand import sweep_dir
    from archbench.util.paths import ensure_writable_dir

    try:
        ensure_writable_dir(sweep_dir(cfg))
    except ArchbenchError as exc:
        _config_fail(exc)
    from archbench.tracking import catch_up_line

    if line := catch_up_line(cfg, sweep_dir(cfg)):  # MLflow first gets what it has not seen
        console.print(literal(line), soft_wrap=True)
    should_stop = _stop_on_signals()
    from archbench.cli.progress import make_reporter

    if cfg.tune is not None:
        _run_tuned(cfg, runs, text, should_stop, progress_every)
    with make_reporter(console, progress_every) as rep:
        try:
            summary = run_sweep(
                cfg, runs, source_text=text, reporter=rep, should_stop=should_stop, wait=wait,
                on_wait=lambda held: print_waiting(console, held),
            )  # fmt: skip
        except ConnectionError as exc:  # e.g. --address of a Ray cluster that is not there
            err_console.print(f"error: executor {cfg.executor.kind}: {exc}", markup=False, highlight=False)
            raise typer.Exit(code=2) from None
    _print_results(summary.sweep_dir)
    print_sweep_summary(console, cfg, len(runs), summary)
    raise typer.Exit(code=summary.exit_code)


def _stop_on_signals() -> Callable[[], bool]:
    """SIGTERM and SIGINT set a flag instead of killing the process: the current run checkpoints and the
    sweep stops. Returns the flag's reader."""
    stop = {"flag": False}

    def _on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return lambda: stop["flag"]


def _run_tuned(
    cfg: Any, cells: list[Any], text: str, should_stop: Any, progress_every: float | None = None
) -> None:
    """`run` on a sweep with `tune:`: tune each compared cell, then repeat each best over the seeds."""
    from archbench.cli.progress import make_reporter
    from archbench.tune import run_tuned

    with make_reporter(console, progress_every) as rep:
        out = run_tuned(cfg, cells, source_text=text, reporter=rep, should_stop=should_stop)
    _print_results(out.summary.sweep_dir)

    def counts(outcomes: dict[str, str]) -> str:
        kinds = ("trained", "pruned", "skipped", "failed", "killed", "busy")
        parts = [f"{n} {k}" for k in kinds if (n := sum(1 for v in outcomes.values() if v == k))]
        return ", ".join(parts) or "none"

    requeued = f" ({out.requeued} requeued from a dead process)" if out.requeued else ""
    console.print(
        literal(
            f"sweep {cfg.name}: tuning trials this time: {counts(out.trials)}{requeued}; "
            f"final runs: {counts(out.finals)}"
        ),
        soft_wrap=True,
    )
    for label in out.cells_without_best:
        console.print(literal(f"  {label}: no trial completed, so no final runs"), soft_wrap=True)
    for rid, outcome in out.finals.items():
        if outcome == "failed":
            console.print(literal(f"  failed {rid}: {out.summary.reasons.get(rid)}"), soft_wrap=True)
    raise typer.Exit(code=out.exit_code)


def _print_results(
    path: Path, fmt: str = "table", every_run: bool = False, wide: bool = False
) -> list[dict[str, Any]]:
    """List the runs under `path` (the current plan's; `every_run`: every run the folder has had) and write
    each sweep's results.csv (its current plan and every run folder present, whatever is listed)."""
    from archbench.cli.listing import listed_rows, render_table, sweep_axes, to_json
    from archbench.store.layout import SweepLayout
    from archbench.store.results import find_sweep_dirs, rows_to_csv
    from archbench.util.paths import atomic_write_text

    found, rows = listed_rows(path)
    shown = [(f, r) for f, r in zip(found, rows, strict=True) if every_run or f.in_plan]
    if fmt == "json":
        print(to_json([r for _, r in shown]), flush=True)
    elif fmt == "csv":
        sys.stdout.write(rows_to_csv([r for _, r in shown]))
        sys.stdout.flush()
    else:
        axes = sweep_axes([(f.run_dir, f.record, f.plan) for f, _ in shown])
        render_table(console, str(path), [r for _, r in shown], axes, wide=wide)
    kept = [r for f, r in zip(found, rows, strict=True) if f.in_plan or f.run_dir.is_dir()]
    for sd in find_sweep_dirs(path):
        sd_rows = [r for r in kept if r["sweep"] == sd.name]
        try:
            atomic_write_text(SweepLayout(sd).results, rows_to_csv(sd_rows))
        except OSError as exc:  # a full or read-only disk must not stop listing
            err_console.print(literal(f"note: results.csv not written: {exc}"), soft_wrap=True)
    out = console if fmt == "table" else err_console  # notes go to stderr when stdout carries CSV or JSON
    bad = [r["run_id"] for _, r in shown if r.get("verified") == "NO"]
    if bad:
        out.print(
            literal(f"{len(bad)} completed run(s) NOT verified (see `archbench verify`): {', '.join(bad)}"),
            soft_wrap=not out.is_terminal,
        )
    hidden = len(rows) - len(shown)
    if hidden:
        out.print(
            literal(
                f"{hidden} more run(s) here are not in the current plan (kept; `archbench ls --all {path}`)"
            ),
            soft_wrap=True,
        )
    return [r for _, r in shown]


@app.command("ls", cls=FlagCommand)
def ls_cmd(
    path: Annotated[Path, typer.Argument(help="a sweep folder, or the output_dir holding sweeps")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json (every value in full)")] = "table",
    every_run: Annotated[
        bool, typer.Option("--all", help="every run the folder has had, also those not in the current plan")
    ] = False,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="every column, however wide (on a terminal the table otherwise fits its width, "
            "shortening headers and leaving out the least important columns, which it names)",
        ),
    ] = False,
) -> None:
    """List the runs of a sweep's current plan (status, grid axes, progress and ETA of running runs, top-1,
    F1, train time) and write results.csv beside them."""
    from archbench.cli.listing import FORMATS
    from archbench.store.results import find_sweep_dirs

    if fmt not in FORMATS:
        _error_line(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        raise typer.Exit(code=2)
    if not find_sweep_dirs(path):
        _error_line(f"{path}: no sweep found (expected a folder with runs/ inside); give a sweep folder")
        raise typer.Exit(code=2)
    _print_results(path, fmt, every_run, wide)


@app.command(cls=FlagCommand)
def prepare(
    sweep_file: _SweepFile,
    set_: _PrepareOverrides = None,
    chips: Annotated[
        Path | None,
        typer.Option(
            "--chips",
            help="instead: export the sweep's scene patches (raster_patches) as GeoTIFF chips in this new "
            "folder, a raster_folder dataset",
        ),
    ] = None,
) -> None:
    """Decode every dataset of a sweep once into the prepared-data cache (later runs map it)."""
    _, runs, _ = _plan(sweep_file, set_ or [])
    if chips is not None:
        from archbench.cli.commands.chips import export_sweep_chips

        try:
            console.print(literal(export_sweep_chips(runs, chips)), soft_wrap=True)
        except (ConfigError, DatasetError) as exc:
            _config_fail(exc)
        return
    from archbench.data.cache import cacheable, prepare
    from archbench.data.identity import decode_identity

    seen: set[str] = set()
    for planned in runs:
        spec = planned.spec.data
        ident = decode_identity(spec)
        if ident in seen:
            continue
        seen.add(ident)
        if not cacheable(spec):
            console.print(f"{spec.kind}: not held in the prepared-data cache (decoded by each run)")
            continue
        try:
            bundle, info = prepare(spec, full_check=True)  # a full listing: the source is re-read
        except (ConfigError, DatasetError) as exc:
            _config_fail(exc)
        what = "cached" if info["cache_hit"] else f"decoded in {info['decode_seconds']:.1f}s"
        console.print(
            literal(f"{info['cache_key']}: {what}, {bundle.nbytes / 1e6:.1f} MB in {info['cache_dir']}"),
            highlight=False,
        )


cache_app = typer.Typer(
    cls=FlagGroup, no_args_is_help=True, help="The prepared-data cache: list, verify, clear."
)
app.add_typer(cache_app, name="cache")
_CacheDir = Annotated[
    Path | None,
    typer.Option("--dir", help="cache folder (default: $ARCHBENCH_CACHE or ~/.cache/archbench/data)"),
]


@cache_app.command("ls", cls=FlagCommand)
def cache_ls(cache_dir: _CacheDir = None) -> None:
    """List the prepared datasets: key, status, size, samples, created, source folder."""
    from archbench.data.cache import cache_root, list_stores

    root = cache_dir or cache_root()
    table = Table(title=str(root))
    for col in ("key", "status", "MB", "samples", "created", "root"):
        table.add_column(col)
    entries = list_stores(root)
    for e in entries:
        cells = (e.key, e.status, f"{e.bytes / 1e6:.1f}", e.samples or "", e.created_at or "", e.root or "")
        table.add_row(*(literal(c) for c in cells))  # a folder name may hold control characters
    console.print(table)
    console.print(f"{len(entries)} entries, {sum(e.bytes for e in entries) / 1e6:.1f} MB", highlight=False)


@cache_app.command("verify", cls=FlagCommand)
def cache_verify(
    keys: Annotated[list[str] | None, typer.Argument(help="keys to check (default: all)")] = None,
    cache_dir: _CacheDir = None,
) -> None:
    """Full sha256 check of every file of the stores; exit 1 when one is damaged."""
    from archbench.data.cache import cache_root, list_stores, verify_store

    bad = 0
    for e in list_stores(cache_dir or cache_root()):
        if e.status in ("writing", "set-aside") or (keys and e.key not in keys):
            continue
        problems = verify_store(e.path)
        bad += bool(problems)
        console.print(f"{e.key}: " + ("; ".join(problems) if problems else "ok"), highlight=False)
    raise typer.Exit(code=1 if bad else 0)


@cache_app.command("clear", cls=FlagCommand)
def cache_clear(
    keys: Annotated[list[str] | None, typer.Argument(help="keys to remove (default: all)")] = None,
    cache_dir: _CacheDir = None,
) -> None:
    """Remove prepared datasets (all, or the given keys); runs decode them again when needed."""
    from archbench.data.cache import cache_root, clear_stores

    removed = clear_stores(cache_dir or cache_root(), keys)
    console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}", highlight=False)


def _register_stage_commands() -> None:
    """Each later stage owns its subcommand in archbench/commands/<name>.py (a `command` function)."""
    import importlib

    for name in (
        "report", "profile", "explain", "map", "weights", "sync", "models", "datasets", "verify",
        "predict", "export",
    ):  # fmt: skip
        try:
            module = importlib.import_module(f"archbench.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"archbench.cli.commands.{name}":
                raise
            continue
        app.command(name, cls=FlagCommand)(module.command)


_register_stage_commands()


def main() -> None:  # pragma: no cover - console entry point wrapper
    try:
        app()
    except (ArchbenchError, OSError) as exc:
        # Invalid input or an unusable folder: one line, exit 2 (the traceback only with --debug).
        if _debug["on"]:
            raise
        _error_line(exc)
        sys.exit(2)
    except Exception as exc:
        if _debug["on"]:
            raise
        _error_line(
            f"internal error {type(exc).__name__}: {exc} (run `archbench --debug …` for the traceback "
            "and report it)"
        )
        sys.exit(1)
