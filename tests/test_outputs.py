"""Clean outputs: library warnings of a run go to its warnings.log with a count in the record, never to the
terminal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archbench.store.record import read_record
from conftest import run_cli, tiny_sweep


def test_library_warnings_go_to_the_run_log_not_the_terminal(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            im = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).convert("P")
            # Pillow warns when a palette image with byte transparency is converted to RGB.
            im.save(root / cls / f"{i}.png", transparency=bytes([0, 128, 255]))
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    res = run_cli(
        "run", str(sweep), "--set", "data.kind=imagefolder", "--set", f"data.root={root}", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Palette images" not in res.stdout + res.stderr
    (run_dir,) = (tmp_path / "results" / "tiny" / "runs").iterdir()
    log = (run_dir / "warnings.log").read_text().splitlines()
    assert any("UserWarning: Palette images with Transparency" in line for line in log)
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.warnings == len(log) >= 1
