"""Tables of the pairwise tests: one row per pair of configurations, and one per seed pair."""

from __future__ import annotations

from archbench.report.analysis import Analysis
from archbench.report.stats import ALPHA, PairComparison, SeedTest
from archbench.report.tables.base import (
    Col,
    Table,
    build_table,
    estimate_cols,
    estimate_text,
    fmt_p,
    saved,
    shown,
)


def seeds_paired_text(seeds: list[int]) -> str:
    """`none`, `1 (seed 0)`, `3 (seeds 0, 1, 2)`: how many seeds both configurations completed, then which
    (a bare `0` read as "no seeds paired" when it meant seed 0)."""
    if not seeds:
        return "none"
    which = ", ".join(map(str, seeds))
    return f"{len(seeds)} (seed{'s' if len(seeds) > 1 else ''} {which})"


def _replicate(t: SeedTest) -> str:
    """A seed pair's name: its seed, and in a spatial k-fold its fold (`f2 s0`)."""
    return f"s{t.seed}" if t.fold is None else f"f{t.fold} s{t.seed}"


def _paired_text(tests: list[SeedTest]) -> str:
    if all(t.fold is None for t in tests):
        return seeds_paired_text([t.seed for t in tests])
    return f"{len(tests)} (fold × seed: {', '.join(_replicate(t) for t in tests)})"


def _comparison_cols(a: Analysis, c: PairComparison) -> list[Col]:
    tests = c.seed_tests
    seeds = [t.seed for t in tests]
    p = c.pooled.p_value if c.pooled else None
    return [
        Col("A", a.summaries[c.a].label),
        Col("B", a.summaries[c.b].label),
        shown("seeds paired", len(seeds), _paired_text(tests)),
        saved("paired seeds", " ".join(map(str, seeds))),
        *(
            []
            if all(t.fold is None for t in tests)
            else [saved("paired folds", " ".join(str(t.fold) for t in tests))]
        ),
        shown("Δ top-1 A−B (pp)", None if c.diff.mean is None else 100 * c.diff.mean, estimate_text(c.diff)),
        *estimate_cols("delta top-1 A-B", c.diff, 100.0, " (pp)"),
        saved("delta CI method", c.diff.ci_method),
        shown("b/c per seed", "; ".join(f"{_replicate(t)}: {t.test.b}/{t.test.c}" for t in tests)),
        saved("b (only A right)", sum(t.test.b for t in tests)),
        saved("c (only B right)", sum(t.test.c for t in tests)),
        shown("McNemar p", p, fmt_p(p)),
        saved("McNemar p (pooled over seeds)", p),
        Col("Holm p", c.p_holm, fmt_p(c.p_holm)),
        shown("verdict", text=c.verdict + (f" ({c.note})" if c.note else "")),
        saved("verdict", c.verdict),
        saved("note", c.note),
        shown("runs", text=", ".join(f"{t.run_a} vs {t.run_b}" for t in tests)),
        saved("runs A", " ".join(t.run_a for t in tests)),
        saved("runs B", " ".join(t.run_b for t in tests)),
    ]


def comparisons_table(a: Analysis) -> Table:
    note = (
        "Pairs of configurations scored on the same test set, paired by seed. Δ: mean over seeds of "
        "acc(A) − acc(B) in percentage points [95% CI: t over seeds; (b) bootstrap over test examples when "
        "only one seed is paired]. b/c: test examples only A / only B classified correctly. McNemar p: exact "
        "test on the discordant counts pooled over seeds (stratified by seed). Holm p: adjusted over all "
        f"pairs in this table. 'A better' needs Holm p < {ALPHA} and a Δ interval that excludes 0."
    )
    rows = [_comparison_cols(a, c) for c in a.comparisons]
    return build_table("comparisons", "Pairwise comparisons", rows, note=note, tex_skip=("runs",))


def seed_tests_table(a: Analysis) -> Table:
    rows = [
        [
            Col("A", a.summaries[c.a].label),
            Col("B", a.summaries[c.b].label),
            Col("seed", t.seed),
            *([] if t.fold is None else [Col("fold", t.fold)]),
            Col("run A", t.run_a),
            Col("run B", t.run_b),
            Col("b (only A right)", t.test.b),
            Col("c (only B right)", t.test.c),
            Col("Δ top-1 (pp)", 100 * t.diff, f"{100 * t.diff:.2f}"),
            Col("McNemar p", t.test.p_value, fmt_p(t.test.p_value)),
            Col("Holm p", t.p_holm, fmt_p(t.p_holm)),
        ]
        for c in a.comparisons
        for t in c.seed_tests
    ]
    note = "McNemar's exact test for each seed pair; Holm-adjusted over every row of this table."
    return build_table("mcnemar_per_seed", "McNemar tests per seed pair", rows, note=note)
