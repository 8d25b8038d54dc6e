"""Reliability catalogue cases 25-34 (../shared/RELIABILITY.md): limits, clear errors, confined writes,
faults and tamper evidence. All carry the `reliability` marker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from archbench.errors import ConfigError
from archbench.sweep import expand_sweep, load_sweep_text
from conftest import run_cli, tiny_sweep

pytestmark = pytest.mark.reliability

BASE = "name: s\ndata: {kind: digits}\ntrain: {epochs: 1}\n"


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return lines[0]


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*"))


# --- 27: YAML built to exhaust --------------------------------------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    text = "name: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


def test_nested_alias_bomb_is_refused_at_its_line(tmp_path: Path) -> None:
    text = _alias_bomb()
    assert len(text) < 1024  # 1 KB that would expand to 10^9 values
    with pytest.raises(ConfigError, match=r"bomb\.yaml:7:\d+: YAML aliases expand to more than"):
        load_sweep_text(text, path="bomb.yaml")
    # A modest, honest use of aliases still works.
    cfg = load_sweep_text("name: s\nseed: &s 3\ndata: {kind: digits, split_seed: *s}\n")
    assert cfg.data.split_seed == 3


def test_alias_bomb_deep_nesting_and_huge_file_exit_2_and_create_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = {
        "bomb.yaml": _alias_bomb().replace("name: bomb", f"name: bomb\noutput_dir: {out}"),
        "deep.yaml": f"name: deep\noutput_dir: {out}\nx: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "recursive.yaml": f"name: r\noutput_dir: {out}\nx: &a [*a]\n",
    }
    expected = {
        "bomb.yaml": "aliases expand",
        "deep.yaml": "nested deeper than",
        "recursive.yaml": "recursive alias",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        line = _one_line_error(run_cli("run", str(p), cwd=tmp_path, timeout=120))
        assert f"{p}:" in line and expected[name] in line, line
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write(f"name: big\noutput_dir: {out}\n")
        f.write("# " + "x" * (11 * 1024 * 1024) + "\n")
    line = _one_line_error(run_cli("run", str(big), cwd=tmp_path, timeout=120))
    assert str(big) in line and "more than" in line
    assert not out.exists()


# --- 28: a grid with a huge product ---------------------------------------------------------------------


def test_huge_grid_is_refused_before_the_product_is_built(tmp_path: Path) -> None:
    axes = {
        "seed": list(range(10)),
        "data.split_seed": list(range(10)),
        "train.epochs": list(range(1, 11)),
        "train.batch_size": list(range(1, 11)),
        "train.lr": [0.01 * i for i in range(1, 11)],
        "model.dropout": [0.05 * i for i in range(10)],
        "train.momentum": [0.05 * i for i in range(10)],
    }
    out = tmp_path / "out"
    p = tmp_path / "grid.yaml"
    p.write_text(
        f"name: g\noutput_dir: {out}\n" + "grid:\n" + "".join(f"  {k}: {v}\n" for k, v in axes.items())
    )
    line = _one_line_error(run_cli("run", str(p), cwd=tmp_path, timeout=120))
    assert "10,000,000 runs" in line and "max_runs 100,000" in line and f"{p}:" in line
    assert not out.exists()
    # The cap is a setting: raised, a 10^3 grid passes; lowered, it is refused.
    small = BASE + "grid: {seed: [0, 1, 2], train.lr: [0.1, 0.2]}\n"
    assert len(expand_sweep(load_sweep_text(small))) == 6
    with pytest.raises(ConfigError, match="6 runs .*max_runs 5"):
        load_sweep_text(small + "max_runs: 5\n")
    assert len(expand_sweep(load_sweep_text(small, overrides=["max_runs=6"]))) == 6


# --- 29: non-finite and overflowing values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (BASE, ["train.lr=.inf"], "--set 'train.lr=.inf': train.lr = inf is not a finite number"),
        (BASE, ["train.lr=.nan"], "train.lr = nan is not a finite number"),
        (BASE, ["grid.train.lr=[0.1, .inf]"], "train.lr[1] = inf is not a finite number"),
        (BASE.replace("epochs: 1", "epochs: 1, lr: 1e308"), [], "s.yaml:3: train.lr = 1e+308 overflows"),
        (BASE.replace("epochs: 1", "epochs: 1, lr: -.inf"), [], "s.yaml:3: train.lr = -inf"),
        (BASE + "seed: 18446744073709551616\n", [], "s.yaml:4: seed = 18446744073709551616 does not fit"),
        (BASE + "seed: 9223372036854775808\n", [], "seed = 9223372036854775808 does not fit"),
        (BASE + "grid: {seed: [0, 18446744073709551616]}\n", [], "s.yaml:4: grid.seed[1] ="),
        (BASE + "grid: {train.lr: ['1e308']}\n", [], "grid.train.lr[0] = 1e+308 overflows"),
        (BASE.replace("{kind: digits}", "{kind: digits, options: {x: .nan}}"), [], "data.options.x = nan"),
    ],
)
def test_non_finite_and_overflowing_values_are_config_errors(
    text: str, overrides: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep_text(text, overrides=overrides, path="s.yaml")
    assert expected in str(info.value)


def test_inf_lr_and_huge_seed_exit_2_from_the_cli_and_create_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\noutput_dir: {out}\n")
    line = _one_line_error(run_cli("run", str(p), "--set", "train.lr=.inf", cwd=tmp_path))
    assert "train.lr = inf" in line
    p.write_text(f"name: s\noutput_dir: {out}\nseed: 18446744073709551616\n")
    line = _one_line_error(run_cli("run", str(p), cwd=tmp_path))
    assert f"{p}:3: seed = 18446744073709551616" in line
    assert not out.exists()


# --- 31: unusable results folder ------------------------------------------------------------------------


def test_output_dir_that_is_a_file_is_one_line_exit_2_nothing_changed(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    before = _files_under(tmp_path)
    line = _one_line_error(run_cli("run", str(sweep), cwd=tmp_path))
    assert str(blocker) in line and "not a folder" in line
    assert _files_under(tmp_path) == before and blocker.read_text() == "not a folder"


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
    )
    return res.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="needs `unshare -m` and mount (root or user namespaces) for a real read-only fs"
)


@needs_mount
def test_read_only_results_folder_is_one_line_exit_2_nothing_changed(tmp_path: Path) -> None:
    import shlex
    import sys

    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("untouched")
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    q = shlex.quote
    script = (
        f"mount --bind {q(str(results))} {q(str(results))} && "
        f"mount -o remount,ro,bind {q(str(results))} && "
        f"exec {q(sys.executable)} -m archbench run {q(str(sweep))}"
    )
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    line = _one_line_error(res)
    assert "EROFS" in line and str(results) in line
    assert [p.name for p in results.iterdir()] == ["keep.txt"]


# --- 33: terminal injection -----------------------------------------------------------------------------


def test_markup_and_escapes_in_names_are_printed_literally(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = ["[bold]cat[/]", "\x1b[2Jdog"]
    for split, n in (("train", 10), ("test", 3)):
        for c, cls in enumerate(classes):
            d = tmp_path / "imgs" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 80, (8, 8, 3), dtype=np.uint8) + 60 * c
                Image.fromarray(arr.astype(np.uint8)).save(d / f"{i}.png")
    name = "a[/]b[link=http://x]c\x1b[31mred"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"name: {json.dumps(name)}\noutput_dir: {tmp_path / 'results'}\n"
        f"data: {{kind: imagefolder, root: {tmp_path / 'imgs'}}}\ntrain: {{epochs: 1, threads: 1}}\n"
    )
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "sweep a[/]b[link=http://x]c\\x1b[31mred: 1 runs: 1 trained" in out
    assert "\x1b" not in out and "Traceback" not in out
    # A hostile model name is refused with the name shown as text.
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'name: s\noutput_dir: {tmp_path / "r2"}\nmodel: {{name: "[red]x\\e[1m"}}\n')
    line = _one_line_error(run_cli("run", str(bad), cwd=tmp_path))
    assert "[red]x" in line and "\x1b" not in line


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ntrain: {epochs: x}\n")
    line = _one_line_error(run_cli("run", str(p), cwd=tmp_path))
    assert f"{p}:2: train.epochs" in line
    missing = tmp_path / "nope.yaml"
    line = _one_line_error(run_cli("run", str(missing), cwd=tmp_path))
    assert str(missing) in line
    res = run_cli("--debug", "ls", str(tmp_path / "empty"), cwd=tmp_path)
    assert res.returncode == 2
