"""The report's outline: owns what the report says, in which order, as format-neutral blocks.

HTML, Markdown and LaTeX all render this one outline, so the three never drift apart. Text here is ours;
every value taken from a record travels inside a Table cell or a block's `text` and is escaped by the
renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from archbench.report.analysis import Analysis
from archbench.report.figures import FigureFile
from archbench.report.stats import ALPHA
from archbench.report.tables import Table, estimate_text, stage_table
from archbench.util.paths import slugify

MAX_DOCUMENT_ROWS = 5000
"""The per-seed test table (configuration pairs × seeds: 24,750 rows at 100 configurations and 5 seeds)
is shown in report.html/.md/.tex up to this many rows, else named by its CSV; the pairwise table is always
shown whole."""


@dataclass
class Block:
    kind: str  # "heading" | "text" | "banner" | "table" | "figure" | "list"
    text: str = ""
    level: int = 2
    anchor: str = ""
    severity: str = ""  # banners: "error" | "warning" | "info"
    table: Table | None = None
    figure: FigureFile | None = None
    items: list[str] = field(default_factory=list)


@dataclass
class Outline:
    title: str
    subtitle: str
    blocks: list[Block]
    tables: list[Table]  # every table in the outline, for CSV and LaTeX fragments
    figures: list[FigureFile]  # every figure in the outline (stage figures included)
    facts: dict[str, Any]


def banners(a: Analysis) -> list[Block]:
    out = []
    planned = [r for r in a.data.runs if r.in_plan]
    bad = [r for r in planned if not r.completed]
    if bad:
        counts: dict[str, int] = {}
        for r in bad:
            counts[r.status] = counts.get(r.status, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        done = len(planned) - len(bad)
        out.append(
            Block(
                "banner",
                f"Incomplete sweep: {done} of {len(planned)} planned runs completed ({parts}). "
                "Aggregates use completed runs only; the others are listed under 'Failed or missing runs' "
                "and nothing is filled in.",
                severity="error",
            )
        )
    extra = [r for r in a.data.runs if not r.in_plan]
    if extra and planned:
        done = sum(1 for r in extra if r.completed)
        out.append(
            Block(
                "banner",
                f"{len(extra)} run(s) are not in the current plan (planned by an earlier version of the "
                f"sweep file; reported because of --all), {done} of them completed, in the configuration(s) "
                + ", ".join(sorted({r.config_label for r in extra})),
                severity="info",
            )
        )
    if a.data.outside_plan:
        out.append(
            Block(
                "banner",
                f"{a.data.outside_plan} more run folder(s) are not in the current plan (kept from earlier "
                "versions of the sweep file) and are not reported; `archbench report --all` includes them.",
                severity="info",
            )
        )
    if a.all_single_seed:
        out.append(
            Block(
                "banner",
                "Single seed: every configuration has exactly one completed seed, so all conclusions rest "
                "on a single training run each. Differences between configurations may be seed noise; "
                "intervals shown are bootstraps over test examples and do not cover retraining.",
                severity="warning",
            )
        )
    elif a.single_seed_configs:
        out.append(
            Block(
                "banner",
                f"{len(a.single_seed_configs)} configuration(s) rest on a single completed seed: "
                + ", ".join(a.single_seed_configs)
                + ". Their intervals are bootstraps over test examples only.",
                severity="warning",
            )
        )
    if not a.summaries:
        out.append(Block("banner", "No completed run: there is nothing to aggregate yet.", severity="error"))
    for w in a.data.warnings:
        out.append(Block("banner", w, severity="warning"))
    return out


def _glance(a: Analysis) -> str:
    if not a.summaries:
        return ""
    best = a.summaries[0]
    text = (
        f"{len(a.summaries)} configuration(s), {len(a.completed_runs)} completed run(s). Highest mean top-1: "
        f"{best.label} with {estimate_text(best.top1)} % (n = {best.top1.n})."
    )
    tested = [c for c in a.comparisons if c.pooled is not None]
    if tested:
        sig = [c for c in tested if c.significant and c.diff.excludes_zero]
        text += (
            f" {len(sig)} of {len(tested)} pairwise comparison(s) are significant after Holm correction and "
            "consistent across seeds."
        )
        runner_up = next((c for c in tested if c.a == 0 and c.b == 1), None)
        if runner_up is not None:
            text += f" Best vs second: {runner_up.verdict}."
    return text


STATS_METHOD = (
    "Configurations scored on the same test set are compared in pairs, matched by seed. For each seed, "
    "McNemar's exact test counts the test examples only one of the two models classifies correctly (b and c) "
    "and asks whether b and c differ more than a fair coin would allow; pooled over seeds, the same exact "
    "test gives one p-value per pair. Holm's step-down correction controls the family-wise error rate at "
    f"{ALPHA} over all pairs. McNemar reflects test-set sampling only; whether a difference survives "
    "retraining is shown by the 95% t-interval of the per-seed differences (with one seed: a bootstrap over "
    "test examples). A pair is called significant only when both agree."
)


def _find(tables: list[Table], name: str) -> Table | None:
    return next((t for t in tables if t.name == name), None)


def build_outline(
    a: Analysis, tables: list[Table], figures: list[FigureFile], source: str, built_at: str | None = None
) -> Outline:
    built_at = built_at or datetime.now(UTC).isoformat(timespec="seconds")
    sweeps = sorted({r.record.sweep for r in a.data.runs if r.record is not None})
    sweeps = sweeps or [d.name for d in a.data.sweep_dirs]
    figs = {f.name: f for f in figures}
    blocks: list[Block] = []
    used_tables: list[Table] = []
    used_figures: list[FigureFile] = []

    def heading(text: str, anchor: str, level: int = 2) -> None:
        blocks.append(Block("heading", text, level=level, anchor=anchor))

    def para(text: str) -> None:
        if text:
            blocks.append(Block("text", text))

    def table(name: str, max_rows: int | None = None) -> None:
        t = _find(tables, name)
        if t is None:
            return
        used_tables.append(t)  # written whole as tables/<name>.csv (and .tex) whatever its size
        if max_rows is not None and len(t.rows) > max_rows:
            para(
                f"{t.title}: {len(t.rows):,} rows, too many to read here; every row is in "
                f"tables/{t.name}.csv. {t.note}".strip()
            )
            return
        blocks.append(Block("table", t.title, table=t, anchor=f"table-{t.name}"))

    def figure(name: str) -> None:
        f = figs.get(name)
        if f is not None:
            blocks.append(Block("figure", f.title, figure=f, anchor=f"figure-{f.name}"))
            used_figures.append(f)

    blocks += banners(a)
    para(_glance(a))
    heading("Configurations", "configurations")
    for section in a.data.stages:
        para(section.protocol or "")
    table("configurations")
    figure("accuracy")
    heading("Training", "training")
    figure("training_curves")
    heading("Accuracy and cost", "cost")
    figure("accuracy_vs_params")
    figure("accuracy_vs_train_time")
    if a.has_profile:
        table("profile")
        figure("accuracy_vs_gmacs")
        figure("profile_vs_resolution")
    if a.profile_errors:
        blocks.append(
            Block(
                "list",
                "Profile stage errors",
                items=[f"{rid}: {err}" for rid, err in a.profile_errors],
            )
        )
    heading("Per class", "per-class")
    table("per_class")
    figure("per_class_accuracy")
    figure("confusion_best_worst")
    table("confused_pairs")
    figure("confused_pairs")
    heading("Statistics", "statistics")
    para(STATS_METHOD)
    if not a.comparisons:
        para("No two completed configurations share a test set: nothing to compare.")
    table("comparisons")
    figure("significance_matrix")
    table("mcnemar_per_seed", max_rows=MAX_DOCUMENT_ROWS)  # grows with pairs × seeds; the pairs above stay
    for k, section in enumerate(a.data.stages):
        stem = f"stage_{k}_{slugify(section.name, 24)}"
        label = section.title + (f" ({section.sweep_dir.name})" if len(a.data.sweep_dirs) > 1 else "")
        heading(label, f"stage-{k}")
        for note in section.notes:
            para(note)
        for j, sf in enumerate(section.figures):
            f = FigureFile(f"{stem}_figure_{j}", f"{section.title}: figure {j + 1}", sf.caption, sf.png, b"")
            blocks.append(Block("figure", f.title, figure=f, anchor=f"figure-{f.name}"))
            used_figures.append(f)
        for j, st in enumerate(section.tables):
            note = f"first {len(st.rows)} rows shown" if st.truncated else ""
            t = stage_table(f"{stem}_table_{j}", st.title, st.header, st.rows, note)
            blocks.append(Block("table", t.title, table=t, anchor=f"table-{t.name}"))
            used_tables.append(t)
        if section.problems:
            blocks.append(Block("list", "Problems with this stage's index", items=list(section.problems)))
    heading("Runs", "runs")
    table("runs")
    heading("Failed or missing runs", "failed")
    if not a.not_completed:
        para("None: every planned run completed.")
    table("failed_or_missing")
    heading("Appendix: provenance", "provenance")
    para(
        "Each run's spec hash, data fingerprint, code version, seed, device, library versions and start/end "
        "time, from its record. report_manifest.json lists every record and prediction file this report "
        "read, with its sha256."
    )
    table("provenance")
    facts = {
        "sweeps": sweeps,
        "built_at": built_at,
        "source": source,
        "configurations": len(a.summaries),
        "runs": len(a.data.runs),
        "completed": len(a.completed_runs),
    }
    title = "archbench report: " + ", ".join(sweeps)
    subtitle = (
        f"Built {built_at} from {source}: {len(a.completed_runs)} of {len(a.data.runs)} runs completed, "
        f"{len(a.summaries)} configuration(s)."
    )
    return Outline(title, subtitle, blocks, used_tables, used_figures, facts)
