"""One escaping policy for every output (RELIABILITY 40): control characters in class, model or sweep names
reach the terminal, HTML, Markdown, LaTeX, CSV, SVG and MLflow tags as visible escapes, never raw."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from archbench.report.html import escape as html_escape
from archbench.report.textformats import md_escape, tex_escape
from archbench.store.record import read_record
from archbench.store.results import neutralise_csv_cell, rows_to_csv
from archbench.tracking.mlflow import SweepTarget, desired_state, flatten
from archbench.util.escape import visible
from archbench.util.terminal import literal
from conftest import imagefolder_sweep
from helpers import cli
from test_data import make_class_tree

pytestmark = pytest.mark.reliability

RAW = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # any control byte but tab, newline, CR
HOSTILE = "\x1b[31mred\x00\n\x9b\u202e"


def test_visible_shows_every_control_character_and_keeps_text() -> None:
    assert visible(HOSTILE) == "\\x1b[31mred\\x00\\x0a\\x9b\\u202e"
    assert visible("plain ünïcode 漢字 · 👩‍🔬") == "plain ünïcode 漢字 · 👩‍🔬"
    assert literal("a\tb\nc\x1bd") == "a\tb\nc\\x1bd"  # the terminal keeps tab and newline in messages
    for rendered in (md_escape(HOSTILE), tex_escape(HOSTILE), html_escape(HOSTILE)):
        assert not RAW.search(rendered.encode()) and "\n" not in rendered and "x1b" in rendered
    assert neutralise_csv_cell("\t=cmd()") == "\\x09=cmd()"  # made visible: no longer a formula
    assert neutralise_csv_cell("=cmd()") == "'=cmd()"
    row = list(csv.reader(io.StringIO(rows_to_csv([{"name": HOSTILE}]))))[1]
    assert row == [visible(HOSTILE)]
    assert flatten({"model": {"name": HOSTILE}}) == {"model.name": visible(HOSTILE)}


def test_a_class_named_with_escapes_reaches_no_output_raw(tmp_path: Path) -> None:
    classes = ["cat", "\x1b[31mred", "new\nline"]
    make_class_tree(tmp_path / "imgs" / "train", classes, 10)
    make_class_tree(tmp_path / "imgs" / "test", classes, 3)
    run = cli("run", str(imagefolder_sweep(tmp_path, tmp_path / "imgs", "sweep\x1b[2J")), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    (sweep_dir,) = (tmp_path / "results").iterdir()
    report = cli("report", str(sweep_dir), cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    listing = cli("ls", str(sweep_dir), "--format", "csv", cwd=tmp_path)
    for out in (run, report, listing):
        assert not RAW.search((out.stdout + out.stderr).encode())
    files = [
        p for p in (sweep_dir / "report").rglob("*") if p.suffix in {".md", ".tex", ".html", ".csv", ".svg"}
    ]
    assert {"report.md", "report.tex", "report.html", "per_class.csv", "per_class.tex"} <= {
        p.name for p in files
    }
    assert any(p.suffix == ".svg" for p in files)
    for p in files + [sweep_dir / "results.csv"]:
        assert not RAW.search(p.read_bytes()), p
    # Shown, not dropped: the class is there as text.
    assert "\\\\x1b\\[31mred" in (sweep_dir / "report" / "report.md").read_text()  # Markdown-escaped \x1b[
    assert "\\x1b[31mred" in (sweep_dir / "report" / "tables" / "per_class.csv").read_text()
    svg = (sweep_dir / "report" / "figures" / "per_class_accuracy.svg").read_text()
    assert "\\x1b[31mred" in svg and "new\\x0aline" in svg
    # MLflow: the tags and params of the run's desired MLflow state.
    (run_dir,) = (sweep_dir / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None and "\x1b[31mred" in (rec.class_names or [])  # the record keeps the truth
    # A sweep target without a client: the tags and params are computed, nothing is sent.
    target = SweepTarget(cl=None, exp_id="0", root=sweep_dir, key="key", parent_id="parent")
    want = desired_state(run_dir, rec, target)
    for text in [*want.tags.values(), *want.params.values()]:
        assert not RAW.search(text.encode()) and "\n" not in text
    assert want.tags["archbench.sweep"] == "sweep\\x1b[2J"
