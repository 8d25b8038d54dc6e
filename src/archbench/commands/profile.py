"""`archbench profile MODEL...`: owns the quick-look command line (parsing, table, JSON); measures nothing
itself (archbench.stages.profile does).

Models are built as the published tables build them by default (3 channels, 1000 classes, random weights);
`--in-chans`/`--num-classes` profile other heads. Exit 2 on invalid input before anything is measured;
a model failing at one size shows `error` in its row and the others go on.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
CPU_BATCH_SIZES = (1, 8)  # a batch of 64 through ViT-B/16's training step takes minutes on a laptop CPU
CUDA_BATCH_SIZES = (1, 64)


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        err_console.print(f"error: {option} {text!r}: expected comma-separated positive integers, e.g. 1,64")
        raise typer.Exit(code=2)
    return values


def command(
    models: Annotated[
        list[str],
        typer.Argument(
            help="model names: archbench's (resnet50, vit_b_16...) or timm:NAME; or one sweep folder"
        ),
    ],
    resolutions: Annotated[
        str, typer.Option("--resolutions", help="square input sizes, e.g. 32,64,224")
    ] = "224",
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            help="latency at the first, throughput at the last (default 1,64 on CUDA, 1,8 on CPU)",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    in_chans: Annotated[int, typer.Option("--in-chans", min=1, help="input channels")] = 3,
    num_classes: Annotated[int, typer.Option("--num-classes", min=1, help="classes of the head")] = 1000,
    iters: Annotated[int, typer.Option("--iters", min=1, help="timed iterations per measurement")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="untimed iterations before timing")] = 3,
    budget: Annotated[
        float,
        typer.Option(
            "--budget", min=0.0, help="seconds after which warm-up and timing stop early (0: never)"
        ),
    ] = 5.0,
    amp: Annotated[str, typer.Option("--amp", help="bf16 autocast: auto (CUDA only), on, off")] = "auto",
    channels_last: Annotated[str, typer.Option("--channels-last", help="auto (CUDA only), on, off")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads")] = None,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="measure peak memory")] = True,
    train_step: Annotated[
        bool, typer.Option("--train-step/--no-train-step", help="also time a training step")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Params, MACs/FLOPs, latency, throughput, training step and peak memory of models, one row per size.

    Given one sweep folder instead of model names, runs the sweep's profile stage on its completed runs
    (the stage driver the runner calls; settings from the sweep's `profile:` section).
    """
    from pathlib import Path

    from pydantic import ValidationError

    if len(models) == 1 and (Path(models[0]) / "runs").is_dir():
        raise typer.Exit(code=_profile_sweep(Path(models[0]), device))

    from ..config import ModelSpec, TrainSpec
    from ..errors import ArchbenchError
    from ..models import check_model_name

    sizes = _ints(resolutions, "--resolutions")
    try:
        for name in models:
            check_model_name(name)
        train = TrainSpec(device=device, amp=amp, channels_last=channels_last)  # type: ignore[arg-type]
        specs = [ModelSpec(name=name) for name in models]
    except (ArchbenchError, ValidationError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(code=2) from None

    import torch

    from ..runtime import resolve_device
    from ..stages.profile import profile_models
    from ..stages.profile.measure import ProfileSettings

    try:
        dev = resolve_device(device)
    except ArchbenchError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(code=2) from None
    if threads is not None:
        torch.set_num_threads(threads)
    default_batches = CUDA_BATCH_SIZES if dev.type == "cuda" else CPU_BATCH_SIZES
    settings = ProfileSettings(
        batch_sizes=tuple(_ints(batch_sizes, "--batch-sizes")) if batch_sizes else default_batches,
        warmup=warmup,
        iters=iters,
        memory=memory,
        train_step=train_step,
        budget_s=budget or None,
    )

    with err_console.status("profiling") as status:
        report = profile_models(
            specs, sizes, train, settings, dev, in_chans, num_classes, progress=status.update
        )
    results = report["results"]
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    if any("error" in r for r in results):
        raise typer.Exit(code=1)


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _print_table(report: dict[str, Any]) -> None:
    results = report["results"]
    first: dict[str, Any] = next((r for r in results if "latency_batch" in r), {})
    lat_b, tp_b = first.get("latency_batch", 1), first.get("throughput_batch", "")
    table = Table(title="archbench profile")
    columns = [
        ("model", "left"),
        ("res", "right"),
        ("params", "right"),
        ("GMACs", "right"),
        ("GFLOPs", "right"),
        (f"latency ms p50 (b{lat_b})", "right"),
        ("p90", "right"),
        (f"img/s (b{tp_b})", "right"),
        (f"train step ms (b{tp_b})", "right"),
        ("train img/s", "right"),
        ("peak MB", "right"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if any("error" in r for r in results):
        table.add_column("error", overflow="fold")
    for r in results:
        cells = [
            r["model"],
            str(r["resolution"]),
            _fmt(r.get("params_total"), ","),
            _fmt(r.get("gmacs"), ".3f"),
            _fmt(r.get("gflops"), ".3f"),
            _fmt(r.get("latency_ms_p50"), ".2f"),
            _fmt(r.get("latency_ms_p90"), ".2f"),
            _fmt(r.get("throughput_img_s"), ".1f"),
            _fmt(r.get("train_step_ms"), ".1f"),
            _fmt(r.get("train_throughput_img_s"), ".1f"),
            _fmt(r.get("peak_memory_mb"), ".0f"),
        ]
        if len(table.columns) > len(columns):
            cells.append(r.get("error", ""))
        table.add_row(*cells)
    console.print(table)
    dev = report["device"]
    libs = report["libraries"]
    console.print(
        f"device {dev['type']} ({dev.get('name', '?')}), {report['threads']} threads, amp {report['amp']}, "
        f"channels_last {report['channels_last']}; torch {libs.get('torch')}, "
        f"torchvision {libs.get('torchvision')}",
        highlight=False,
        markup=False,
    )
    memory = "CUDA max_memory_allocated" if dev["type"] == "cuda" else "peak RSS of a fresh subprocess"
    console.print(
        f"{report['flop_note']} Peak memory: {memory}, training step (or inference) at the largest batch.",
        highlight=False,
        markup=False,
    )


def _profile_sweep(sweep_dir: Any, device: str) -> int:
    """The profile stage on every completed run of a sweep folder; returns the exit code."""
    from ..config import ProfileSpec
    from ..errors import ArchbenchError
    from ..results import iter_records
    from ..stages import Outcome, run_stage
    from ..sweep import load_sweep

    try:
        spec = load_sweep(sweep_dir / "sweep.yaml").profile or ProfileSpec()
    except (ArchbenchError, OSError):
        spec = ProfileSpec()
    spec = spec.model_copy(update={"device": device})

    def report(o: Outcome) -> None:
        line = f"{'profiled' if o.status == 'done' else o.status:8s} {o.run_id}"
        if o.block is not None and o.block.get("latency_ms_p50") is not None:
            line += f"  {o.block.get('gmacs', 0):.3f} GMACs  {o.block['latency_ms_p50']:.2f} ms (b1)"
        elif o.reason:
            line += f"  {o.reason}"
        console.print(line, highlight=False, markup=False)

    result = run_stage("profile", [d for d, _, _ in iter_records(sweep_dir)], spec, report=report)
    for problem in result.problems:
        console.print(problem, highlight=False, markup=False)
    return 1 if result.count("failed") else 0
