"""`archbench profile MODEL...|RUN_DIR|SWEEP_DIR`: owns the quick-look command line (parsing, table, JSON);
measures nothing itself (archbench.profiling does).

A run or sweep folder profiles exactly what was trained: each run's model spec (name, stem, pool, freeze,
dropout), input channels, classes and resolution come from its record, and the params measured are
checked against the record's. A name is built as the published tables build it unless told otherwise
(3 channels, 1000 classes, ImageNet stem, avg pool, 224 px; random weights); `--stem`, `--pool`,
`--in-chans`, `--num-classes` take the same values as a sweep, and the output says which were assumed.
Exit 2 on invalid input before anything is measured; a model failing at one size shows `error` in its row
and the others go on.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ..terminal import literal, make_console, one_line

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


def command(
    models: Annotated[
        list[str], typer.Argument(help="model names: archbench's (resnet50, vit_b_16...) or timm:NAME")
    ],
    resolutions: Annotated[
        str | None,
        typer.Option(
            "--resolutions",
            help="square input sizes, e.g. 32,64,224 (default: 224 for names, each run's own for runs)",
        ),
    ] = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            help="latency at the first, throughput at the last (default 1,64 on CUDA, 1,8 on CPU)",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    in_chans: Annotated[
        int | None, typer.Option("--in-chans", min=1, help="input channels (default 3)")
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option("--num-classes", min=1, help="classes of the head (default 1000)")
    ] = None,
    stem: Annotated[
        str | None, typer.Option("--stem", help="imagenet (default) or cifar: as model.stem in a sweep")
    ] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="avg (default) or max: as model.pool")] = None,
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
    """Params, MACs/FLOPs, latency, throughput, training step and peak memory of models, one row per size."""
    from pydantic import ValidationError

    from ..config import ModelSpec, TrainSpec
    from ..errors import ArchbenchError
    from ..models import check_model_name, check_model_spec
    from ..profiling.target import Target

    sizes = _ints(resolutions, "--resolutions") if resolutions else None
    given = {"stem": stem, "pool": pool, "in_chans": in_chans, "num_classes": num_classes}
    defaults = {"stem": "imagenet", "pool": "avg", "in_chans": 3, "num_classes": 1000}
    targets: list[tuple[str, Any, dict[str, Any]]] = []  # (label, Target, facts about a trained run)
    assumed: list[str] = []
    try:
        train = TrainSpec(device=device, amp=amp, channels_last=channels_last)  # type: ignore[arg-type]
        for item in models:
            runs = _trained_runs(item)
            if runs is not None:
                if not runs:
                    raise ArchbenchError(f"{item}: no completed run with a record found in this folder")
                targets += _run_targets(runs, sizes, train)
                continue
            check_model_name(item)
            spec = ModelSpec(
                name=item,
                stem=stem or "imagenet",  # type: ignore[arg-type]
                pool=pool or "avg",  # type: ignore[arg-type]
            )
            check_model_spec(spec)
            ic, nc = in_chans or 3, num_classes or 1000
            not_given = [f"{k}={defaults[k]}" for k, v in given.items() if v is None]
            if not_given:
                assumed.append(f"{item}: {', '.join(not_given)}")
            for size in sizes or [224]:
                targets.append((item, Target(spec, ic, nc, (size, size), train), {}))
    except (ArchbenchError, ValidationError) as exc:
        err_console.print(f"error: {one_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None

    import torch

    from ..profiling import ProfileSettings, environment, measure
    from ..profiling.measure import precision
    from ..train import resolve_device

    try:
        dev = resolve_device(train)
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

    results: list[dict[str, Any]] = []
    with err_console.status("profiling") as status:
        for label, target, facts in targets:
            status.update(f"profiling {label} at {target.resolution} px on {dev}")
            row = {"model": label, **facts, **measure(target, settings, dev)}
            if "record_params" in facts and "params_total" in row:
                row["params_match_record"] = row["params_total"] == facts["record_params"]
            results.append(row)
    amp_on, cl = precision(targets[0][1], dev)
    env = environment(dev)
    report = {
        **env,
        "amp": "bf16" if amp_on else "off",
        "channels_last": cl,
        "settings": {**settings.__dict__, "batch_sizes": list(settings.batch_sizes)},
        "assumed": assumed,
        "results": results,
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    if any("error" in r for r in results) or any(r.get("params_match_record") is False for r in results):
        raise typer.Exit(code=1)


def _trained_runs(item: str) -> list[Any] | None:
    """The completed runs' records under a run, sweep or output folder; None when `item` is no folder."""
    from pathlib import Path

    from ..record import read_record
    from ..results import find_sweep_dirs, iter_records

    path = Path(item)
    if not path.is_dir():
        return None
    if (path / "record.json").is_file():
        rec = read_record(path)
        return [rec] if rec is not None and rec.status == "completed" else []
    if not find_sweep_dirs(path):
        return None if not any(path.iterdir()) else []
    return [r for _, r, _ in iter_records(path) if r is not None and r.status == "completed"]


def _run_targets(
    runs: list[Any], sizes: list[int] | None, train: Any
) -> list[tuple[str, Any, dict[str, Any]]]:
    """What each run trained: its model spec, in_chans, classes and resolution, from its record."""
    from ..profile import run_input
    from ..profiling.target import Target

    out = []
    for rec in runs:
        in_chans, own = run_input(rec)
        num_classes = len(rec.class_names) if rec.class_names else int((rec.data or {})["num_classes"])
        run_train = rec.spec.train.model_copy(
            update={"device": train.device, "amp": train.amp, "channels_last": train.channels_last}
        )
        facts = {
            "run_id": rec.run_id,
            "record_params": (rec.params or {}).get("total"),
            "stem": rec.spec.model.stem,
            "pool": rec.spec.model.pool,
            "in_chans": in_chans,
            "num_classes": num_classes,
        }
        for size in [(s, s) for s in sizes] if sizes else [own]:
            target = Target(rec.spec.model, in_chans, num_classes, size, run_train)
            out.append((f"{rec.run_id} ({rec.spec.model.name})", target, facts))
    return out


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _print_table(report: dict[str, Any]) -> None:
    results = report["results"]
    first: dict[str, Any] = next((r for r in results if "latency_batch" in r), {})
    lat_b, tp_b = first.get("latency_batch", 1), first.get("throughput_batch", "")
    from ..listing import print_full_width

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
    for r in results:
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
