"""Print docs/studies.md's tables from a report folder: its configurations.csv and report_manifest.json.

    python docs/studies/tables_from_report.py OUT/<sweep>/report [--maps]

Every number printed is read from the report's files (which `archbench report` built from the run records
named, with their sha256, in report_manifest.json); nothing is computed here but rounding.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path


def _f(value: str, digits: int, scale: float = 1.0) -> str:
    try:
        return f"{float(value.lstrip(chr(39))) * scale:.{digits}f}"
    except ValueError:
        return value or "-"


def main(report: Path, maps: bool) -> None:
    manifest_path = report / "report_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    print(f"report_manifest.json sha256 `{digest}`; {len(manifest['records'])} records:\n")
    print(", ".join(f"`{r['run_id']}` {r['sha256'][:12]}" for r in manifest["records"]) + "\n")
    rows = list(csv.DictReader((report / "tables" / "configurations.csv").open()))
    print(
        "| rank | configuration | n | top-1 % mean [95% CI] | F1 macro % | kappa mean [95% CI] "
        "| params | train s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['rank']} | {r['configuration']} | {r['n']} "
            f"| {_f(r['top-1 mean (%)'], 1)} "
            f"[{_f(r['top-1 CI low (%)'], 1)}, {_f(r['top-1 CI high (%)'], 1)}] "
            f"| {_f(r['F1 macro mean (%)'], 1)} "
            f"| {_f(r['kappa mean'], 3)} [{_f(r['kappa CI low'], 3)}, {_f(r['kappa CI high'], 3)}] "
            f"| {r['params']} | {_f(r['train time mean (s)'], 1)} |"
        )
    if maps:
        print("\n| map of | pixels scored | overall accuracy | kappa | F1 macro |")
        print("|---|---|---|---|---|")
        for table in sorted((report / "tables").glob("stage_*_map*_table_*.csv")):
            for r in csv.DictReader(table.open()):
                if r["subset"] == "never_in_training":
                    print(
                        f"| {r['model']} | {r['n_pixels']} (never in training) "
                        f"| {_f(r['overall_accuracy'], 3)} "
                        f"| {_f(r['kappa'], 3)} | {_f(r['f1_macro'], 3)} |"
                    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--maps" in sys.argv[2:])
