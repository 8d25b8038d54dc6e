"""`archbench profile MODEL...|RUN_DIR|SWEEP_DIR`: owns the quick-look command line (parsing, table, JSON);
measures nothing itself (archbench.stages.profile does).

A run or sweep folder profiles exactly what was trained: each run's model spec (name, stem, pool, freeze,
dropout), input channels, classes and resolution come from its record, and the params measured are
checked against the record's. A name is built as the published tables build it unless told otherwise
(3 channels, 1000 classes, ImageNet stem, avg pool, 224 px; random weights); `--stem`, `--pool`,
`--in-chans`, `--num-classes` take the same values as a sweep, and the output says which were assumed.
`--record` with one sweep folder instead runs the sweep's profile stage (the driver `archbench run` calls
after training; settings from its `profile:` section) and stores each run's block in its record.
Exit 2 on invalid input before anything is measured; a model failing at one size shows `error` in its row
and the others go on.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

from archbench.util.terminal import literal, make_console, one_line

console = make_console()
err_console = make_console(stderr=True)
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


# The longer options, named once here so the command's signature reads as a list.
Models = Annotated[
    list[str],
    typer.Argument(
        metavar="MODEL|RUN_DIR|SWEEP_DIR",
        help="model names (archbench's, e.g. resnet50, vit_b_16, or timm:NAME), run folders or sweep "
        "folders (or an output_dir holding sweeps): a folder profiles exactly what its runs trained",
    ),
]
Resolutions = Annotated[
    str | None,
    typer.Option(
        "--resolutions",
        help="square input sizes, e.g. 32,64,224 (default: 224 for names, each run's own for runs)",
    ),
]
BatchSizes = Annotated[
    str | None,
    typer.Option(
        "--batch-sizes",
        help="latency at the first, throughput at the last (default 1,64 on CUDA, 1,8 on CPU)",
        show_default=False,
    ),
]
InChans = Annotated[int | None, typer.Option("--in-chans", min=1, help="input channels (default 3)")]
NumClasses = Annotated[
    int | None, typer.Option("--num-classes", min=1, help="classes of the head (default 1000)")
]
Stem = Annotated[
    str | None, typer.Option("--stem", help="imagenet (default) or cifar: as model.stem in a sweep")
]
Iters = Annotated[
    int | None,
    typer.Option("--iters", min=1, help="timed iterations per measurement (default: as profile.iters)"),
]
Warmup = Annotated[
    int | None,
    typer.Option("--warmup", min=0, help="untimed iterations before timing (default: as profile.warmup)"),
]
Budget = Annotated[
    float,
    typer.Option("--budget", min=0.0, help="seconds after which warm-up and timing stop early (0: never)"),
]
Memory = Annotated[
    bool | None, typer.Option("--memory/--no-memory", help="measure peak memory (default: on)")
]
TrainStep = Annotated[
    bool | None, typer.Option("--train-step/--no-train-step", help="also time a training step (default: on)")
]
Record = Annotated[
    bool,
    typer.Option(
        "--record",
        help="with one sweep folder: run its profile stage (its profile: settings) and store each "
        "run's block in its record, as archbench run does",
    ),
]


def command(
    models: Models,
    resolutions: Resolutions = None,
    batch_sizes: BatchSizes = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    in_chans: InChans = None,
    num_classes: NumClasses = None,
    stem: Stem = None,
    pool: Annotated[str | None, typer.Option("--pool", help="avg (default) or max: as model.pool")] = None,
    iters: Iters = None,
    warmup: Warmup = None,
    budget: Budget = 5.0,
    amp: Annotated[str, typer.Option("--amp", help="bf16 autocast: auto (CUDA only), on, off")] = "auto",
    channels_last: Annotated[str, typer.Option("--channels-last", help="auto (CUDA only), on, off")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads")] = None,
    memory: Memory = None,
    train_step: TrainStep = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    record: Record = False,
) -> None:
    """Params, MACs/FLOPs, latency, throughput, training step and peak memory of models (by name, or those
    of run and sweep folders), one row per size.

    Given run or sweep folders, profiles exactly what each run trained (read-only); with `--record` and one
    sweep folder, runs the sweep's profile stage through the stage driver instead.
    """
    if record:
        raise typer.Exit(code=_record_stage(models, device))
    sizes = _ints(resolutions, "--resolutions") if resolutions else None
    given = {"stem": stem, "pool": pool, "in_chans": in_chans, "num_classes": num_classes}
    targets, assumed = _targets(models, sizes, given, device, amp, channels_last)
    knobs = {"iters": iters, "warmup": warmup, "memory": memory, "train_step": train_step}
    dev, settings = _measure_settings(device, threads, batch_sizes, budget, knobs)

    from archbench.stages.profile import profile_models

    with err_console.status("profiling") as status:
        report = profile_models(targets, settings, dev, assumed, progress=status.update)
    results = report["results"]
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
        _print_notes(report)
    if any("error" in r for r in results) or any(r.get("params_match_record") is False for r in results):
        raise typer.Exit(code=1)


def _fail(message: str) -> NoReturn:
    err_console.print(f"error: {one_line(message)}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _record_stage(models: list[str], device: str) -> int:
    """`--record`: the sweep's profile stage on its one sweep folder; returns the exit code."""
    from pathlib import Path

    from archbench.store.layout import RUNS_DIR

    if len(models) != 1 or not (Path(models[0]) / RUNS_DIR).is_dir():
        _fail(f"--record takes one sweep folder (a folder with runs/); got {' '.join(models)}")
    return _profile_sweep(Path(models[0]), device)


DEFAULT_TARGET: dict[str, Any] = {
    "stem": "imagenet",
    "pool": "avg",
    "in_chans": 3,
    "num_classes": 1000,
}  # as published


def _targets(
    models: list[str],
    sizes: list[int] | None,
    given: dict[str, Any],
    device: str,
    amp: str,
    channels_last: str,
) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[str]]:
    """(label, Target, facts about a trained run) for every name or folder given, and what was assumed for
    names (options not given); exit 2 on a bad name, a bad option or a folder that is not there."""
    from pathlib import Path

    from pydantic import ValidationError

    from archbench.config import TrainSpec
    from archbench.stages.profile import run_targets, trained_runs
    from archbench.util.errors import ArchbenchError

    targets: list[tuple[str, Any, dict[str, Any]]] = []
    assumed: list[str] = []
    try:
        train = TrainSpec(device=device, amp=amp, channels_last=channels_last)  # type: ignore[arg-type]
        for item in models:
            runs = trained_runs(Path(item))
            if runs is not None:
                if not runs:
                    raise ArchbenchError(f"{item}: no completed run with a record found in this folder")
                targets += run_targets(runs, sizes, train)
                continue
            targets += _named_targets(item, sizes, given, train)
            not_given = [f"{k}={DEFAULT_TARGET[k]}" for k, v in given.items() if v is None]
            if not_given:
                assumed.append(f"{item}: {', '.join(not_given)}")
    except (ArchbenchError, ValidationError) as exc:
        _fail(str(exc))
    return targets, assumed


def _named_targets(
    item: str, sizes: list[int] | None, given: dict[str, Any], train: Any
) -> list[tuple[str, Any, dict[str, Any]]]:
    """A model name at every size, built as the published tables build it unless options say otherwise."""
    import os
    from pathlib import Path

    from archbench.config import ModelSpec
    from archbench.models import TIMM_PREFIX, check_model_name, check_model_spec
    from archbench.stages.profile.target import Target
    from archbench.util.errors import ArchbenchError, UnknownModelError

    try:
        check_model_name(item)
    except UnknownModelError:
        if item.startswith(TIMM_PREFIX):
            raise
        if Path(item).exists():  # a file, or an empty folder: trained_runs found no run in it
            raise ArchbenchError(
                f"{item}: not a run or sweep folder (no record.json, no runs/ inside)"
            ) from None
        if "/" in item or os.sep in item:  # meant as a folder, not a model name
            raise ArchbenchError(
                f"{item}: no such folder (give a run folder, a sweep folder or a model name)"
            ) from None
        raise
    opts: dict[str, Any] = {k: v if v is not None else DEFAULT_TARGET[k] for k, v in given.items()}
    spec = ModelSpec(name=item, stem=opts["stem"], pool=opts["pool"])
    check_model_spec(spec)
    ic, nc = int(opts["in_chans"]), int(opts["num_classes"])
    return [(item, Target(spec, ic, nc, (size, size), train), {}) for size in sizes or [224]]


def _measure_settings(
    device: str, threads: int | None, batch_sizes: str | None, budget: float, knobs: dict[str, Any]
) -> tuple[Any, Any]:
    """The device (exit 2 when it is not there) and how each target is measured: the options given, over
    ProfileSettings' defaults (the `profile:` section's); batches 1,8 on CPU, 1,64 on CUDA unless given."""
    import torch

    from archbench.engine.runtime import resolve_device
    from archbench.stages.profile.measure import ProfileSettings
    from archbench.util.errors import ArchbenchError

    try:
        dev = resolve_device(device)
    except ArchbenchError as exc:
        _fail(str(exc))
    if threads is not None:
        torch.set_num_threads(threads)
    default_batches = CUDA_BATCH_SIZES if dev.type == "cuda" else CPU_BATCH_SIZES
    settings = ProfileSettings(
        batch_sizes=tuple(_ints(batch_sizes, "--batch-sizes")) if batch_sizes else default_batches,
        budget_s=budget or None,
        **{k: v for k, v in knobs.items() if v is not None},
    )
    return dev, settings


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _print_table(report: dict[str, Any]) -> None:
    """One row per target and size; an error column only when a row has one."""
    from archbench.cli.listing import print_full_width

    results = report["results"]
    first: dict[str, Any] = next((r for r in results if "latency_batch" in r), {})
    lat_b, tp_b = first.get("latency_batch", 1), first.get("throughput_batch", "")
    columns = [
        "model",
        "res",
        "params",
        "GMACs",
        "GFLOPs",
        f"latency ms p50 (b{lat_b})",
        "p90",
        f"img/s (b{tp_b})",
        f"train step ms (b{tp_b})",
        "train img/s",
        "peak MB",
    ]
    has_error = any("error" in r for r in results)
    rows = []
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
        if has_error:
            cells.append(one_line(r.get("error", "")))
        rows.append(cells)
    print_full_width(
        console, "archbench profile", columns + (["error"] if has_error else []), rows, tuple(columns[1:])
    )


def _print_notes(report: dict[str, Any]) -> None:
    """What the table was measured on, what was assumed, each run's params against its record."""
    dev = report["device"]
    libs = report["libraries"]
    console.print(
        f"device {dev['type']} ({dev.get('name', '?')}), {report['threads']} threads, amp {report['amp']}, "
        f"channels_last {report['channels_last']}; torch {libs.get('torch')}, "
        f"torchvision {libs.get('torchvision')}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for line in report.get("assumed", []):
        console.print(
            literal(
                f"assumed (not given) for {line}; pass --stem/--pool/--in-chans/--num-classes, or a run "
                "folder to profile what was trained"
            ),
            soft_wrap=True,
        )
    for r in report["results"]:
        if r.get("params_match_record") is False:
            console.print(
                literal(
                    f"MISMATCH {r['model']}: {r['params_total']:,} params measured, "
                    f"{r['record_params']:,} in its record"
                ),
                soft_wrap=True,
            )
        elif r.get("params_match_record"):
            console.print(
                literal(
                    f"{r['model']}: params {r['params_total']:,} = the record's (stem {r['stem']}, "
                    f"pool {r['pool']}, in_chans {r['in_chans']}, {r['num_classes']} classes, "
                    f"{r['resolution']} px)"
                ),
                soft_wrap=True,
            )
    memory = "CUDA max_memory_allocated" if dev["type"] == "cuda" else "peak RSS of a fresh subprocess"
    console.print(
        f"{report['flop_note']} Peak memory: {memory}, training step (or inference) at the largest batch.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _profile_sweep(sweep_dir: Any, device: str) -> int:
    """The profile stage on every completed run of a sweep folder; returns the exit code."""
    from archbench.config import ProfileSpec
    from archbench.stages import Outcome, run_stage
    from archbench.store.results import iter_records
    from archbench.sweep.expand import load_sweep
    from archbench.util.errors import ArchbenchError

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
        console.print(literal(line), soft_wrap=True)

    result = run_stage("profile", [d for d, _, _ in iter_records(sweep_dir)], spec, report=report)
    for problem in result.problems:
        console.print(literal(problem), soft_wrap=True)
    return 1 if result.count("failed") else 0
