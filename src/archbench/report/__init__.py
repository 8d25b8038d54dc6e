"""`archbench report`: owns turning a sweep's run records into a report folder; never trains or evaluates.

Reads records, predictions and stage indexes from disk only (collect.py), aggregates and tests
(analysis.py, stats.py), then writes tables (tables/), figures (figures/), report.html (html.py),
report.md and report.tex (textformats.py), and report_manifest.json naming every file it read, with hashes.

    from archbench.report import build_report
    result = build_report("results/quickstart")          # -> results/quickstart/report/report.html
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.store.layout import RunLayout, SweepLayout, report_dir
from archbench.util.errors import ArchbenchError
from archbench.util.paths import atomic_write_bytes, atomic_write_text, replace_dir

FORMATS = ("html", "md", "csv", "tex")
MANIFEST_NAME = "report_manifest.json"


class NoSweepError(ArchbenchError):
    """The folder given holds no sweep (no `runs/` folder in it or directly under it)."""


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    configurations: int = 0
    runs: int = 0
    completed: int = 0
    not_completed: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def html(self) -> Path | None:
        p = self.out_dir / "report.html"
        return p if p in self.files else None


def parse_formats(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = [f.strip().lower() for f in items if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise ArchbenchError(
            f"--formats: unknown format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(FORMATS)}"
        )
    return tuple(f for f in FORMATS if f in wanted)


def build_report(
    path: str | Path,
    out: str | Path | None = None,
    formats: str | list[str] | tuple[str, ...] = FORMATS,
    built_at: str | None = None,
    every_run: bool = False,
) -> ReportResult:
    """Write the report for the sweep(s) under `path` into `out` (default: `path/report`): the runs of each
    sweep's current plan, or with `every_run` also every other run folder there."""
    from archbench.report.analysis import analyse
    from archbench.report.collect import collect
    from archbench.report.document import build_outline
    from archbench.report.figures import all_figures
    from archbench.report.tables import all_tables
    from archbench.store.results import find_sweep_dirs

    fmts = parse_formats(formats)
    source = Path(path)
    if not find_sweep_dirs(source):
        raise NoSweepError(
            f"{source}: no sweep found (expected a sweep folder with runs/ inside, or an output_dir holding "
            "such folders); run `archbench run SWEEP.yaml` first"
        )
    out_dir = Path(out) if out is not None else report_dir(source)
    _check_replaceable(out_dir)
    data = collect(source, every_run)
    a = analyse(data)
    want_figures = bool({"html", "md", "tex"} & set(fmts))
    figures = all_figures(a) if want_figures else []
    outline = build_outline(a, all_tables(a), figures, str(source), built_at)

    # Built beside the target, then swapped in: no file of an earlier build survives, and a reader never
    # sees half a report.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        written = _write_all(build_dir, outline, fmts, want_figures)
        manifest = _manifest(source, outline, fmts, data, written, build_dir)
        atomic_write_text(build_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False))
        build_dir.chmod(0o755)
        replace_dir(build_dir, out_dir)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise

    counts: dict[str, int] = {}
    for r in a.not_completed:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ReportResult(
        out_dir=out_dir,
        files=sorted(out_dir / p.relative_to(build_dir) for p in written) + [out_dir / MANIFEST_NAME],
        configurations=len(a.summaries),
        runs=len(data.runs),
        completed=len(a.completed_runs),
        not_completed=counts,
        warnings=[b.text for b in outline.blocks if b.kind == "banner"],
    )


def _check_replaceable(out_dir: Path) -> None:
    """The report folder is rebuilt from scratch, so refuse to replace anything that is not a report."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ArchbenchError(f"--out {out_dir}: exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise ArchbenchError(
            f"--out {out_dir}: the folder holds files but no {MANIFEST_NAME}, so it is not an archbench "
            "report and will not be replaced; choose an empty or new folder"
        )


def _write_all(out_dir: Path, outline: Any, fmts: tuple[str, ...], want_figures: bool) -> dict[Path, bytes]:
    from archbench.report.tables import to_csv
    from archbench.report.textformats import to_latex

    written: dict[Path, bytes] = {}

    def write(rel: str, payload: bytes) -> None:
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, payload)
        written[target] = payload

    if want_figures:
        for f in outline.figures:
            write(f"figures/{f.name}.png", f.png)
            if f.svg:
                write(f"figures/{f.name}.svg", f.svg)
    for t in outline.tables:
        if "csv" in fmts:
            write(f"tables/{t.name}.csv", to_csv(t).encode("utf-8"))
        if "tex" in fmts and t.rows:
            write(f"tables/{t.name}.tex", to_latex(t).encode("utf-8"))
    if "html" in fmts:
        from archbench.report.html import render_html

        write("report.html", render_html(outline).encode("utf-8"))
    if "md" in fmts:
        from archbench.report.textformats import render_markdown

        write("report.md", render_markdown(outline).encode("utf-8"))
    if "tex" in fmts:
        from archbench.report.textformats import render_latex

        write("report.tex", render_latex(outline).encode("utf-8"))
    return written


def _manifest(
    source: Path,
    outline: Any,
    fmts: tuple[str, ...],
    data: Any,
    written: dict[Path, bytes],
    out_dir: Path,
) -> dict[str, Any]:
    from archbench.report.collect import sha256_bytes

    root = source.resolve()

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(root))
        except ValueError:
            return str(p)

    return {
        "archbench_report": 1,
        "built_at": outline.facts["built_at"],
        "source": str(source),
        "formats": list(fmts),
        "records": [
            {
                "run_id": r.run_id,
                "sweep": r.sweep_name,
                "status": r.status,
                "record": rel(RunLayout(r.run_dir).record),
                "sha256": r.record_sha256,
                "predictions": rel(RunLayout(r.run_dir).predictions) if r.predictions_sha256 else None,
                "predictions_sha256": r.predictions_sha256,
                "used_in_aggregates": r.completed,
            }
            for r in data.runs
            if r.record is not None
        ],
        "missing": [{"run_id": r.run_id, "sweep": r.sweep_dir.name} for r in data.runs if r.record is None],
        "stage_indexes": [rel(SweepLayout(s.sweep_dir).stage_index(s.name)) for s in data.stages],
        "outputs": [
            {"path": str(p.relative_to(out_dir)), "sha256": sha256_bytes(b)}
            for p, b in sorted(written.items())
        ],
    }


__all__ = ["FORMATS", "NoSweepError", "ReportResult", "build_report", "parse_formats"]
