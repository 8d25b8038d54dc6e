"""Sweep files built to exhaust (RELIABILITY.md cases 27-29): alias bombs, deep nesting, huge files, grids
with a huge product, non-finite and overflowing values are refused at their line, before anything is built
or created (exit 2, one line).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archbench.sweep.expand import expand_sweep, load_sweep_text
from archbench.util.errors import ConfigError
from helpers import cli, one_line_error

pytestmark = pytest.mark.reliability


BASE = "name: s\ndata: {kind: digits}\ntrain: {epochs: 1}\n"


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
        line = one_line_error(cli("run", str(p), cwd=tmp_path))
        assert f"{p}:" in line and expected[name] in line, line
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write(f"name: big\noutput_dir: {out}\n")
        f.write("# " + "x" * (11 * 1024 * 1024) + "\n")
    line = one_line_error(cli("run", str(big), cwd=tmp_path))
    assert str(big) in line and "more than" in line
    assert not out.exists()


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
    line = one_line_error(cli("run", str(p), cwd=tmp_path))
    assert "10,000,000 runs" in line and "max_runs 100,000" in line and f"{p}:" in line
    assert not out.exists()
    # The cap is a setting: raised, a 10^3 grid passes; lowered, it is refused.
    small = BASE + "grid: {seed: [0, 1, 2], train.lr: [0.1, 0.2]}\n"
    assert len(expand_sweep(load_sweep_text(small))) == 6
    with pytest.raises(ConfigError, match="6 runs .*max_runs 5"):
        load_sweep_text(small + "max_runs: 5\n")
    assert len(expand_sweep(load_sweep_text(small, overrides=["max_runs=6"]))) == 6


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
    line = one_line_error(cli("run", str(p), "--set", "train.lr=.inf", cwd=tmp_path))
    assert "train.lr = inf" in line
    p.write_text(f"name: s\noutput_dir: {out}\nseed: 18446744073709551616\n")
    line = one_line_error(cli("run", str(p), cwd=tmp_path))
    assert f"{p}:3: seed = 18446744073709551616" in line
    assert not out.exists()
