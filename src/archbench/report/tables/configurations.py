"""Tables with one row per configuration: its aggregated metrics and its cost (profile stage)."""

from __future__ import annotations

from typing import Any

from archbench.report.analysis import Analysis, ConfigSummary
from archbench.report.recipes import recipe_rankings
from archbench.report.tables.base import (
    Col,
    Table,
    build_table,
    estimate_cols,
    estimate_text,
    num,
    params_text,
    pct,
    runs_col,
    saved,
    shown,
)

METRIC_COLUMNS = (
    ("top1", "top-1 (%)", 100.0, 2),
    ("f1_macro", "F1 macro (%)", 100.0, 2),
    ("f1_weighted", "F1 weighted (%)", 100.0, 2),
    ("kappa", "kappa", 1.0, 3),
    ("top5", "top-5 (%)", 100.0, 2),
)

PROFILE_COLUMNS = (
    ("threads", "threads", 0),
    ("params_total", "params", 0),
    ("gmacs", "GMACs", 3),
    ("resolution", "resolution (px)", 0),
    ("latency_ms_p50", "latency p50 (ms)", 2),
    ("latency_ms_p90", "latency p90 (ms)", 2),
    ("throughput_img_s", "throughput (img/s)", 0),
    ("train_throughput_img_s", "train throughput (img/s)", 0),
    ("peak_memory_mb", "peak memory (MB)", 1),
)


def _configuration_cols(s: ConfigSummary) -> list[Col]:
    cols = [Col("rank", s.rank), Col("configuration", s.label), Col("n", s.top1.n)]
    cols += [saved(f"axis {k}", v) for k, v in s.config.axes.items()]
    for key, col, scale, digits in METRIC_COLUMNS:
        e = s.metrics[key]
        name = col.replace(" (%)", "")
        cols.append(shown(col, e.mean, estimate_text(e, scale, digits)))
        cols += estimate_cols(name, e, scale, " (%)" if scale == 100.0 else "")
        cols.append(saved(f"{name} CI method", e.ci_method))
    t = s.train_seconds
    return cols + [
        Col("params", s.params, params_text(s.params)),
        shown("train time (s)", t.mean, estimate_text(t, 1.0, 1).split(" [")[0]),
        saved("train time mean (s)", t.mean),
        saved("train time std (s)", t.std),
        runs_col(s.run_ids),
    ]


def configurations_table(a: Analysis) -> Table:
    note = (
        "One row per configuration (the run spec without its seed), best mean top-1 first. Cells: mean ± "
        "sample std over seeds [95% CI, t-distribution with n−1 degrees of freedom]. (b): one seed only — "
        "the interval is a bootstrap over test examples and says nothing about variation between seeds. "
        "Failed and missing runs are not in these means."
    )
    rows = [_configuration_cols(s) for s in a.summaries]
    return build_table("configurations", "Configurations", rows, note=note, tex_skip=("runs",))


def recipes_table(a: Analysis) -> Table:
    """One row per configuration grouped by recipe (the `recipe` grid axis), ranked within its recipe."""
    rows = [
        [
            Col("recipe", r.recipe),
            Col("rank", rank),
            Col("configuration", name),
            Col("n", s.top1.n),
            shown("top-1 (%)", s.top1.mean, estimate_text(s.top1, 100.0, 2)),
            *estimate_cols("top-1", s.top1, 100.0, " (%)"),
            runs_col(s.run_ids),
        ]
        for r in recipe_rankings(a)
        for s, name, rank in zip(r.summaries, r.names, r.ranks, strict=True)
    ]
    note = (
        "The configurations of the table above grouped by training recipe (grid axis `recipe`), ranked by "
        "mean top-1 within each recipe; configuration: its other grid values. A change of order between "
        "recipes is a change of the means; which differences are significant is under Statistics."
    )
    return build_table("by_recipe", "Configurations by recipe", rows, note=note, tex_skip=("runs",))


def _profile_cols(s: ConfigSummary) -> list[Col]:
    cols = []
    for key, col, digits in PROFILE_COLUMNS:
        v = s.profile.get(key)
        cols.append(Col(col, v, params_text(v) if key == "params_total" else num(v, digits)))
    top1 = s.top1.mean
    return [
        Col("configuration", s.label),
        *cols,
        Col("top-1 (%)", None if top1 is None else 100 * top1, pct(top1)),
        Col("conditions", conditions_text(s.profile_conditions)),
        runs_col(s.run_ids),
    ]


def conditions_text(conditions: list[dict[str, Any]]) -> str:
    """What a configuration's profiles were measured under: "steady (load ≤ L on C cores)", or "noisy in
    k/n runs: why"; "" when its records state no conditions (profiled before they were recorded)."""
    if not conditions:
        return ""
    noisy = [c for c in conditions if c.get("noisy")]
    if noisy:
        reasons = sorted({str(r) for c in noisy for r in c["noisy"]})
        return f"noisy in {len(noisy)}/{len(conditions)} runs: {'; '.join(reasons)}"
    loads = [
        float(x) for c in conditions for x in (c.get("load_before"), c.get("load_after")) if x is not None
    ]
    cores = max(int(c.get("usable_cores") or 0) for c in conditions)
    return f"steady (load ≤ {max(loads):.1f} on {cores} cores)" if loads else "steady"


def profile_table(a: Analysis) -> Table:
    note = (
        "From each completed run's `profile` stage, averaged over its seeds (latency at batch 1). "
        "Conditions: the host's load average before and after each run was profiled and the spread "
        "of its timed calls (p90/p10 − 1); noisy when the load exceeded the usable cores, a spread "
        "exceeded 25 % or fewer than 10 calls were timed: compare such rows with care. Not in LaTeX."
    )
    rows = [_profile_cols(s) for s in a.summaries if s.profile]
    title = "Cost: parameters, compute, latency, memory"
    return build_table("profile", title, rows, note=note, tex_skip=("runs", "conditions"))
