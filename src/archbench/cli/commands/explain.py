"""`archbench explain DIR`: owns the command line of the explain stage (options, progress, exit codes).

Parses the options and calls the stage driver (archbench.stages.run_stage), the same one the runner calls
after training: each run's `stages["explain"]` block is stored (claimed, atomic), then the sweep's figures
are redrawn. Settings come
from the sweep's own `explain:` section (its saved sweep.yaml) with the options on top. A stored selection
is reused unless --select/--images/--seed ask for a different one or --reselect forces a new choice.
Exit codes: 0 ok, 1 some run could not be explained, 2 invalid input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code=2)


def _sweep_settings(sweep_dir: Path) -> Any:
    """The sweep's own `explain:` section, or the defaults when it has none (or its file is unreadable)."""
    from archbench.config import ExplainSpec
    from archbench.sweep.expand import load_sweep
    from archbench.util.errors import ArchbenchError

    try:
        cfg = load_sweep(sweep_dir / "sweep.yaml")
    except (ArchbenchError, OSError):
        return ExplainSpec()
    return cfg.explain or ExplainSpec()


def _split_list(values: list[str] | None) -> list[str]:
    return [v.strip() for text in values or [] for v in text.split(",") if v.strip()]


def command(
    sweep_dir: Annotated[Path, typer.Argument(help="a sweep folder (the one holding runs/)")],
    runs: Annotated[
        list[str] | None, typer.Option("--runs", help="only these run ids (repeat, or comma-separate)")
    ] = None,
    images: Annotated[
        int | None,
        typer.Option(
            "--images", min=1, max=256, help="how many test images (default: the sweep's explain: section)"
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="comma-separated: gradcam,ig,saliency,attention (default: the sweep's explain: section)",
        ),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(
            "--select", help="mistakes, correct, random or per-class (default: the sweep's explain: section)"
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="seed of the image choice")] = None,
    reselect: Annotated[
        bool, typer.Option("--reselect", help="choose the images again (from every completed run)")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
) -> None:
    """Heatmaps (Grad-CAM, integrated gradients, saliency, attention) and error analysis of a sweep."""
    from pydantic import ValidationError

    from archbench.config import ExplainSpec
    from archbench.stages.explain import METHODS
    from archbench.store.layout import RUNS_DIR
    from archbench.store.results import find_sweep_dirs

    if not (sweep_dir / RUNS_DIR).is_dir():
        found = find_sweep_dirs(sweep_dir)
        hint = f"; sweeps inside: {', '.join(str(p) for p in found)}" if found else ""
        _fail(f"{sweep_dir}: not a sweep folder (expected runs/ inside){hint}")
    base = _sweep_settings(sweep_dir)
    wanted = _split_list([methods]) if methods is not None else list(base.methods)
    unknown = [m for m in wanted if m not in METHODS]
    if unknown or not wanted:
        _fail(
            f"--methods {methods!r}: unknown {', '.join(unknown) or '(none given)'}; use {','.join(METHODS)}"
        )
    try:
        params = ExplainSpec(
            methods=wanted,
            images=images if images is not None else base.images,
            select=select if select is not None else base.select,  # type: ignore[arg-type]
            seed=seed if seed is not None else base.seed,
        )
    except ValidationError as exc:
        _fail(f"{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
    if device not in ("auto", "cpu", "cuda"):
        _fail(f"--device {device!r}: use cpu, cuda or auto")
    policy = "new" if reselect else "match" if (images, select, seed) != (None, None, None) else "reuse"
    raise typer.Exit(code=explain_sweep(sweep_dir, params, _split_list(runs), policy, device))


def explain_sweep(sweep_dir: Path, params: Any, only: list[str], policy: str, device_name: str) -> int:
    """Explain the chosen completed runs through the stage driver; returns the exit code."""
    from archbench.engine.runtime import resolve_device
    from archbench.stages import Outcome, run_stage
    from archbench.stages.explain import ExplainSettings
    from archbench.store.layout import stage_dir
    from archbench.store.results import iter_records
    from archbench.util.errors import ArchbenchError

    entries = iter_records(sweep_dir)
    known = {d.name for d, _, _ in entries}
    missing = [r for r in only if r not in known]
    if missing:
        _fail(f"--runs: no run {', '.join(missing)} in {sweep_dir} (runs: {', '.join(sorted(known))})")
    try:
        resolve_device(device_name)  # a device that is not there fails before any run is touched
    except ArchbenchError as exc:
        _fail(str(exc))
    todo = [d for d, _, _ in entries if (not only or d.name in only)]

    def report(o: Outcome) -> None:
        if o.status == "skipped":
            line = f"skip     {o.run_id}  ({o.reason})"
        elif o.status == "failed":
            line = f"failed   {o.run_id}: {o.reason}"
        else:
            line = _explained_line(o.run_id, o.block or {})
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    result = run_stage("explain", todo, ExplainSettings(params, policy, device_name), report=report)
    for problem in result.problems:
        console.print(problem, highlight=False, markup=False)
    index = result.indexes.get(sweep_dir)
    if index is not None:
        out = stage_dir(sweep_dir, "explain")
        console.print(f"{len(index.figures)} figures, {len(index.tables)} tables → {out}", highlight=False)
    return 1 if result.count("failed") else 0


def _explained_line(run_id: str, block: dict[str, Any]) -> str:
    ok = ",".join(block["methods_run"]) or "none"
    extra = "".join(f"  {m} skipped" for m in block["skipped"]) + "".join(
        f"  {m} error" for m in block["errors"]
    )
    ece = block["error_analysis"]["calibration"]["ece"]
    return f"explained {run_id}  {ok}{extra}  ECE {ece:.3f}  {block['seconds']:.1f}s"
