"""The report's tables: owns what each table holds, its column names and its CSV form.

Every table is built once from the analysis (one column spec per row, see base.py); each cell keeps its
raw value (for CSV and sorting) and its display text. Modules by table family: base.py (cells, column
specs, formatting, CSV), configurations.py (one row per configuration: metrics, by recipe, cost),
classes.py (per class, confused pairs), comparisons.py (pairwise tests), runs.py (runs, failures,
provenance).
"""

from __future__ import annotations

from archbench.report.analysis import Analysis
from archbench.report.tables.base import Cell, Table, estimate_text, stage_table, to_csv
from archbench.report.tables.classes import confused_pairs_table, per_class_table
from archbench.report.tables.comparisons import comparisons_table, seed_tests_table
from archbench.report.tables.configurations import configurations_table, profile_table, recipes_table
from archbench.report.tables.runs import failures_table, provenance_table, runs_table


def all_tables(a: Analysis) -> list[Table]:
    tables = [configurations_table(a), per_class_table(a)]
    by_recipe = recipes_table(a)
    if by_recipe.rows:  # only when the configurations span two recipes or more
        tables.append(by_recipe)
    if a.comparisons:
        tables += [comparisons_table(a), seed_tests_table(a)]
    if a.confused_pairs:
        tables.append(confused_pairs_table(a))
    if a.has_profile:
        tables.append(profile_table(a))
    tables += [runs_table(a), failures_table(a), provenance_table(a)]
    return tables


__all__ = ["Cell", "Table", "all_tables", "estimate_text", "stage_table", "to_csv"]
