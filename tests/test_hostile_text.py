"""Text read from sweep files and records is data, never markup or a formula (RELIABILITY.md cases 22, 33):
rich markup and terminal escapes in names are printed literally, CSV cells cannot start a formula.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import imagefolder_sweep
from helpers import cli, one_line_error
from test_data import make_class_tree

pytestmark = pytest.mark.reliability


def test_markup_and_escapes_in_names_are_printed_literally(tmp_path: Path) -> None:
    classes = ["[bold]cat[/]", "\x1b[2Jdog"]
    make_class_tree(tmp_path / "imgs" / "train", classes, 10)
    make_class_tree(tmp_path / "imgs" / "test", classes, 3)
    name = "a[/]b[link=http://x]c\x1b[31mred"
    res = cli("run", str(imagefolder_sweep(tmp_path, tmp_path / "imgs", name)), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "sweep a[/]b[link=http://x]c\\x1b[31mred: 1 runs: 1 trained" in out
    assert "\x1b" not in out and "Traceback" not in out
    # A hostile model name is refused with the name shown as text.
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'name: s\noutput_dir: {tmp_path / "r2"}\nmodel: {{name: "[red]x\\e[1m"}}\n')
    line = one_line_error(cli("run", str(bad), cwd=tmp_path))
    assert "[red]x" in line and "\x1b" not in line


def test_csv_cells_are_neutralised() -> None:
    import csv
    import io

    from archbench.store.results import rows_to_csv

    text = rows_to_csv([{"a": '=HYPERLINK("http://x")', "b": "+1", "c": "-2", "d": "@x", "e": "ok"}])
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@x", "ok"]
