"""From collected runs to the report's findings: owns aggregation over seeds, ranks and pairwise comparisons.

Uses stats.py for every interval and test; knows nothing of tables, figures or file formats. Only completed
runs enter an aggregate; the others are counted and listed, never filled in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archbench.report.collect import Configuration, ReportData, RunEntry
from archbench.report.stats import (
    Estimate,
    PairComparison,
    apply_holm,
    bootstrap_accuracy,
    compare_pairs,
    t_estimate,
)
from archbench.store.record import PROFILE_SUMMARY_KEYS
from archbench.util.escape import visible

METRICS = ("top1", "f1_macro", "f1_weighted", "kappa", "top5")
# The profile block's keys (record.ProfileBlock) a report averages over a configuration's seeds.
PROFILE_KEYS = (
    "threads",
    "params_total",
    "gmacs",
    "resolution",
    "latency_ms_p50",
    "latency_ms_p90",
    "throughput_img_s",
    "train_throughput_img_s",
    "peak_memory_mb",
)


@dataclass
class ConfigSummary:
    config: Configuration
    runs: list[RunEntry]  # completed runs only
    metrics: dict[str, Estimate] = field(default_factory=dict)
    train_seconds: Estimate = field(default_factory=lambda: Estimate(0, None))
    params: int | None = None
    class_names: list[str] = field(default_factory=list)
    per_class: list[float | None] = field(default_factory=list)  # mean over seeds, fraction
    confusion: list[list[int]] | None = None  # summed over seeds
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> (epoch, mean)
    profile: dict[str, float] = field(default_factory=dict)  # mean over seeds of the profile block
    per_resolution: dict[int, dict[str, float]] = field(default_factory=dict)
    profile_conditions: list[dict[str, Any]] = field(default_factory=list)  # each profiled run's conditions
    rank: int = 0

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def top1(self) -> Estimate:
        return self.metrics["top1"]

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]


@dataclass
class Analysis:
    data: ReportData
    summaries: list[ConfigSummary]  # completed configurations, best first
    comparisons: list[PairComparison]
    confused_pairs: list[dict[str, Any]]
    profile_errors: list[tuple[str, str]]
    single_seed_configs: list[str]

    @property
    def completed_runs(self) -> list[RunEntry]:
        return [r for r in self.data.runs if r.completed]

    @property
    def not_completed(self) -> list[RunEntry]:
        return [r for r in self.data.runs if not r.completed]

    @property
    def all_single_seed(self) -> bool:
        return bool(self.summaries) and all(s.top1.n == 1 for s in self.summaries)

    @property
    def has_profile(self) -> bool:
        return any(s.profile for s in self.summaries)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def summarise(config: Configuration) -> ConfigSummary | None:
    runs = config.completed
    if not runs:
        return None
    recs = [r.record for r in runs if r.record is not None and r.record.metrics is not None]
    s = ConfigSummary(config, runs)
    for m in METRICS:
        bounds = (-1.0, 1.0) if m == "kappa" else (0.0, 1.0)
        s.metrics[m] = t_estimate(
            [getattr(rec.metrics, m) for rec in recs if rec.metrics is not None], bounds
        )
    if len(runs) == 1 and runs[0].predictions is not None:
        p = runs[0].predictions
        s.metrics["top1"] = bootstrap_accuracy(p["y_pred"] == p["y_true"])
    s.train_seconds = t_estimate([rec.train_seconds for rec in recs])
    params = [rec.params["total"] for rec in recs if rec.params and "total" in rec.params]
    s.params = round(_mean([float(p) for p in params]) or 0) if params else None
    s.class_names = [visible(c) for c in recs[0].class_names or []]  # folder names: shown, never raw
    width = max(len(rec.metrics.per_class_accuracy) for rec in recs if rec.metrics is not None)
    if not s.class_names or len(s.class_names) != width:
        s.class_names = [str(i) for i in range(width)]
    for k in range(width):
        vals = [
            rec.metrics.per_class_accuracy[k]
            for rec in recs
            if rec.metrics is not None and k < len(rec.metrics.per_class_accuracy)
        ]
        s.per_class.append(_mean([float(v) for v in vals if v is not None]))
    cms = [rec.metrics.confusion_matrix for rec in recs if rec.metrics is not None]
    if cms and all(len(cm) == len(cms[0]) for cm in cms):
        s.confusion = [[sum(cm[i][j] for cm in cms) for j in range(len(cms[0]))] for i in range(len(cms[0]))]
    for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
        by_epoch: dict[int, list[float]] = {}
        for rec in recs:
            for h in rec.history:
                v = _finite(getattr(h, key))
                if v is not None:
                    by_epoch.setdefault(h.epoch, []).append(v)
        s.history[key] = [(e, math.fsum(v) / len(v)) for e, v in sorted(by_epoch.items())]
    _summarise_profile(s, recs)
    return s


def _summarise_profile(s: ConfigSummary, recs: list[Any]) -> None:
    blocks = [rec.stages.get("profile") for rec in recs]
    blocks = [b for b in blocks if isinstance(b, dict) and "error" not in b]
    if not blocks:
        return
    for key in PROFILE_KEYS:
        mean = _mean([v for v in (_finite(b.get(key)) for b in blocks) if v is not None])
        if mean is not None:
            s.profile[key] = mean
    s.profile_conditions = [b["conditions"] for b in blocks if isinstance(b.get("conditions"), dict)]
    per_res: dict[int, dict[str, list[float]]] = {}
    for b in blocks:
        for item in b.get("per_resolution") or []:
            if not isinstance(item, dict) or _finite(item.get("resolution")) is None:
                continue
            res = int(float(item["resolution"]))
            for key in PROFILE_SUMMARY_KEYS:
                v = _finite(item.get(key))
                if v is not None:
                    per_res.setdefault(res, {}).setdefault(key, []).append(v)
    s.per_resolution = {
        res: {k: math.fsum(v) / len(v) for k, v in vals.items()} for res, vals in sorted(per_res.items())
    }


def _rank(summaries: list[ConfigSummary]) -> list[ConfigSummary]:
    """Best mean top-1 first; equal means share a rank (1, 2, 2, 4)."""
    ordered = sorted(summaries, key=lambda s: (-(s.top1.mean or 0.0), s.label))
    for i, s in enumerate(ordered):
        prev = ordered[i - 1] if i else None
        s.rank = prev.rank if prev is not None and prev.top1.mean == s.top1.mean else i + 1
    return ordered


def _paired_runs(a: ConfigSummary, b: ConfigSummary) -> tuple[list[tuple[int, str, str, Any, Any, Any]], str]:
    # Replicates pair by seed and, in a spatial k-fold, by fold (the same test blocks).
    by_seed_b = {(r.seed, r.fold): r for r in b.runs if r.predictions is not None}
    paired, note = [], ""
    for ra in a.runs:
        rb = by_seed_b.get((ra.seed, ra.fold))
        if ra.predictions is None or rb is None or rb.predictions is None:
            if ra.predictions is None or any((r.seed, r.fold) == (ra.seed, ra.fold) for r in b.runs):
                note = note or f"seed {ra.seed}: predictions.npz missing or unreadable"
            continue
        pa, pb = ra.predictions, rb.predictions
        if pa["y_true"].shape != pb["y_true"].shape or not (pa["y_true"] == pb["y_true"]).all():
            note = f"seed {ra.seed}: the two runs' test labels differ (not the same test set)"
            continue
        paired.append((int(ra.seed or 0), ra.run_id, rb.run_id, pa["y_true"], pa["y_pred"], pb["y_pred"]))
    return paired, note


def compare_all(summaries: list[ConfigSummary]) -> list[PairComparison]:
    """Every pair of configurations on the same test set, better-ranked first; Holm-corrected together."""
    items, notes = [], []
    for i, a in enumerate(summaries):
        for j in range(i + 1, len(summaries)):
            b = summaries[j]
            if a.config.test_set != b.config.test_set:
                continue
            paired, note = _paired_runs(a, b)
            items.append((i, j, paired))
            notes.append(note)
    out = compare_pairs(items)
    fold_of_run = {r.run_id: r.fold for s in summaries for r in s.runs}
    for comp, note in zip(out, notes, strict=True):
        comp.note = comp.note or note
        for t in comp.seed_tests:
            t.fold = fold_of_run.get(t.run_a)
    apply_holm(out)
    return out


def most_confused(summaries: list[ConfigSummary], top: int = 10) -> list[dict[str, Any]]:
    """Off-diagonal (true, predicted) pairs with the highest error rate averaged over configurations."""
    rates: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for s in summaries:
        cm = s.confusion
        if cm is None or len(cm) != len(s.class_names):
            continue
        for i, row in enumerate(cm):
            total = sum(row)
            if total == 0:
                continue
            for j, v in enumerate(row):
                if i != j:
                    rates.setdefault((s.class_names[i], s.class_names[j]), []).append((v / total, s.label))
    n_cfg = len([s for s in summaries if s.confusion is not None])
    rows: list[dict[str, Any]] = []
    for (true, pred), vals in rates.items():
        mean = math.fsum(v for v, _ in vals) / max(n_cfg, 1)  # configurations without the pair count as 0
        worst_rate, worst = max(vals, key=lambda t: (t[0], t[1]))
        if worst_rate > 0:
            rows.append({"true": true, "pred": pred, "mean": mean, "worst": worst, "worst_rate": worst_rate})
    rows.sort(key=lambda r: (-r["mean"], r["true"], r["pred"]))
    return rows[:top]


def analyse(data: ReportData) -> Analysis:
    summaries = _rank([s for s in (summarise(c) for c in data.configs) if s is not None])
    profile_errors = []
    for r in data.runs:
        prof = r.record.stages.get("profile") if r.record is not None else None
        if isinstance(prof, dict) and "error" in prof:
            profile_errors.append((r.run_id, str(prof["error"])))
    return Analysis(
        data=data,
        summaries=summaries,
        comparisons=compare_all(summaries),
        confused_pairs=most_confused(summaries),
        profile_errors=profile_errors,
        single_seed_configs=[s.label for s in summaries if s.top1.n == 1],
    )
