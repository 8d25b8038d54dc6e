"""Tables with one row per run: every run with its numbers, the runs that did not complete, provenance."""

from __future__ import annotations

from typing import Any

from archbench.report.analysis import Analysis
from archbench.report.collect import RunEntry
from archbench.report.tables.base import (
    Col,
    Table,
    build_table,
    hash_col,
    num,
    params_text,
    pct,
    saved,
    shown,
)


def _run_cols(e: RunEntry, several: bool, unplanned: bool) -> list[Col]:
    rec = e.record
    m = rec.metrics if rec is not None and e.completed else None
    total = rec.params.get("total") if rec and rec.params else None
    return [
        Col("run id", e.run_id),
        Col("sweep", e.sweep_name, shown=several),
        Col("configuration", e.config_label),
        *(saved(f"axis {k}", v) for k, v in e.axes.items()),
        Col("seed", e.seed),
        Col("status", e.status),
        Col("top-1 (%)", 100 * m.top1 if m else None, pct(m.top1) if m else ""),
        saved("top-5 (%)", 100 * m.top5 if m and m.top5 is not None else None),
        Col("F1 macro (%)", 100 * m.f1_macro if m else None, pct(m.f1_macro) if m else ""),
        saved("F1 weighted (%)", 100 * m.f1_weighted if m else None),
        Col("kappa", m.kappa if m else None, num(m.kappa) if m else ""),
        saved("test loss", m.loss if m else None),
        Col("params", total, params_text(total)),
        Col("train time (s)", rec.train_seconds if rec else None, num(rec.train_seconds, 1) if rec else ""),
        Col("epochs", len(rec.history) if rec else None),
        Col("reason", "" if e.completed else e.reason),
        Col("in plan", e.in_plan, "yes" if e.in_plan else "no", shown=unplanned),
    ]


def runs_table(a: Analysis) -> Table:
    several = len(a.data.sweep_dirs) > 1
    unplanned = any(not e.in_plan for e in a.data.runs)
    rows = [_run_cols(e, several, unplanned) for e in a.data.runs]
    note = f"Every run of the current plan{' and other run folders' if unplanned else ''}. Click to sort."
    return build_table("runs", "Runs", rows, note=note)


def _failure_cols(e: RunEntry) -> list[Col]:
    detail = (e.record.failure_detail or "") if e.record is not None else ""
    short = detail if len(detail) <= 300 else detail[:297] + "..."
    return [
        Col("run id", e.run_id),
        Col("configuration", e.config_label),
        Col("seed", e.seed),
        Col("status", e.status),
        Col("reason", e.reason),
        Col("detail", detail, short, detail if short != detail else ""),
    ]


def failures_table(a: Analysis) -> Table:
    note = "Runs that are not completed. They are left out of every aggregate; nothing is filled in."
    rows = [_failure_cols(e) for e in a.not_completed]
    return build_table("failed_or_missing", "Failed or missing runs", rows, note=note)


def _libraries(libs: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(libs.items()))


def _device(dev: dict[str, Any]) -> str:
    parts = [str(dev.get(k)) for k in ("type", "name") if dev.get(k)]
    if dev.get("threads"):
        parts.append(f"{dev['threads']} threads")
    if dev.get("amp") not in (None, "off"):
        parts.append(f"amp {dev['amp']}")
    return " ".join(parts)


def _code(cv: dict[str, Any], n: int | None = None) -> str:
    """`archbench 0.1.0, git 3f75313d94ae`: the commit shortened to `n` characters (a `-dirty` mark kept)."""
    parts = [f"archbench {cv['archbench']}"] if cv.get("archbench") else []
    commit = str(cv.get("git_commit") or "")
    if commit and n is not None and len(commit) > n:
        commit = commit[:n] + ("-dirty" if commit.endswith("-dirty") else "")
    parts.append(f"git {commit}" if commit else "git unknown")
    return ", ".join(parts)


PROVENANCE_SHOWN = ["run id", "status", "seed", "spec hash", "data fingerprint", "code version", "device"]
PROVENANCE_SHOWN += ["libraries", "started", "ended", "record sha256"]


def _provenance_cols(e: RunEntry) -> list[Col]:
    rec = e.record
    if rec is None:
        return [Col("run id", e.run_id), Col("status", "missing")]
    return [
        Col("run id", e.run_id),
        saved("sweep", rec.sweep),
        Col("status", rec.status),
        Col("seed", rec.seed),
        hash_col("spec hash", rec.spec_hash),
        hash_col("data fingerprint", rec.data_fingerprint),
        shown("code version", text=_code(rec.code_version, 12), title=_code(rec.code_version)),
        saved("archbench", rec.code_version.get("archbench")),
        saved("git commit", rec.code_version.get("git_commit")),
        Col("device", _device(rec.device)),
        saved("host", rec.host.get("hostname")),
        Col("libraries", _libraries(rec.libraries)),
        Col("started", rec.started_at),
        Col("ended", rec.ended_at),
        saved("resumes", rec.resumes),
        saved("checkpoint sha256", rec.checkpoint_sha256),
        hash_col("record sha256", e.record_sha256),
        saved("predictions sha256", e.predictions_sha256),
    ]


def provenance_table(a: Analysis) -> Table:
    rows = [_provenance_cols(e) for e in a.data.runs]
    note = "Hashes and commits shortened to 12 characters here; the CSV holds them in full."
    return build_table("provenance", "Provenance of every run", rows, columns=PROVENANCE_SHOWN, note=note)
