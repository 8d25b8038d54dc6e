"""Clean outputs: library warnings of a run go to its warnings.log with a count in the record, never to the
terminal."""

from __future__ import annotations

import warnings
from pathlib import Path

from archbench.store.record import read_record
from conftest import run_cli, tiny_sweep
from helpers import only_run, random_png_folder


def test_library_warnings_go_to_the_run_log_not_the_terminal(tmp_path: Path) -> None:
    from PIL import Image

    # Palette images with byte transparency: Pillow warns when it converts them to RGB.
    root = random_png_folder(tmp_path / "imgs", palette=True)
    # What the library says is the library's business: learn its words here rather than copy them.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with Image.open(root / "a" / "0.png") as im:
            im.convert("RGB")
    said = {" ".join(str(w.message).split()) for w in seen}
    assert said, "decoding these files no longer warns: the test needs another warning to route"
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    # A real process: an in-process call would leave stray warnings to pytest's recorder, not the terminal.
    res = run_cli(
        "run", str(sweep), "--set", "data.kind=imagefolder", "--set", f"data.root={root}", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [m for m in said if m in res.stdout + res.stderr]
    run_dir = only_run(tmp_path / "results")
    log = (run_dir / "warnings.log").read_text().splitlines()
    assert all(any(m in line for line in log) for m in said), log
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.warnings == len(log) >= 1
