"""`archbench profile MODEL...|RUN_DIR|SWEEP_DIR`: owns the quick-look command line (parsing, table, JSON);
measures nothing itself (archbench.stages.profile does).

A run or sweep folder profiles exactly what was trained: each run's model spec (name, stem, pool, freeze,
dropout), input channels, classes and resolution come from its record, and the params measured are
checked against the record's; it is measured on the run's own device, threads and precision unless
`--device`, `--threads`, `--amp` or `--channels-last` say otherwise. A name is built as the published
tables build it unless told otherwise (3 channels, 1000 classes, ImageNet stem, avg pool, 224 px; random
weights); `--stem`, `--pool`, `--in-chans`, `--num-classes` take the same values as a sweep, and the
output says which were assumed. Every row states the conditions it was measured under (threads, load
before and after, spread) and says "noisy" and why when they were poor (stages/profile/conditions.py).
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
    float | None,
    typer.Option(
        "--budget",
        min=0.0,
        help="seconds per measurement: after --iters calls, more are timed until spent (default: as "
        "profile.budget_s; 0: exactly --iters)",
        show_default=False,
    ),
]
Device = Annotated[
    str | None,
    typer.Option("--device", help="cpu, cuda or auto (default: each run's own; auto for names)"),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="torch CPU threads (default: each run's own; torch's for names)"),
]
Amp = Annotated[
    str | None,
    typer.Option("--amp", help="bf16 autocast: auto (CUDA only), on, off (default: each run's own; auto)"),
]
ChannelsLast = Annotated[
    str | None,
    typer.Option("--channels-last", help="auto (CUDA only), on, off (default: each run's own; auto)"),
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
    device: Device = None,
    in_chans: InChans = None,
    num_classes: NumClasses = None,
    stem: Stem = None,
    pool: Annotated[str | None, typer.Option("--pool", help="avg (default) or max: as model.pool")] = None,
    iters: Iters = None,
    warmup: Warmup = None,
    budget: Budget = None,
    amp: Amp = None,
    channels_last: ChannelsLast = None,
    threads: Threads = None,
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
        raise typer.Exit(code=_record_stage(models, device, threads))
    sizes = _ints(resolutions, "--resolutions") if resolutions else None
    given = {"stem": stem, "pool": pool, "in_chans": in_chans, "num_classes": num_classes}
    overrides = {"device": device, "threads": threads, "amp": amp, "channels_last": channels_last}
    targets, assumed = _targets(models, sizes, given, overrides)
    knobs = {"iters": iters, "warmup": warmup, "memory": memory, "train_step": train_step, "budget_s": budget}
    settings = _measure_settings(targets, batch_sizes, knobs)

    from archbench.stages.profile import profile_models

    with err_console.status("profiling") as status:
        report = profile_models(targets, settings, assumed, progress=status.update)
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


def _record_stage(models: list[str], device: str | None, threads: int | None) -> int:
    """`--record`: the sweep's profile stage on its one sweep folder; returns the exit code."""
    from pathlib import Path

    from archbench.store.layout import RUNS_DIR

    if len(models) != 1 or not (Path(models[0]) / RUNS_DIR).is_dir():
        _fail(f"--record takes one sweep folder (a folder with runs/); got {' '.join(models)}")
    return _profile_sweep(Path(models[0]), device, threads)


DEFAULT_TARGET: dict[str, Any] = {
    "stem": "imagenet",
    "pool": "avg",
    "in_chans": 3,
    "num_classes": 1000,
}  # as published


def _targets(
    models: list[str], sizes: list[int] | None, given: dict[str, Any], overrides: dict[str, Any]
) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[str]]:
    """(label, Target, facts about a trained run) for every name or folder given, and what was assumed for
    names (options not given); `overrides` (device, threads, amp, channels_last; None: a run's own, the
    defaults for names) replace a run's training settings. Exit 2 on a bad name, a bad option, a folder
    that is not there or a device that is not here."""
    from pathlib import Path

    from pydantic import ValidationError

    from archbench.config import TrainSpec
    from archbench.stages.profile import run_targets, trained_runs
    from archbench.util.errors import ArchbenchError

    targets: list[tuple[str, Any, dict[str, Any]]] = []
    assumed: list[str] = []
    try:
        train = TrainSpec(**{k: v for k, v in overrides.items() if v is not None})
        for item in models:
            runs = trained_runs(Path(item))
            if runs is not None:
                if not runs:
                    raise ArchbenchError(f"{item}: no completed run with a record found in this folder")
                targets += run_targets(runs, sizes, overrides)
                continue
            targets += _named_targets(item, sizes, given, train)
            not_given = [f"{k}={DEFAULT_TARGET[k]}" for k, v in given.items() if v is None]
            if not_given:
                assumed.append(f"{item}: {', '.join(not_given)}")
        for label, target, _ in targets:
            _device_here(label, target.train.device, overrides["device"] is None)
    except (ArchbenchError, ValidationError) as exc:
        _fail(str(exc))
    return targets, assumed


def _device_here(label: str, device: str, own: bool) -> Any:
    """The device a target is measured on; a run's own device that is not here names the run and --device."""
    from archbench.engine.runtime import resolve_device
    from archbench.util.errors import ArchbenchError

    try:
        return resolve_device(device)
    except ArchbenchError as exc:
        if not own:
            raise
        raise ArchbenchError(
            f"{label} trained on {device}: {exc}; pass --device to profile elsewhere"
        ) from None


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
    targets: list[tuple[str, Any, dict[str, Any]]], batch_sizes: str | None, knobs: dict[str, Any]
) -> Any:
    """How each target is measured: the options given, over ProfileSettings' defaults (the `profile:`
    section's); batches 1,64 when every target is on CUDA, else 1,8, unless given."""
    from archbench.engine.runtime import resolve_device
    from archbench.stages.profile.measure import ProfileSettings

    on_cuda = all(resolve_device(t.train.device).type == "cuda" for _, t, _ in targets)
    default_batches = CUDA_BATCH_SIZES if on_cuda else CPU_BATCH_SIZES
    return ProfileSettings(
        batch_sizes=tuple(_ints(batch_sizes, "--batch-sizes")) if batch_sizes else default_batches,
        **{k: v for k, v in knobs.items() if v is not None},
    )


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _print_table(report: dict[str, Any]) -> None:
    """One row per target and size, with the conditions it was measured under; an error column only when
    a row has one, a device column only when the rows were measured on different devices."""
    from archbench.cli.listing import print_full_width

    results = report["results"]
    first: dict[str, Any] = next((r for r in results if "latency_batch" in r), {})
    lat_b, tp_b = first.get("latency_batch", 1), first.get("throughput_batch", "")
    devices = {(r.get("conditions") or {}).get("device") for r in results}
    columns = [
        "model",
        "res",
        *(["device"] if len(devices) > 1 else []),
        "threads",
        "params",
        "GMACs",
        "GFLOPs",
        f"latency ms p50 (b{lat_b})",
        "p10–p90",
        f"img/s (b{tp_b})",
        f"train step ms (b{tp_b})",
        "train img/s",
        "peak MB",
        "spread",
        "conditions",
    ]
    has_error = any("error" in r for r in results)
    rows = [
        _row_cells(r, len(devices) > 1) + ([one_line(r.get("error", ""))] if has_error else [])
        for r in results
    ]
    right = tuple(c for c in columns[1:] if c != "conditions")
    print_full_width(console, "archbench profile", columns + (["error"] if has_error else []), rows, right)


def _row_cells(r: dict[str, Any], with_device: bool) -> list[str]:
    c = r.get("conditions") or {}
    p10, p90 = r.get("latency_ms_p10"), r.get("latency_ms_p90")
    return [
        r["model"],
        str(r["resolution"]),
        *([str(c.get("device", ""))] if with_device else []),
        _fmt(c.get("threads"), "d"),
        _fmt(r.get("params_total"), ","),
        _fmt(r.get("gmacs"), ".3f"),
        _fmt(r.get("gflops"), ".3f"),
        _fmt(r.get("latency_ms_p50"), ".2f"),
        "" if p10 is None or p90 is None else f"{p10:.2f}–{p90:.2f}",
        _fmt(r.get("throughput_img_s"), ".1f"),
        _fmt(r.get("train_step_ms"), ".1f"),
        _fmt(r.get("train_throughput_img_s"), ".1f"),
        _fmt(r.get("peak_memory_mb"), ".0f"),
        _fmt(c.get("spread"), ".0%"),
        one_line(_conditions_text(r.get("conditions"))),
    ]


def _conditions_text(conditions: dict[str, Any] | None) -> str:
    from archbench.stages.profile.conditions import verdict

    return verdict(conditions)


def _print_notes(report: dict[str, Any]) -> None:
    """What the table was measured on and under which load, what was assumed, each run's params against
    its record."""
    dev = report["device"]
    libs = report["libraries"]
    threads = {(r.get("conditions") or {}).get("threads") for r in report["results"]}
    n = report["threads"]
    thread_text = f"{n} thread{'s' if n != 1 else ''}" if len(threads) <= 1 else "threads per row"
    _note(
        f"device {dev['type']} ({dev.get('name', '?')}), {thread_text}, amp {report['amp']}, "
        f"channels_last {report['channels_last']}; torch {libs.get('torch')}, "
        f"torchvision {libs.get('torchvision')}"
    )
    _note(
        f"load average (1 min) {_fmt(report.get('load_before'), '.2f') or '?'} before, "
        f"{_fmt(report.get('load_after'), '.2f') or '?'} after, "
        f"on {report.get('usable_cores')} usable cores; "
        "spread = p90/p10 − 1 of a row's timed calls (largest of its measurements). A row is noisy when the "
        "load exceeds the usable cores, a spread exceeds 25 % or fewer than 10 calls were timed."
    )
    for line in report.get("assumed", []):
        _note(
            f"assumed (not given) for {line}; pass --stem/--pool/--in-chans/--num-classes, or a run "
            "folder to profile what was trained"
        )
    for r in report["results"]:
        if r.get("params_match_record") is False:
            _note(
                f"MISMATCH {r['model']}: {r['params_total']:,} params measured, "
                f"{r['record_params']:,} in its record"
            )
        elif r.get("params_match_record"):
            _note(
                f"{r['model']}: params {r['params_total']:,} = the record's (stem {r['stem']}, "
                f"pool {r['pool']}, in_chans {r['in_chans']}, {r['num_classes']} classes, "
                f"{r['resolution']} px)"
            )
    memory = "CUDA max_memory_allocated" if dev["type"] == "cuda" else "peak RSS of a fresh subprocess"
    _note(f"{report['flop_note']} Peak memory: {memory}, training step (or inference) at the largest batch.")


def _note(text: str) -> None:
    console.print(literal(text), soft_wrap=True)


def _profile_sweep(sweep_dir: Any, device: str | None, threads: int | None) -> int:
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
    given = {"device": device, "threads": threads}
    spec = spec.model_copy(update={k: v for k, v in given.items() if v is not None})

    def report(o: Outcome) -> None:
        line = f"{'profiled' if o.status == 'done' else o.status:8s} {o.run_id}"
        if o.block is not None and o.block.get("latency_ms_p50") is not None:
            line += f"  {o.block.get('gmacs', 0):.3f} GMACs  {o.block['latency_ms_p50']:.2f} ms (b1)"
            line += f"  {_conditions_text(o.block.get('conditions'))}"
        elif o.reason:
            line += f"  {o.reason}"
        console.print(literal(line), soft_wrap=True)

    result = run_stage("profile", [d for d, _, _ in iter_records(sweep_dir)], spec, report=report)
    for problem in result.problems:
        console.print(literal(problem), soft_wrap=True)
    return 1 if result.count("failed") else 0
