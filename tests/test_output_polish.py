"""Output a reader trusts: `ls` fits the terminal, progress bars name their run, report numbers are rounded
with units, the "verified" note reads as good news, seed counts cannot be misread, wide tables scroll in
their box, and figures read in black and white. Numbers themselves never change: only how they are shown."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import REPO
from helpers import cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

WIDE_SWEEP = """
name: wide_listing
output_dir: {out}
data: {{kind: digits, limit_per_class: 5, test_limit_per_class: 3}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, threads: 1}}
grid:
  model.name: [tiny_cnn]
  train.optimizer: [sgd, adam]
  train.weight_decay: [0.0005]
"""


def run_in_terminal(args: list[str], columns: int, cwd: Path = REPO) -> tuple[int, str]:
    """Run `archbench ARGS` on a pseudo-terminal `columns` wide (a real terminal: isatty, its size from
    the kernel, no COLUMNS variable); returns the exit code and what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "archbench", *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    rc = proc.wait(timeout=600)
    text = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")
    return rc, text


@pytest.fixture(scope="module")
def wide_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained two-run sweep whose full `ls` table is wider than 90 columns."""
    tmp = tmp_path_factory.mktemp("wide")
    sweep = tmp / "sweep.yaml"
    sweep.write_text(textwrap.dedent(WIDE_SWEEP.format(out=tmp / "results")))
    res = cli("run", str(sweep))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return tmp / "results" / "wide_listing"


# ---------------------------------------------------------------------------------------------- ls


@pytest.mark.slow
def test_ls_on_a_90_column_terminal_prints_no_line_wider_than_90(wide_sweep: Path) -> None:
    rc, full = run_in_terminal(["ls", str(wide_sweep), "--wide"], 90)
    assert rc == 0, full
    assert max(len(line) for line in full.splitlines()) > 90  # what it has to fit: more than 90 columns
    rc, text = run_in_terminal(["ls", str(wide_sweep)], 90)
    assert rc == 0, text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 90, text
    rows = [ln for ln in lines if "tiny_cnn_" in ln]
    assert len(rows) == 2, text  # one line per run: never wrapped
    ids = {r["run_id"] for r in json.loads(cli("ls", str(wide_sweep), "--format", "json").stdout)}
    assert all(any(i in ln for ln in rows) for i in ids), text  # run ids whole
    assert "not shown at this width:" in text and "--wide" in text
    # Not a terminal: as wide as its content (logs and pipes keep every column).
    piped = cli("ls", str(wide_sweep), env={"COLUMNS": "90"})
    assert "train.weight_decay" in piped.stdout and "f1_macro" in piped.stdout


def test_fit_columns_shortens_headers_then_drops_the_least_important() -> None:
    from archbench.cli.listing import fit_columns, table_width

    cols = ["run_id", "status", "model.name", "train.optimizer", "train.weight_decay", "verified", "top1",
            "f1_macro", "train_seconds", "gmacs"]  # fmt: skip
    row = ["tiny_cnn_sgd_0.0005-9888e71e95", "completed", "tiny_cnn", "sgd", "0.0005", "yes", "0.1000",
           "0.0207", "0.0", "0.0012"]  # fmt: skip
    cells = [row, row[:3] + ["adam"] + row[4:]]
    keep, heads = fit_columns(cols, cells, 400)
    assert keep == list(range(len(cols))) and heads == cols  # room: nothing changes
    keep, heads = fit_columns(cols, cells, 90)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in zip(keep, heads, strict=True)]
    assert table_width(widths) <= 90
    kept = [cols[i] for i in keep]
    assert kept[:2] == ["run_id", "status"] and "top1" in kept and "train.optimizer" in kept
    assert "gmacs" not in kept and "train.weight_decay" not in kept  # profile first; an axis all rows share
    assert "optimizer" in heads and "top-1" in heads
    keep, _ = fit_columns(cols, cells, 30)
    assert [cols[i] for i in keep] == ["run_id", "status"]  # never fewer


# ---------------------------------------------------------------------------------------------- progress


def test_progress_bars_name_the_run_and_its_axes(tmp_path: Path) -> None:
    from rich.console import Console

    from archbench.cli.progress import RichReporter
    from archbench.sweep.expand import expand_sweep, load_sweep_text

    runs = expand_sweep(load_sweep_text(WIDE_SWEEP.format(out=tmp_path), path=str(tmp_path / "s.yaml")))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    with RichReporter(console) as rep:
        rep.sweep_started(len(runs), len(runs))
        rep.run_started(runs[1], 1, len(runs), epochs=3)
        rep.batch(0, 4, 10, 2.3, 0.1, 50.0)
        rep.progress.refresh()
    text = ANSI.sub("", out.getvalue())
    assert f"run 2/2 {runs[1].run_id} (model.name=tiny_cnn, train.optimizer=adam" in text
    assert f"run 2/2 {runs[1].run_id} epoch 1/3" in text  # the batch bar names its run
    assert "runs of the sweep" in text


# ---------------------------------------------------------------------------------------------- report


def test_stage_tables_round_numbers_and_show_units_but_keep_the_csv(tmp_path: Path) -> None:
    from archbench.report.collect import load_stage_section
    from archbench.report.tables import to_csv
    from archbench.report.tables.base import stage_table
    from archbench.stages.map.summary import SCORE_DISPLAY

    folder = tmp_path / "stages" / "map"
    folder.mkdir(parents=True)
    csv_text = (
        "model,run_id,subset,n_pixels,n_unmapped,overall_accuracy,kappa,f1_macro,map_file\n"
        "tiny_cnn,r1,all_labelled,658,9,0.3373860182370821,-0.0016450195192615053,0.2630127641585119,r1.tif\n"
    )
    (folder / "map_scores.csv").write_text(csv_text)
    index = {
        "title": "Maps",
        "tables": [{"title": "scores", "csv": "map_scores.csv", "columns": SCORE_DISPLAY}],
    }
    (folder / "index.json").write_text(json.dumps(index))
    section = load_stage_section(tmp_path, folder)
    (st,) = section.tables
    t = stage_table("maps", st.title, st.header, st.rows, formats=st.columns)
    shown = dict(zip(t.columns, (c.text for c in t.rows[0]), strict=True))
    assert shown["overall accuracy (%)"] == "33.74" and shown["F1 macro (%)"] == "26.30"
    assert shown["kappa"] == "-0.002" and shown["scored pixels"] == "658"
    assert t.rows[0][5].value == pytest.approx(0.3373860182370821)  # sorting uses the raw number
    assert to_csv(t) == csv_text.replace("\n", "\r\n")  # the CSV is the stage's, value for value
    # Without a column spec: floats to four decimals or significant digits, never 16-digit floats.
    plain = stage_table("x", "x", ["a", "b", "c", "d"], [["0.12345678901", "123.456789", "1234567", "n/a"]])
    assert [c.text for c in plain.rows[0]] == ["0.1235", "123.5", "1,234,567", "n/a"]


def test_a_bad_column_spec_only_loses_its_formatting(tmp_path: Path) -> None:
    from archbench.report.collect import load_stage_section

    folder = tmp_path / "stages" / "x"
    folder.mkdir(parents=True)
    (folder / "t.csv").write_text("a,b\n1.5,2\n")
    spec = {"a": {"scale": "lots"}, "b": {"digits": 99}, "c": "x"}
    (folder / "index.json").write_text(
        json.dumps({"title": "x", "tables": [{"csv": "t.csv", "columns": spec}]})
    )
    section = load_stage_section(tmp_path, folder)
    assert section.problems == [] and section.tables[0].columns == {}


def _outline_with(blocks: list[Any]) -> Any:
    from archbench.report.document import Outline

    return Outline("t", "s", blocks, [], [], {})


def test_verified_note_is_success_not_caution() -> None:
    from archbench.report.analysis import analyse
    from archbench.report.collect import ReportData
    from archbench.report.document import banners
    from archbench.report.html import CSS, render_html
    from archbench.report.textformats import render_markdown

    note = "Every number in this report verified: the 2 completed run(s) it uses match."
    data = ReportData(REPO, [], [], [], [], warnings=["a real warning"], successes=[note])
    blocks = banners(analyse(data))
    (ok,) = [b for b in blocks if b.text == note]
    assert ok.severity == "success"
    md = render_markdown(_outline_with(blocks))
    line = next(ln for ln in md.splitlines() if note in ln)
    assert "CAUTION" not in line and "WARNING" not in line and "VERIFIED" in line
    assert "> **CAUTION:** a real warning" in md
    html = render_html(_outline_with(blocks))
    assert f'<div class="banner success" role="status">{note}</div>' in html
    assert '<div class="banner warning" role="note">a real warning</div>' in html
    success_css = re.search(r"\.banner\.success\{([^}]*)\}", CSS)
    warning_css = re.search(r"\.banner\.warning\{([^}]*)\}", CSS)
    assert success_css and warning_css and success_css.group(1) != warning_css.group(1)
    assert "#fff6d6" not in success_css.group(1)  # not the warning's yellow


def test_seeds_paired_cannot_be_read_as_a_count_of_zero() -> None:
    from archbench.report.tables.comparisons import seeds_paired_text

    assert seeds_paired_text([]) == "none"
    assert seeds_paired_text([0]) == "1 (seed 0)"
    assert seeds_paired_text([0, 1, 2]) == "3 (seeds 0, 1, 2)"


def test_wide_tables_scroll_in_their_box_and_provenance_is_narrow() -> None:
    from archbench.report.html import CSS, to_html
    from archbench.report.tables.base import Cell, Table
    from archbench.report.tables.runs import _code

    wide = Table("w", "w", [f"column {i}" for i in range(40)], [[Cell("x" * 30) for _ in range(40)]])
    html = to_html(wide, "t-w")
    assert html.startswith('<div class="scroll"><table') and html.endswith("</table></div>")
    scroll = re.search(r"\.scroll\{([^}]*)\}", CSS)
    assert scroll and "overflow-x:auto" in scroll.group(1) and "max-width:100%" in scroll.group(1)
    cv = {"archbench": "0.1.0", "git_commit": "3f75313d94aea897978e891da54e0561d6e3bcb9-dirty"}
    assert _code(cv, 12) == "archbench 0.1.0, git 3f75313d94ae-dirty"
    assert _code(cv) == "archbench 0.1.0, git 3f75313d94aea897978e891da54e0561d6e3bcb9-dirty"


# ---------------------------------------------------------------------------------------------- figures


def _max_saturation(png: Path) -> int:
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((a.max(axis=2) - a.min(axis=2)).max())


def test_map_per_class_figure_is_black_and_white(tmp_path: Path) -> None:
    from archbench.stages.map import figures

    series = [(f"model {i}", [0.2 + 0.1 * i, None if i == 2 else 0.5, 0.7]) for i in range(8)]
    figures.per_class(tmp_path / "f1.png", ["water", "forest", "urban"], series, ylabel="F1")
    assert _max_saturation(tmp_path / "f1.png") <= 10  # greys, hatches and markers only: no colour


def test_error_map_classes_differ_in_grey_too() -> None:
    from matplotlib.colors import to_rgb

    from archbench.stages.map.figures import _ERROR_COLORS

    grey = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in map(to_rgb, _ERROR_COLORS)]
    assert min(abs(a - b) for i, a in enumerate(grey) for b in grey[i + 1 :]) > 0.15, grey


def test_profile_figures_tell_models_apart_without_colour(tmp_path: Path) -> None:
    from archbench.stages.profile.stage import _figures

    rows = [
        {
            "run_id": f"r{m}",
            "model": m,
            "run_resolution": 32,
            "resolution": res,
            "latency_ms_p50": 1.0 + k + res,
            "throughput_img_s": 100.0 - k,
            "peak_memory_mb": 50.0 + k,
            "top1": 0.5 + 0.1 * k,
            "gflops": 0.1 * (k + 1),
            "error": None,
        }  # fmt: skip
        for k, m in enumerate(["tiny_cnn", "simple_cnn", "resnet18"])
        for res in (32, 64)
    ]
    made = _figures(rows, tmp_path)
    assert {f["path"] for f in made} == {"cost_vs_resolution.png", "accuracy_vs_gflops.png"}
    for f in made:
        assert _max_saturation(tmp_path / f["path"]) <= 10, f["path"]


@pytest.mark.slow
def test_report_of_a_verified_sweep_says_so_as_success(wide_sweep: Path, tmp_path: Path) -> None:
    res = cli("report", str(wide_sweep), "--out", str(tmp_path / "r"), "--formats", "html,md")
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "r" / "report.md").read_text()
    assert "> **✓ VERIFIED:** Every number in this report verified" in md
    assert "CAUTION:** Every number" not in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert '<div class="banner success" role="status">Every number in this report verified' in html
    assert "seeds paired" in md and "| 1 (seed 0) |" in md  # one seed paired, never a bare "0"
