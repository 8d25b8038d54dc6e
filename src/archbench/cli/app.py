"""The `archbench` command line: owns argument parsing, progress display and exit codes; no logic of its own.

Starts fast: torch and the model libraries are imported only when a command needs them.
Exit codes: 0 ok, 1 some runs failed, 2 invalid input (nothing created), 130 stopped by a signal.
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

from archbench.util.errors import ArchbenchError, ConfigError, DatasetError
from archbench.util.terminal import literal, make_console, one_line

app = typer.Typer(
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
) -> tuple[Any, list[Any], str]:
    """Load, expand and check a sweep; `adjust` applies command-line options (e.g. --executor) to the
    loaded config before the planning checks, so the checks see what will actually run."""
    from archbench.sweep.checks import PlanningError, check_plan
    from archbench.sweep.expand import expand_sweep, load_sweep

    try:
        cfg = load_sweep(sweep_file, overrides)
        if adjust is not None:
            cfg = adjust(cfg)
        runs = expand_sweep(cfg)
        if not runs:
            raise ConfigError(f"{sweep_file}: the grid and exclude list leave no run")
        check_plan(cfg, runs)
    except PlanningError as exc:
        # A dry run still lists the plan (e.g. a full-size study on a machine without its data), with
        # what a real run would stop on; a real run stops here: exit 2, nothing created.
        kind = "warning" if dry_run else "error"
        for line in exc.problems:
            err_console.print(f"{kind}: {one_line(line)}", soft_wrap=True)
        if not dry_run:
            raise typer.Exit(code=2) from None
        err_console.print("warning: without --dry-run this sweep would stop here (exit 2)", soft_wrap=True)
        return cfg, runs, sweep_file.read_text(encoding="utf-8")
    except (ConfigError, DatasetError) as exc:
        _config_fail(exc)
    return cfg, runs, sweep_file.read_text(encoding="utf-8")


DRY_RUN_TABLE_ROWS = 50  # a terminal shows this many planned runs as a table; a pipe gets them all


def _print_dry_run(cfg: Any, runs: list[Any], root: Path) -> None:
    """The planned runs: a rich table of the first rows on a terminal, plain tab-separated text otherwise
    (rendering a 10,000-row rich table took most of a dry run's time)."""
    axes_keys = list(cfg.grid)
    title = literal(f"{cfg.name}: {len(runs)} runs → {root}/runs/")
    if not console.is_terminal:
        lines = [title, "\t".join(["#", "run id", *axes_keys])]
        lines += [
            "\t".join([str(i), r.run_id, *(literal(r.axes[k]) for k in axes_keys)])
            for i, r in enumerate(runs, 1)
        ]
        sys.stdout.write("\n".join(lines) + f"\n{len(runs)} runs\n")
        return
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("run id")
    for k in axes_keys:
        table.add_column(k)
    for i, r in enumerate(runs[:DRY_RUN_TABLE_ROWS], 1):
        table.add_row(str(i), r.run_id, *(literal(r.axes[k]) for k in axes_keys))
    console.print(table)
    more = len(runs) - DRY_RUN_TABLE_ROWS
    tail = f" ({more} more not shown; pipe the output to a file for all of them)" if more > 0 else ""
    console.print(f"{len(runs)} runs{tail}", highlight=False)


def _with_executor(cfg: Any, kind: str | None, address: str | None) -> Any:
    """Apply --executor/--address over the sweep's `executor:` section."""
    if kind is None and address is None:
        return cfg
    ex = cfg.executor
    if kind is not None:
        if kind not in ("local", "ray"):
            _config_fail(ConfigError(f"--executor {kind!r}: expected local or ray"))
        ex = ex.model_copy(update={"kind": kind})
    if address is not None:
        ex = ex.model_copy(update={"address": address, "kind": "ray" if kind is None else ex.kind})
    return cfg.model_copy(update={"executor": ex})


def _with_mlflow(cfg: Any, uri: str | None) -> Any:
    """Apply --mlflow-uri over the sweep's `tracking.mlflow` (keeping its experiment and timeout)."""
    from archbench.config import MlflowSpec, TrackingSpec

    if uri is None:
        return cfg
    old = cfg.tracking.mlflow if cfg.tracking is not None else None
    spec = old.model_copy(update={"uri": uri}) if old is not None else MlflowSpec(uri=uri)
    return cfg.model_copy(update={"tracking": TrackingSpec(mlflow=spec)})


def _check_extras(cfg: Any) -> None:
    """Ray and MLflow are optional: say how to get them before anything is created."""
    import importlib.util

    wanted = []
    if cfg.executor.kind == "ray":
        wanted.append(("ray", "executor.kind: ray"))
    if cfg.tracking is not None and cfg.tracking.mlflow is not None:
        wanted.append(("mlflow", "tracking.mlflow"))
    for module, what in wanted:
        if importlib.util.find_spec(module) is None:
            _config_fail(ConfigError(f"{what} needs {module}: pip install 'archbench[cluster]'"))


@app.command()
def run(
    sweep_file: Annotated[Path, typer.Argument(help="the sweep YAML file")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a key: --set train.epochs=1")
    ] = None,
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
) -> None:
    """Train, evaluate and record every configuration of a sweep (skips completed runs, resumes the rest)."""
    cfg, runs, text = _plan(
        sweep_file,
        set_ or [],
        dry_run,
        adjust=lambda c: _with_mlflow(_with_executor(c, executor, address), mlflow_uri),
    )
    _check_extras(cfg)
    from archbench.sweep.expand import sweep_dir

    if dry_run and cfg.tune is not None:
        _print_tune_plan(cfg, runs)
        return
    if dry_run:
        _print_dry_run(cfg, runs, sweep_dir(cfg))
        return

    from archbench.execution.driver import run_sweep
    from archbench.util.paths import ensure_writable_dir

    try:
        ensure_writable_dir(sweep_dir(cfg))
    except ArchbenchError as exc:
        _config_fail(exc)
    stop = {"flag": False}

    def _on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    from archbench.cli.progress import make_reporter

    if cfg.tune is not None:
        _run_tuned(cfg, runs, text, lambda: stop["flag"], progress_every)
    with make_reporter(console, progress_every) as rep:
        try:
            summary = run_sweep(cfg, runs, source_text=text, reporter=rep, should_stop=lambda: stop["flag"])
        except ConnectionError as exc:  # e.g. --address of a Ray cluster that is not there
            err_console.print(f"error: executor {cfg.executor.kind}: {exc}", markup=False, highlight=False)
            raise typer.Exit(code=2) from None
    _print_results(summary.sweep_dir)
    parts = [
        f"{summary.count(k)} {k}"
        for k in ("trained", "skipped", "failed", "killed", "busy")
        if summary.count(k)
    ]
    console.print(literal(f"sweep {cfg.name}: {len(runs)} runs: " + ", ".join(parts)), soft_wrap=True)
    per_node: dict[str, int] = {}
    if summary.nodes:
        for rid, node in summary.nodes.items():
            if summary.outcomes.get(rid) == "skipped":
                continue
            per_node[node] = per_node.get(node, 0) + 1
    if per_node:
        console.print(
            literal("runs per node: " + ", ".join(f"{n}: {c}" for n, c in sorted(per_node.items()))),
            soft_wrap=True,
        )
    if cfg.tracking is not None and cfg.tracking.mlflow is not None:
        from archbench.tracking import outbox

        behind = sorted({e["run_id"] for e in outbox.entries(summary.sweep_dir)})
        if behind:
            console.print(
                literal(
                    f"tracking: {len(behind)} run(s) not yet in MLflow (listed in "
                    f"{summary.sweep_dir / outbox.OUTBOX_NAME}); when the server is back run: "
                    f"archbench sync {summary.sweep_dir} --mlflow-uri {cfg.tracking.mlflow.uri}"
                ),
                soft_wrap=True,
            )
    for rid, reason in summary.reasons.items():
        if summary.outcomes.get(rid) == "failed":
            console.print(literal(f"  failed {rid}: {one_line(reason)}"), soft_wrap=True)
        elif summary.outcomes.get(rid) == "busy":
            console.print(
                literal(f"  busy {rid}: {reason}; another process is working on it, re-run when it is done"),
                soft_wrap=True,
            )
    raise typer.Exit(code=summary.exit_code)


def _print_tune_plan(cfg: Any, cells: list[Any]) -> None:
    from archbench.sweep.expand import compared_axes, sweep_dir

    t = cfg.tune
    axes = compared_axes(cfg)
    lines = [f"{cfg.name}: tune {len(cells)} compared cells → {sweep_dir(cfg)}/"]
    for i, r in enumerate(cells, 1):
        lines.append(f"{i:>4}  " + "  ".join(f"{k}={r.axes.get(k)}" for k in axes))
    console.print(literal("\n".join(lines)), soft_wrap=True)
    space = ", ".join(f"{k} ({p.type})" for k, p in t.space.items())
    epochs = f", at most {t.epochs} epochs" if t.epochs else ""
    console.print(
        literal(
            f"phase 1: {t.trials} trials per cell{epochs} over {space}; {t.metric} on val, "
            f"pruner {t.pruner}\n"
            f"phase 2: the best of each cell with seeds {t.seeds}, evaluated on test "
            f"({len(cells) * (t.trials + len(t.seeds))} runs at most)"
        ),
        soft_wrap=True,
    )


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


def _print_results(path: Path, fmt: str = "table") -> list[dict[str, Any]]:
    from archbench.cli.listing import progress_fields, render_table, sweep_axes, to_json
    from archbench.store.results import find_sweep_dirs, iter_records, record_row, rows_to_csv
    from archbench.store.verify import verify_run
    from archbench.util.paths import atomic_write_text

    records = iter_records(path)
    rows = []
    for d, rec, plan in records:
        row = record_row(d, rec, plan) | progress_fields(d, rec)
        if rec is not None and rec.status == "completed":
            verdict = verify_run(d, plan, rec)  # a run whose files or numbers changed is marked, not trusted
            row["verified"] = "yes" if verdict.ok else "NO"
            if not verdict.ok:
                row["verify_problems"] = "; ".join(verdict.problems)
        rows.append(row)
    if fmt == "json":
        print(to_json(rows), flush=True)
    elif fmt == "csv":
        sys.stdout.write(rows_to_csv(rows))
        sys.stdout.flush()
    else:
        render_table(console, str(path), rows, sweep_axes(records))
    for sd in find_sweep_dirs(path):
        sd_rows = [r for r in rows if r["sweep"] == sd.name]
        try:
            atomic_write_text(sd / "results.csv", rows_to_csv(sd_rows))
        except OSError as exc:  # a full or read-only disk must not stop listing
            err_console.print(literal(f"note: results.csv not written: {exc}"), soft_wrap=True)
    bad = [r["run_id"] for r in rows if r.get("verified") == "NO"]
    if bad:  # on stderr when stdout carries CSV or JSON
        (console if fmt == "table" else err_console).print(
            literal(f"{len(bad)} completed run(s) NOT verified (see `archbench verify`): {', '.join(bad)}"),
            soft_wrap=True,
        )
    return rows


@app.command("ls")
def ls_cmd(
    path: Annotated[Path, typer.Argument(help="a sweep folder, or the output_dir holding sweeps")],
    fmt: Annotated[
        str, typer.Option("--format", help="table (full width, never cut), csv or json")
    ] = "table",
) -> None:
    """List the runs of a sweep (status, grid axes, progress and ETA of running runs, top-1, F1, train
    time) and write results.csv beside them."""
    from archbench.cli.listing import FORMATS
    from archbench.store.results import find_sweep_dirs

    if fmt not in FORMATS:
        _error_line(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        raise typer.Exit(code=2)
    if not find_sweep_dirs(path):
        _error_line(f"{path}: no sweep found (expected a folder with runs/ inside); give a sweep folder")
        raise typer.Exit(code=2)
    _print_results(path, fmt)


@app.command()
def prepare(
    sweep_file: Annotated[Path, typer.Argument(help="the sweep YAML file")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a key: --set data.root=...")
    ] = None,
) -> None:
    """Decode every dataset of a sweep once into the prepared-data cache (later runs map it)."""
    _, runs, _ = _plan(sweep_file, set_ or [])
    from archbench.data.cache import cacheable, prepare
    from archbench.sweep.expand import canonical_json

    seen: set[str] = set()
    for planned in runs:
        spec = planned.spec.data
        ident = canonical_json(
            spec.model_dump(mode="json", exclude={"augment", "resolution", "memory_budget"})
        )
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


cache_app = typer.Typer(no_args_is_help=True, help="The prepared-data cache: list, verify, clear.")
app.add_typer(cache_app, name="cache")
_CacheDir = Annotated[
    Path | None,
    typer.Option("--dir", help="cache folder (default: $ARCHBENCH_CACHE or ~/.cache/archbench/data)"),
]


@cache_app.command("ls")
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


@cache_app.command("verify")
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


@cache_app.command("clear")
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

    for name in ("report", "profile", "explain", "map", "weights", "sync", "models", "datasets", "verify"):
        try:
            module = importlib.import_module(f"archbench.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"archbench.cli.commands.{name}":
                raise
            continue
        app.command(name)(module.command)


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
