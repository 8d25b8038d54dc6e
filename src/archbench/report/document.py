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
from archbench.report.recipes import recipe_verdict
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
    severity: str = ""  # banners: "error" | "warning" | "info" | "success"
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
    folds = sorted({k for s in a.summaries if (k := s.config.folds)})
    if folds:
        out.append(Block("banner", kfold_text(folds), severity="info"))
    if not a.summaries:
        out.append(Block("banner", "No completed run: there is nothing to aggregate yet.", severity="error"))
    for w in a.data.warnings:
        out.append(Block("banner", w, severity="warning"))
    for ok in a.data.successes:  # shown as good news, never in a warning's box
        out.append(Block("banner", ok, severity="success"))
    return out


def kfold_text(folds: list[int]) -> str:
    """What a spatial k-fold configuration's row means (its runs that differ only by fold are one row)."""
    return (
        f"k-fold spatial CV: {' or '.join(map(str, folds))} folds (data.options.split: block_kfold). A "
        "configuration's runs that differ only by their fold (and seed) are one row: n = folds × seeds, and "
        "its mean, spread and interval are over them. Each fold is tested on its own spatial blocks, so "
        "the spread is between regions of the scene as well as between trainings; pairwise tests pair "
        "runs by fold and seed."
    )


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
    verdict = recipe_verdict(a)
    return f"{text} {verdict}" if verdict else text


STATS_METHOD = (
    "Configurations scored on the same test set are compared in pairs, matched by seed. For each seed, "
    "McNemar's exact test counts the test examples only one of the two models classifies correctly (b and c) "
    "and asks whether b and c differ more than a fair coin would allow; pooled over seeds, the same exact "
    "test gives one p-value per pair. Holm's step-down correction controls the family-wise error rate at "
    f"{ALPHA} over all pairs. McNemar reflects test-set sampling only; whether a difference survives "
    "retraining is shown by the 95% t-interval of the per-seed differences (with one seed: a bootstrap over "
    "test examples). A pair is called significant only when both agree."
)


class _Writer:
    """Appends the outline's blocks in reading order and remembers the tables and figures it used."""

    def __init__(self, tables: list[Table], figures: list[FigureFile]) -> None:
        self.tables = tables
        self.figs = {f.name: f for f in figures}
        self.blocks: list[Block] = []
        self.used_tables: list[Table] = []
        self.used_figures: list[FigureFile] = []

    def heading(self, text: str, anchor: str, level: int = 2) -> None:
        self.blocks.append(Block("heading", text, level=level, anchor=anchor))

    def para(self, text: str) -> None:
        if text:
            self.blocks.append(Block("text", text))

    def items(self, title: str, items: list[str]) -> None:
        self.blocks.append(Block("list", title, items=items))

    def table(self, name: str, max_rows: int | None = None) -> None:
        t = next((t for t in self.tables if t.name == name), None)
        if t is None:
            return
        if max_rows is not None and len(t.rows) > max_rows:
            self.used_tables.append(t)  # written whole as tables/<name>.csv (and .tex) whatever its size
            self.para(
                f"{t.title}: {len(t.rows):,} rows, too many to read here; every row is in "
                f"tables/{t.name}.csv. {t.note}".strip()
            )
            return
        self.add_table(t)

    def add_table(self, t: Table) -> None:
        self.blocks.append(Block("table", t.title, table=t, anchor=f"table-{t.name}"))
        self.used_tables.append(t)

    def figure(self, name: str) -> None:
        f = self.figs.get(name)
        if f is not None:
            self.add_figure(f)

    def add_figure(self, f: FigureFile) -> None:
        self.blocks.append(Block("figure", f.title, figure=f, anchor=f"figure-{f.name}"))
        self.used_figures.append(f)


def _configurations(w: _Writer, a: Analysis) -> None:
    w.blocks += banners(a)
    w.para(_glance(a))
    w.heading("Configurations", "configurations")
    for section in a.data.stages:
        w.para(section.protocol or "")
    w.table("configurations")
    _by_recipe(w, a)
    w.figure("accuracy")


def _by_recipe(w: _Writer, a: Analysis) -> None:
    """When the runs differ by recipe (grid axis `recipe`): each recipe's ranking, and whether it holds."""
    verdict = recipe_verdict(a)
    if not verdict:
        return
    w.heading("By recipe", "by-recipe", level=3)
    w.para(verdict)
    w.table("by_recipe")


def _training_and_cost(w: _Writer, a: Analysis) -> None:
    w.heading("Training", "training")
    w.figure("training_curves")
    w.heading("Accuracy and cost", "cost")
    w.figure("accuracy_vs_params")
    w.figure("accuracy_vs_train_time")
    if a.has_profile:
        w.table("profile")
        w.figure("accuracy_vs_gmacs")
        w.figure("profile_vs_resolution")
    if a.profile_errors:
        w.items("Profile stage errors", [f"{rid}: {err}" for rid, err in a.profile_errors])


def _per_class_and_statistics(w: _Writer, a: Analysis) -> None:
    w.heading("Per class", "per-class")
    w.table("per_class")
    w.figure("per_class_accuracy")
    w.figure("confusion_best_worst")
    w.table("confused_pairs")
    w.figure("confused_pairs")
    w.heading("Statistics", "statistics")
    w.para(STATS_METHOD)
    if not a.comparisons:
        w.para("No two completed configurations share a test set: nothing to compare.")
    w.table("comparisons")
    w.figure("significance_matrix")
    w.table("mcnemar_per_seed", max_rows=MAX_DOCUMENT_ROWS)  # grows with pairs × seeds; the pairs above stay


def _stage_sections(w: _Writer, a: Analysis) -> None:
    """One section per later stage (profile, explain, map, tune…), from its index.json."""
    for k, section in enumerate(a.data.stages):
        stem = f"stage_{k}_{slugify(section.name, 24)}"
        label = section.title + (f" ({section.sweep_dir.name})" if len(a.data.sweep_dirs) > 1 else "")
        w.heading(label, f"stage-{k}")
        for note in section.notes:
            w.para(note)
        for j, sf in enumerate(section.figures):
            w.add_figure(
                FigureFile(f"{stem}_figure_{j}", f"{section.title}: figure {j + 1}", sf.caption, sf.png, b"")
            )
        for j, st in enumerate(section.tables):
            note = f"first {len(st.rows)} rows shown" if st.truncated else ""
            w.add_table(stage_table(f"{stem}_table_{j}", st.title, st.header, st.rows, note, st.columns))
        if section.problems:
            w.items("Problems with this stage's index", list(section.problems))


def _runs_and_provenance(w: _Writer, a: Analysis) -> None:
    w.heading("Runs", "runs")
    w.table("runs")
    w.heading("Failed or missing runs", "failed")
    if not a.not_completed:
        w.para("None: every planned run completed.")
    w.table("failed_or_missing")
    w.heading("Appendix: provenance", "provenance")
    w.para(
        "Each run's spec hash, data fingerprint, code version, seed, device, library versions and start/end "
        "time, from its record. report_manifest.json lists every record and prediction file this report "
        "read, with its sha256."
    )
    w.table("provenance")


def build_outline(
    a: Analysis, tables: list[Table], figures: list[FigureFile], source: str, built_at: str | None = None
) -> Outline:
    built_at = built_at or datetime.now(UTC).isoformat(timespec="seconds")
    sweeps = sorted({r.record.sweep for r in a.data.runs if r.record is not None})
    sweeps = sweeps or [d.name for d in a.data.sweep_dirs]
    w = _Writer(tables, figures)
    sections = (_configurations, _training_and_cost, _per_class_and_statistics, _stage_sections)
    for section in (*sections, _runs_and_provenance):  # in reading order
        section(w, a)
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
    return Outline(title, subtitle, w.blocks, w.used_tables, w.used_figures, facts)
