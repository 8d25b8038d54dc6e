"""The report's tables: owns what each table holds, its column names and its CSV form.

Every table is built once from the analysis; each cell keeps its raw value (for CSV and sorting) and its
display text. textformats.py (Markdown, LaTeX) and html.py render the same tables and escape every cell:
names in records are user input and may be hostile.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from archbench.report.analysis import Analysis
from archbench.report.stats import ALPHA, Estimate
from archbench.store.results import neutralise_csv_cell


@dataclass
class Cell:
    text: str
    value: Any = None  # raw value for CSV and sorting; None: use the text
    title: str = ""  # full value shown on hover in HTML when the text is shortened

    @property
    def raw(self) -> Any:
        return self.text if self.value is None else self.value


@dataclass
class Table:
    name: str  # file stem: tables/<name>.csv
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""
    csv_columns: list[str] = field(default_factory=list)  # CSV may carry more columns than the display
    csv_rows: list[list[Any]] = field(default_factory=list)
    tex_skip: tuple[str, ...] = ()  # display columns left out of LaTeX (too wide for a page)

    def numeric(self, i: int) -> bool:
        """Does column i hold numbers only (right-aligned, sorted by value)?"""
        vals = [row[i].value for row in self.rows if row[i].text]
        return bool(vals) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)


# ---------------------------------------------------------------------------------------------- formatting


def pct(x: float | None, digits: int = 2) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def _num(x: float | None, digits: int = 3) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _scaled(e: Estimate, scale: float) -> tuple[float | None, float | None, float | None, float | None]:
    def sc(v: float | None) -> float | None:
        return None if v is None else v * scale

    return sc(e.mean), sc(e.std), sc(e.ci_low), sc(e.ci_high)


def estimate_text(e: Estimate, scale: float = 100.0, digits: int = 2) -> str:
    """`mean ± std [low, high]`; a bootstrap interval is marked (b)."""
    mean, std, lo, hi = _scaled(e, scale)
    if mean is None:
        return ""
    out = f"{mean:.{digits}f}"
    if std is not None:
        out += f" ± {std:.{digits}f}"
    if lo is not None and hi is not None:
        out += f" [{lo:.{digits}f}, {hi:.{digits}f}]" + (" (b)" if e.ci_method == "bootstrap" else "")
    return out


def estimate_csv(name: str, e: Estimate, scale: float = 100.0, unit: str = " (%)") -> dict[str, Any]:
    """CSV columns `<name> mean (%)`, `<name> std (%)`, `<name> CI low (%)`, `<name> CI high (%)`."""
    mean, std, lo, hi = _scaled(e, scale)
    return {
        f"{name} mean{unit}": mean,
        f"{name} std{unit}": std,
        f"{name} CI low{unit}": lo,
        f"{name} CI high{unit}": hi,
    }


def _params_text(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p / 1e6:.2f} M" if p >= 1e6 else f"{int(p):,}"


def _short(h: str | None, n: int = 12) -> Cell:
    return Cell((h or "")[:n], h or "", h or "")


def _table_from_dicts(
    name: str, title: str, display: list[dict[str, Cell]], csv_rows: list[dict[str, Any]], **kw: Any
) -> Table:
    columns = list(display[0]) if display else []
    csv_cols: list[str] = []
    for r in csv_rows:
        csv_cols += [k for k in r if k not in csv_cols]
    return Table(
        name,
        title,
        columns,
        [[d.get(c, Cell("")) for c in columns] for d in display],
        csv_columns=csv_cols,
        csv_rows=[[r.get(c) for c in csv_cols] for r in csv_rows],
        **kw,
    )


# ---------------------------------------------------------------------------------------------- builders

METRIC_COLUMNS = (
    ("top1", "top-1 (%)", 100.0, 2),
    ("f1_macro", "F1 macro (%)", 100.0, 2),
    ("f1_weighted", "F1 weighted (%)", 100.0, 2),
    ("kappa", "kappa", 1.0, 3),
    ("top5", "top-5 (%)", 100.0, 2),
)


def configurations_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for s in a.summaries:
        d: dict[str, Cell] = {
            "rank": Cell(str(s.rank), s.rank),
            "configuration": Cell(s.label),
            "n": Cell(str(s.top1.n), s.top1.n),
        }
        r: dict[str, Any] = {"rank": s.rank, "configuration": s.label, "n": s.top1.n}
        r.update({f"axis {k}": v for k, v in s.config.axes.items()})
        for key, col, scale, digits in METRIC_COLUMNS:
            e = s.metrics[key]
            d[col] = Cell(estimate_text(e, scale, digits), e.mean)
            name = col.replace(" (%)", "")
            r.update(estimate_csv(name, e, scale, " (%)" if scale == 100.0 else ""))
            r[f"{name} CI method"] = e.ci_method
        d["params"] = Cell(_params_text(s.params), s.params)
        d["train time (s)"] = Cell(
            estimate_text(s.train_seconds, 1.0, 1).split(" [")[0], s.train_seconds.mean
        )
        d["runs"] = Cell(", ".join(s.run_ids))
        r["params"] = s.params
        r["train time mean (s)"] = s.train_seconds.mean
        r["train time std (s)"] = s.train_seconds.std
        r["runs"] = " ".join(s.run_ids)
        display.append(d)
        rows.append(r)
    note = (
        "One row per configuration (the run spec without its seed), best mean top-1 first. Cells: mean ± "
        "sample std over seeds [95% CI, t-distribution with n−1 degrees of freedom]. (b): one seed only — "
        "the interval is a bootstrap over test examples and says nothing about variation between seeds. "
        "Failed and missing runs are not in these means."
    )
    return _table_from_dicts("configurations", "Configurations", display, rows, note=note, tex_skip=("runs",))


def per_class_table(a: Analysis) -> Table:
    classes: list[str] = []
    for s in a.summaries:
        classes += [c for c in s.class_names if c not in classes]
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for s in a.summaries:
        by_name = dict(zip(s.class_names, s.per_class, strict=False))
        d = {"configuration": Cell(s.label)}
        r: dict[str, Any] = {"configuration": s.label}
        for c in classes:
            v = by_name.get(c)
            d[c] = Cell(pct(v, 1), None if v is None else 100 * v)
            r[f"{c} (%)"] = None if v is None else 100 * v
        d["runs"] = Cell(", ".join(s.run_ids))
        r["runs"] = " ".join(s.run_ids)
        display.append(d)
        rows.append(r)
    note = "Test accuracy per class (%), mean over the configuration's completed seeds; empty: class absent."
    return _table_from_dicts(
        "per_class", "Per-class accuracy (%)", display, rows, note=note, tex_skip=("runs",)
    )


def runs_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    several = len(a.data.sweep_dirs) > 1
    unplanned = any(not e.in_plan for e in a.data.runs)
    for e in a.data.runs:
        rec = e.record
        m = rec.metrics if rec is not None and e.completed else None
        d = {"run id": Cell(e.run_id)}
        if several:
            d["sweep"] = Cell(e.sweep_name)
        seed = e.seed
        d.update(
            {
                "configuration": Cell(e.config_label),
                "seed": Cell("" if seed is None else str(seed), seed),
                "status": Cell(e.status),
                "top-1 (%)": Cell(pct(m.top1) if m else "", 100 * m.top1 if m else None),
                "F1 macro (%)": Cell(pct(m.f1_macro) if m else "", 100 * m.f1_macro if m else None),
                "kappa": Cell(_num(m.kappa) if m else "", m.kappa if m else None),
                "params": Cell(
                    _params_text(rec.params.get("total")) if rec and rec.params else "",
                    rec.params.get("total") if rec and rec.params else None,
                ),
                "train time (s)": Cell(
                    _num(rec.train_seconds, 1) if rec else "", rec.train_seconds if rec else None
                ),
                "epochs": Cell(str(len(rec.history)) if rec else "", len(rec.history) if rec else None),
                "reason": Cell("" if e.completed else e.reason),
            }
        )
        if unplanned:
            d["in plan"] = Cell("yes" if e.in_plan else "no")
        r: dict[str, Any] = {"run id": e.run_id, "sweep": e.sweep_name, "configuration": e.config_label}
        r.update({f"axis {k}": v for k, v in e.axes.items()})
        r.update(
            {
                "seed": seed,
                "status": e.status,
                "top-1 (%)": 100 * m.top1 if m else None,
                "top-5 (%)": 100 * m.top5 if m and m.top5 is not None else None,
                "F1 macro (%)": 100 * m.f1_macro if m else None,
                "F1 weighted (%)": 100 * m.f1_weighted if m else None,
                "kappa": m.kappa if m else None,
                "test loss": m.loss if m else None,
                "params": rec.params.get("total") if rec and rec.params else None,
                "train time (s)": rec.train_seconds if rec else None,
                "epochs": len(rec.history) if rec else None,
                "reason": "" if e.completed else e.reason,
                "in plan": e.in_plan,
            }
        )
        display.append(d)
        rows.append(r)
    note = f"Every run of the current plan{' and other run folders' if unplanned else ''}. Click to sort."
    return _table_from_dicts("runs", "Runs", display, rows, note=note)


def failures_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for e in a.not_completed:
        detail = (e.record.failure_detail or "") if e.record is not None else ""
        short = detail if len(detail) <= 300 else detail[:297] + "..."
        seed = e.seed
        d = {
            "run id": Cell(e.run_id),
            "configuration": Cell(e.config_label),
            "seed": Cell("" if seed is None else str(seed), seed),
            "status": Cell(e.status),
            "reason": Cell(e.reason),
            "detail": Cell(short, detail, detail if short != detail else ""),
        }
        display.append(d)
        rows.append(
            {
                "run id": e.run_id,
                "configuration": e.config_label,
                "seed": seed,
                "status": e.status,
                "reason": e.reason,
                "detail": detail,
            }
        )
    note = "Runs that are not completed. They are left out of every aggregate; nothing is filled in."
    return _table_from_dicts("failed_or_missing", "Failed or missing runs", display, rows, note=note)


def comparisons_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for c in a.comparisons:
        sa, sb = a.summaries[c.a], a.summaries[c.b]
        seeds = [t.seed for t in c.seed_tests]
        per_seed = "; ".join(f"s{t.seed}: {t.test.b}/{t.test.c}" for t in c.seed_tests)
        d = {
            "A": Cell(sa.label),
            "B": Cell(sb.label),
            "paired seeds": Cell(", ".join(map(str, seeds)), len(seeds)),
            "Δ top-1 A−B (pp)": Cell(
                estimate_text(c.diff, 100.0, 2), None if c.diff.mean is None else 100 * c.diff.mean
            ),
            "b/c per seed": Cell(per_seed),
            "McNemar p": Cell(
                fmt_p(c.pooled.p_value) if c.pooled else "", c.pooled.p_value if c.pooled else None
            ),
            "Holm p": Cell(fmt_p(c.p_holm), c.p_holm),
            "verdict": Cell(c.verdict + (f" ({c.note})" if c.note else "")),
            "runs": Cell(", ".join(f"{t.run_a} vs {t.run_b}" for t in c.seed_tests)),
        }
        display.append(d)
        r: dict[str, Any] = {"A": sa.label, "B": sb.label, "paired seeds": " ".join(map(str, seeds))}
        r.update(estimate_csv("delta top-1 A-B", c.diff, 100.0, " (pp)"))
        r["delta CI method"] = c.diff.ci_method
        r.update(
            {
                "b (only A right)": sum(t.test.b for t in c.seed_tests),
                "c (only B right)": sum(t.test.c for t in c.seed_tests),
                "McNemar p (pooled over seeds)": c.pooled.p_value if c.pooled else None,
                "Holm p": c.p_holm,
                "verdict": c.verdict,
                "note": c.note,
                "runs A": " ".join(t.run_a for t in c.seed_tests),
                "runs B": " ".join(t.run_b for t in c.seed_tests),
            }
        )
        rows.append(r)
    note = (
        "Pairs of configurations scored on the same test set, paired by seed. Δ: mean over seeds of "
        "acc(A) − acc(B) in percentage points [95% CI: t over seeds; (b) bootstrap over test examples when "
        "only one seed is paired]. b/c: test examples only A / only B classified correctly. McNemar p: exact "
        "test on the discordant counts pooled over seeds (stratified by seed). Holm p: adjusted over all "
        f"pairs in this table. 'A better' needs Holm p < {ALPHA} and a Δ interval that excludes 0."
    )
    return _table_from_dicts(
        "comparisons", "Pairwise comparisons", display, rows, note=note, tex_skip=("runs",)
    )


def seed_tests_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for c in a.comparisons:
        sa, sb = a.summaries[c.a], a.summaries[c.b]
        for t in c.seed_tests:
            d = {
                "A": Cell(sa.label),
                "B": Cell(sb.label),
                "seed": Cell(str(t.seed), t.seed),
                "run A": Cell(t.run_a),
                "run B": Cell(t.run_b),
                "b (only A right)": Cell(str(t.test.b), t.test.b),
                "c (only B right)": Cell(str(t.test.c), t.test.c),
                "Δ top-1 (pp)": Cell(f"{100 * t.diff:.2f}", 100 * t.diff),
                "McNemar p": Cell(fmt_p(t.test.p_value), t.test.p_value),
                "Holm p": Cell(fmt_p(t.p_holm), t.p_holm),
            }
            display.append(d)
            rows.append({k: v.raw for k, v in d.items()})
    note = "McNemar's exact test for each seed pair; Holm-adjusted over every row of this table."
    return _table_from_dicts("mcnemar_per_seed", "McNemar tests per seed pair", display, rows, note=note)


def confused_pairs_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for p in a.confused_pairs:
        d = {
            "true class": Cell(p["true"]),
            "predicted as": Cell(p["pred"]),
            "mean rate (%)": Cell(pct(p["mean"]), 100 * p["mean"]),
            "worst configuration": Cell(p["worst"]),
            "its rate (%)": Cell(pct(p["worst_rate"]), 100 * p["worst_rate"]),
        }
        display.append(d)
        rows.append({k: v.raw for k, v in d.items()})
    note = (
        "Share of a class's test examples predicted as another class (row-normalised confusion, summed over "
        "seeds), averaged over configurations; the ten highest."
    )
    return _table_from_dicts("confused_pairs", "Most-confused class pairs", display, rows, note=note)


PROFILE_COLUMNS = (
    ("params_total", "params", 0),
    ("gmacs", "GMACs", 3),
    ("resolution", "resolution (px)", 0),
    ("latency_ms_p50", "latency p50 (ms)", 2),
    ("latency_ms_p90", "latency p90 (ms)", 2),
    ("throughput_img_s", "throughput (img/s)", 0),
    ("train_throughput_img_s", "train throughput (img/s)", 0),
    ("peak_memory_mb", "peak memory (MB)", 1),
)


def profile_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for s in a.summaries:
        if not s.profile:
            continue
        d = {"configuration": Cell(s.label)}
        r: dict[str, Any] = {"configuration": s.label}
        for key, col, digits in PROFILE_COLUMNS:
            v = s.profile.get(key)
            text = _params_text(v) if key == "params_total" else _num(v, digits)
            d[col] = Cell(text, v)
            r[col] = v
        d["top-1 (%)"] = Cell(pct(s.top1.mean), None if s.top1.mean is None else 100 * s.top1.mean)
        r["top-1 (%)"] = d["top-1 (%)"].value
        d["runs"] = Cell(", ".join(s.run_ids))
        r["runs"] = " ".join(s.run_ids)
        display.append(d)
        rows.append(r)
    note = "From each completed run's `profile` stage, averaged over its seeds (latency at batch 1)."
    return _table_from_dicts(
        "profile", "Cost: parameters, compute, latency, memory", display, rows, note=note, tex_skip=("runs",)
    )


def _libraries(libs: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(libs.items()))


def _device(dev: dict[str, Any]) -> str:
    parts = [str(dev.get(k)) for k in ("type", "name") if dev.get(k)]
    if dev.get("threads"):
        parts.append(f"{dev['threads']} threads")
    if dev.get("amp") not in (None, "off"):
        parts.append(f"amp {dev['amp']}")
    return " ".join(parts)


def _code(cv: dict[str, Any]) -> str:
    parts = [f"archbench {cv['archbench']}"] if cv.get("archbench") else []
    parts.append(f"git {cv['git_commit']}" if cv.get("git_commit") else "git unknown")
    return ", ".join(parts)


def provenance_table(a: Analysis) -> Table:
    display: list[dict[str, Cell]] = []
    rows: list[dict[str, Any]] = []
    for e in a.data.runs:
        rec = e.record
        if rec is None:
            d = {"run id": Cell(e.run_id), "status": Cell("missing")}
            display.append(d)
            rows.append({"run id": e.run_id, "status": "missing"})
            continue
        d = {
            "run id": Cell(e.run_id),
            "status": Cell(rec.status),
            "seed": Cell(str(rec.seed), rec.seed),
            "spec hash": _short(rec.spec_hash),
            "data fingerprint": _short(rec.data_fingerprint),
            "code version": Cell(_code(rec.code_version)),
            "device": Cell(_device(rec.device)),
            "libraries": Cell(_libraries(rec.libraries)),
            "started": Cell(rec.started_at or ""),
            "ended": Cell(rec.ended_at or ""),
            "record sha256": _short(e.record_sha256),
        }
        display.append(d)
        rows.append(
            {
                "run id": e.run_id,
                "sweep": rec.sweep,
                "status": rec.status,
                "seed": rec.seed,
                "spec hash": rec.spec_hash,
                "data fingerprint": rec.data_fingerprint,
                "archbench": rec.code_version.get("archbench"),
                "git commit": rec.code_version.get("git_commit"),
                "device": _device(rec.device),
                "host": rec.host.get("hostname"),
                "libraries": _libraries(rec.libraries),
                "started": rec.started_at,
                "ended": rec.ended_at,
                "resumes": rec.resumes,
                "checkpoint sha256": rec.checkpoint_sha256,
                "record sha256": e.record_sha256,
                "predictions sha256": e.predictions_sha256,
            }
        )
    columns = ["run id", "status", "seed", "spec hash", "data fingerprint", "code version", "device"]
    columns += ["libraries", "started", "ended", "record sha256"]
    t = _table_from_dicts("provenance", "Provenance of every run", [], rows)
    t.columns = columns
    t.rows = [[d.get(c, Cell("")) for c in columns] for d in display]
    t.note = "Hashes shortened to 12 characters here; the CSV holds them in full."
    return t


def stage_table(name: str, title: str, header: list[str], body: list[list[str]], note: str = "") -> Table:
    width = max([len(header)] + [len(r) for r in body]) if header or body else 0
    columns = list(header) + [f"column {i + 1}" for i in range(len(header), width)]
    rows = [[Cell(str(v)) for v in list(r) + [""] * (width - len(r))] for r in body]
    return Table(name, title, columns, rows, note=note)


def all_tables(a: Analysis) -> list[Table]:
    tables = [configurations_table(a), per_class_table(a)]
    if a.comparisons:
        tables += [comparisons_table(a), seed_tests_table(a)]
    if a.confused_pairs:
        tables.append(confused_pairs_table(a))
    if a.has_profile:
        tables.append(profile_table(a))
    tables += [runs_table(a), failures_table(a), provenance_table(a)]
    return tables


# ---------------------------------------------------------------------------------------------- renderers


def to_csv(t: Table) -> str:
    """CSV with raw values; text cells starting with = + - @ are neutralised against formula injection."""
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = t.csv_columns or t.columns
    w.writerow([neutralise_csv_cell(c) for c in cols])
    body = t.csv_rows or [[c.raw for c in row] for row in t.rows]
    for row in body:
        w.writerow([neutralise_csv_cell(_csv_value(v)) for v in row])
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool | int | float):
        return v
    return str(v)
