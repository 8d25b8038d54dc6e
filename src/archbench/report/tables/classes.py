"""Tables per class: accuracy per class and configuration, and the most-confused class pairs."""

from __future__ import annotations

from archbench.report.analysis import Analysis
from archbench.report.tables.base import Col, Table, build_table, pct, runs_col, saved, shown


def per_class_table(a: Analysis) -> Table:
    classes: list[str] = []
    for s in a.summaries:
        classes += [c for c in s.class_names if c not in classes]
    rows = []
    for s in a.summaries:
        by_name = dict(zip(s.class_names, s.per_class, strict=False))
        cols = [Col("configuration", s.label)]
        for c in classes:
            v = by_name.get(c)
            value = None if v is None else 100 * v
            cols += [shown(c, value, pct(v, 1)), saved(f"{c} (%)", value)]
        rows.append([*cols, runs_col(s.run_ids)])
    note = "Test accuracy per class (%), mean over the configuration's completed seeds; empty: class absent."
    return build_table("per_class", "Per-class accuracy (%)", rows, note=note, tex_skip=("runs",))


def confused_pairs_table(a: Analysis) -> Table:
    rows = [
        [
            Col("true class", p["true"]),
            Col("predicted as", p["pred"]),
            Col("mean rate (%)", 100 * p["mean"], pct(p["mean"])),
            Col("worst configuration", p["worst"]),
            Col("its rate (%)", 100 * p["worst_rate"], pct(p["worst_rate"])),
        ]
        for p in a.confused_pairs
    ]
    note = (
        "Share of a class's test examples predicted as another class (row-normalised confusion, summed over "
        "seeds), averaged over configurations; the ten highest."
    )
    return build_table("confused_pairs", "Most-confused class pairs", rows, note=note)
