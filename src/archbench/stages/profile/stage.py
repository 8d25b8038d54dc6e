"""The `profile` stage: owns a run's `stages.profile` block, the sweep's profile table and the quick look
at named models; measures via `measure.py`, never trains or evaluates.

Enabled by a `profile:` section in the sweep file. For each completed run it profiles the run's
architecture at the run's resolution (plus `profile.resolutions`), adds the training cost the record
already holds, and rewrites `<sweep>/stages/profile/{profile.csv,index.json}` (and figures) from every
run's block. Top-level keys of the block are the run's own resolution; `per_resolution` has one entry per
size, each possibly with `error`. If the run's own size fails, the block carries `error` too, so the
runner tries again on the next `archbench run`. Every entry states its `conditions` (device, threads,
load before and after, spread, and why it is noisy: conditions.py); the block's top holds its own size's.
The threads and device are the run's own unless the `profile:` section sets them (stages/base.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.config import ProfileSpec, SweepConfig
from archbench.stages.base import Stage, StageContext, pyplot, save_figure, stage_output
from archbench.store.layout import RunLayout
from archbench.store.record import PROFILE_HEADLINE_KEYS, RunRecord, StageIndex
from archbench.util.figstyle import series_style

if TYPE_CHECKING:
    import torch

    from archbench.stages.profile.measure import ProfileSettings

HEADLINE_KEYS = PROFILE_HEADLINE_KEYS
CSV_NAME = "profile.csv"
# How the report shows profile.csv (StageIndex.Column): each header with its unit; the CSV keeps raw values.
CSV_DISPLAY: dict[str, dict[str, Any]] = {
    "run_resolution": {"label": "run resolution (px)"},
    "resolution": {"label": "resolution (px)"},
    "params_total": {"label": "params"},
    "params_trainable": {"label": "trainable params"},
    "flops": {"label": "FLOPs / image", "digits": 0},
    "macs": {"label": "MACs / image", "digits": 0},
    "gmacs": {"label": "GMACs / image", "digits": 3},
    "gflops": {"label": "GFLOPs / image", "digits": 3},
    "latency_ms_p50": {"label": "latency p50, batch 1 (ms)", "digits": 2},
    "latency_ms_p90": {"label": "latency p90, batch 1 (ms)", "digits": 2},
    "throughput_img_s": {"label": "throughput (img/s)", "digits": 1},
    "train_step_ms": {"label": "train step (ms)", "digits": 1},
    "train_throughput_img_s": {"label": "train throughput (img/s)", "digits": 1},
    "peak_memory_mb": {"label": "peak memory (MB)", "digits": 0},
    "top1": {"label": "top-1 (%)", "scale": 100.0, "digits": 2},
    "train_wall_seconds": {"label": "training wall time (s)", "digits": 1},
    "train_images_per_s": {"label": "training img/s", "digits": 1},
    "time_to_best_s": {"label": "time to best (s)", "digits": 1},
}


def run_input(rec: RunRecord) -> tuple[int, tuple[int, int]]:
    """(in_chans, (height, width)) the run trained on: `data.resolution`, else the data's native size."""
    if rec.data is None:
        raise ValueError(f"run {rec.run_id}: record has no data summary (it never started training)")
    res = rec.spec.data.resolution
    if res is not None:
        return int(rec.data["in_chans"]), (res, res)
    h, w = (int(v) for v in rec.data["native_size"])
    return int(rec.data["in_chans"]), (h, w)


def training_cost(rec: RunRecord) -> dict[str, Any]:
    """Training cost from the record's history: seconds are the epochs' training loops (no validation)."""
    seconds = [h.seconds for h in rec.history]
    total = float(sum(seconds))
    images = sum(h.images_per_s * h.seconds for h in rec.history)
    best_epoch = (rec.best or {}).get("epoch")
    return {
        "wall_seconds": rec.train_seconds if rec.train_seconds is not None else total,
        "images_per_s": round(images / total, 2) if total > 0 else None,
        "seconds_per_epoch": round(total / len(seconds), 4) if seconds else None,
        "time_to_best_s": round(float(sum(seconds[:best_epoch])), 4) if best_epoch else None,
        "epochs": len(seconds),
        "best_epoch": best_epoch,
    }


def profile_record(rec: RunRecord, prof: ProfileSpec, device: torch.device) -> dict[str, Any]:
    """The `stages.profile` block of one run, measured on `device` (threads: as the stage base set them)."""
    from archbench.stages.profile.measure import ProfileSettings, Target, environment, measure, precision

    in_chans, size = run_input(rec)
    num_classes = len(rec.class_names) if rec.class_names else int((rec.data or {})["num_classes"])
    train = rec.spec.train
    settings = ProfileSettings.from_spec(prof)
    sizes = [size] + [(r, r) for r in sorted(set(prof.resolutions or [])) if (r, r) != size]
    entries = [
        measure(Target(rec.spec.model, in_chans, num_classes, s, train), settings, device) for s in sizes
    ]
    env = environment(device)
    amp, cl = precision(Target(rec.spec.model, in_chans, num_classes, size, train), device)
    own = entries[0]
    block: dict[str, Any] = {"resolution": own["resolution"]}
    block.update({k: own[k] for k in HEADLINE_KEYS if k in own})
    if "error" in own:
        block["error"] = f"profiling at the run's resolution {own['resolution']} failed: {own['error']}"
    block.update(
        conditions=own.get("conditions"),
        per_resolution=sorted(entries, key=lambda e: _size_key(e["resolution"])),
        training=training_cost(rec),
        amp="bf16" if amp else "off",
        channels_last=cl,
        settings={
            "batch_sizes": list(settings.batch_sizes),
            "warmup": settings.warmup,
            "iters": settings.iters,
            "budget_s": settings.budget_s,
            "memory": settings.memory,
            "train_step": settings.train_step,
        },
        **env,
    )
    return block


def _size_key(resolution: Any) -> int:
    return int(resolution) if isinstance(resolution, int) else int(resolution[0]) * int(resolution[1])


class ProfileStage(Stage):
    """What the profile stage adds to the stage base: its settings (the `profile:` section), its block."""

    name = "profile"

    def settings(self, cfg: SweepConfig) -> ProfileSpec | None:
        return cfg.profile if cfg.profile is not None and cfg.profile.enabled else None

    def compute(self, ctx: StageContext, device: torch.device, prepared: Any) -> dict[str, Any]:
        return profile_record(ctx.record, ctx.settings or ProfileSpec(), device)

    def summarise(self, sweep_dir: Path, settings: Any, shared: dict[str, Any]) -> StageIndex:
        return write_sweep_summary(sweep_dir)


STAGE = ProfileStage()


def profile_models(
    targets: list[tuple[str, Any, dict[str, Any]]],
    settings: ProfileSettings,
    assumed: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The quick look (`archbench profile MODEL...|RUN_DIR|SWEEP_DIR`): every (label, Target, facts)
    measured on its own device and threads (`target.train.device` / `.threads`: a run's own unless the
    command overrode them; threads None: as they are), plus what it ran on and the host's load before and
    after. A row with `record_params` in its facts (a trained run) says whether the params measured equal
    the record's (`params_match_record`)."""
    from archbench.engine.runtime import resolve_device
    from archbench.stages.base import scoped_threads
    from archbench.stages.profile.conditions import load_average, usable_cores
    from archbench.stages.profile.measure import environment, measure, precision

    load_before = load_average()
    results: list[dict[str, Any]] = []
    for label, target, facts in targets:
        device = resolve_device(target.train.device)
        with scoped_threads(target.train.threads):
            if progress is not None:
                progress(f"profiling {label} at {target.resolution} px on {device}")
            row = {"model": label, **facts, **measure(target, settings, device)}
        if "record_params" in facts and "params_total" in row:
            row["params_match_record"] = row["params_total"] == facts["record_params"]
        results.append(row)
    first = targets[0][1]
    device = resolve_device(first.train.device)
    amp_on, cl = precision(first, device)
    with scoped_threads(first.train.threads):
        env = environment(device)
    return {
        **env,
        "load_before": load_before,
        "load_after": load_average(),
        "usable_cores": usable_cores(),
        "amp": "bf16" if amp_on else "off",
        "channels_last": cl,
        "settings": {**settings.__dict__, "batch_sizes": list(settings.batch_sizes)},
        "assumed": list(assumed or []),
        "results": results,
    }


def trained_runs(path: Path) -> list[RunRecord] | None:
    """The completed runs' records under a run, sweep or output folder; None when `path` is no folder
    (or an empty one that holds no sweep)."""
    from archbench.store.record import read_record
    from archbench.store.results import find_sweep_dirs, iter_records

    if not path.is_dir():
        return None
    if RunLayout(path).record.is_file():
        rec = read_record(path)
        return [rec] if rec is not None and rec.status == "completed" else []
    if not find_sweep_dirs(path):
        return None if not any(path.iterdir()) else []
    return [r for _, r, _ in iter_records(path) if r is not None and r.status == "completed"]


def run_targets(
    runs: list[RunRecord], sizes: list[int] | None, overrides: dict[str, Any]
) -> list[tuple[str, Any, dict[str, Any]]]:
    """What each run trained: its model spec, in_chans, classes and resolution, from its record, on the
    run's own device, threads and precision; `overrides` (train keys: device, threads, amp,
    channels_last) replace the run's own where not None."""
    from archbench.stages.profile.measure import Target

    given = {k: v for k, v in overrides.items() if v is not None}
    out = []
    for rec in runs:
        in_chans, own = run_input(rec)
        num_classes = len(rec.class_names) if rec.class_names else int((rec.data or {})["num_classes"])
        run_train = rec.spec.train.model_copy(update=given)
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


# --- the sweep-level table and figures -----------------------------------------------------------------


def profile_rows(records: list[tuple[RunRecord, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (run, profiled resolution), with the run's accuracy and training cost."""
    rows = []
    for rec, block in records:
        training = block.get("training") or {}
        for entry in block.get("per_resolution") or [block]:
            row: dict[str, Any] = {
                "run_id": rec.run_id,
                "model": rec.spec.model.name,
                "run_resolution": block.get("resolution"),
                "resolution": entry.get("resolution"),
                **{k: entry.get(k) for k in HEADLINE_KEYS},
                "top1": rec.metrics.top1 if rec.metrics else None,
                "train_wall_seconds": training.get("wall_seconds"),
                "train_images_per_s": training.get("images_per_s"),
                "time_to_best_s": training.get("time_to_best_s"),
                "device": (block.get("device") or {}).get("name"),
                **_condition_cells(entry.get("conditions")),
                "error": entry.get("error"),
            }
            rows.append(row)
    return rows


def _condition_cells(conditions: dict[str, Any] | None) -> dict[str, Any]:
    """The profile table's columns for what a row was measured under (empty for older records)."""
    from archbench.stages.profile.conditions import verdict

    c = conditions or {}
    return {
        "threads": c.get("threads"),
        "load_before": c.get("load_before"),
        "load_after": c.get("load_after"),
        "usable_cores": c.get("usable_cores"),
        "spread": c.get("spread"),
        "conditions": verdict(conditions),
    }


def write_sweep_summary(
    sweep_dir: Path, fresh: dict[str, tuple[RunRecord, dict[str, Any]]] | None = None
) -> StageIndex:
    """Rewrite `<sweep_dir>/stages/profile/` from every run's block (`fresh` ones not yet on disk)."""
    from archbench.store.results import iter_records, rows_to_csv
    from archbench.util.paths import atomic_write_text

    fresh = dict(fresh or {})
    records: list[tuple[RunRecord, dict[str, Any]]] = []
    for _, rec, _ in iter_records(sweep_dir):
        if rec is None:
            continue
        if rec.run_id in fresh:
            records.append(fresh.pop(rec.run_id))
        elif isinstance(rec.stages.get("profile"), dict):
            records.append((rec, rec.stages["profile"]))
    records.extend(fresh.values())
    rows = profile_rows(records)
    out = stage_output(sweep_dir, "profile")
    atomic_write_text(out / CSV_NAME, rows_to_csv(rows))
    notes = [
        "One row per run and profiled resolution; latency at batch 1, throughput at the largest batch.",
        "Conditions: load average (1 min) before and after each row, torch threads, spread = p90/p10 − 1 of "
        "the timed calls; a row is noisy when the load exceeds the usable cores, a spread exceeds 25 % or "
        "fewer than 10 calls were timed.",
        next((b["flop_note"] for _, b in records if "flop_note" in b), ""),
        "Training cost comes from each run's record (training loops only, validation excluded).",
    ]
    try:
        figures = _figures(rows, out)
    except Exception as exc:  # figures are a convenience; the CSV is the result
        figures = []
        notes.append(f"figures not drawn: {type(exc).__name__}: {exc}")
    index = StageIndex.model_validate(
        {
            "title": "Profile",
            "figures": figures,
            "tables": [{"title": "Cost per run and resolution", "csv": CSV_NAME, "columns": CSV_DISPLAY}],
            "notes": [n for n in notes if n],
        }
    )
    index.write(out)
    return index


def _figures(rows: list[dict[str, Any]], out: Path) -> list[dict[str, str]]:
    """Latency/throughput/memory vs resolution (several sizes) and top-1 vs GFLOPs (any accuracy)."""
    ok = [r for r in rows if r.get("error") is None and isinstance(r.get("resolution"), int)]
    sizes = {r["resolution"] for r in ok}
    with_acc = [
        r
        for r in rows
        if r.get("top1") is not None and r.get("gflops") and r["resolution"] == r["run_resolution"]
    ]
    if len(sizes) < 2 and not with_acc:
        return []
    plt = pyplot()
    figures = []

    def save(fig: Any, name: str, title: str) -> None:
        save_figure(fig, out / name)
        figures.append({"path": name, "caption": title})

    if len(sizes) >= 2:
        panels = [
            ("latency_ms_p50", "latency, batch 1 (ms, median)"),
            ("throughput_img_s", "inference throughput (img/s)"),
            ("peak_memory_mb", "peak memory (MB)"),
        ]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
        for ax, (key, label) in zip(axes, panels, strict=True):
            for i, model in enumerate(sorted({r["model"] for r in ok})):
                pts = sorted(
                    {(r["resolution"], r[key]) for r in ok if r["model"] == model and r.get(key) is not None}
                )
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=model, **series_style(i))
            ax.set_xlabel("resolution (px)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        save(fig, "cost_vs_resolution.png", "Latency, throughput and peak memory vs resolution")
    if with_acc:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for i, model in enumerate(sorted({r["model"] for r in with_acc})):
            runs = [r for r in with_acc if r["model"] == model]
            style = series_style(i)
            ax.plot(
                [r["gflops"] for r in runs],
                [r["top1"] for r in runs],
                ls="none",
                label=model,
                **{k: v for k, v in style.items() if k != "linestyle"},
            )
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per image (run's resolution)")
        ax.set_ylabel("test top-1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "accuracy_vs_gflops.png", "Test accuracy vs GFLOPs per image")
    return figures
