"""Sweep file → run specs: expansion, ids, overrides, and every kind of invalid input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from archbench.sweep.expand import expand_sweep, load_sweep, load_sweep_text, spec_hash, validate_names
from archbench.util.errors import ConfigError, UnknownModelError
from conftest import REPO
from helpers import cli, one_line_error

BASE = """
name: s
data: {kind: digits}
train: {epochs: 1}
"""


def test_grid_is_cartesian_product_with_exclude() -> None:
    cfg = load_sweep_text(
        BASE
        + textwrap.dedent("""
        grid:
          model.name: [resnet18, resnet34, resnet50]
          model.pool: [avg, max]
          train.optimizer: [sgd, adam]
        exclude:
          - {model.name: resnet50, model.pool: max}
        """)
    )
    runs = expand_sweep(cfg)
    assert len(runs) == 3 * 2 * 2 - 2
    assert not any(r.spec.model.name == "resnet50" and r.spec.model.pool == "max" for r in runs)
    assert len({r.run_id for r in runs}) == len(runs)
    r0 = runs[0]
    assert r0.spec.train.epochs == 1 and r0.spec.data.kind == "digits"
    assert r0.run_id.startswith("resnet18_avg_sgd-")


def test_run_id_is_stable_and_depends_on_resolved_spec() -> None:
    a = expand_sweep(load_sweep_text(BASE + "grid: {seed: [0, 1]}"))
    b = expand_sweep(load_sweep_text(BASE + "grid: {seed: [0, 1]}"))
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert a[0].run_id != a[1].run_id
    # Writing a default explicitly resolves to the same spec, hence the same id.
    c = expand_sweep(
        load_sweep_text(BASE.replace("{epochs: 1}", "{epochs: 1, optimizer: sgd}") + "grid: {seed: [0, 1]}")
    )
    assert [r.run_id for r in a] == [r.run_id for r in c]
    assert spec_hash(a[0].spec) == a[0].spec_hash


def test_overrides_replace_values_and_grid_axes() -> None:
    cfg = load_sweep_text(
        BASE + "grid: {model.name: [resnet18, resnet34], seed: [0, 1]}",
        overrides=["train.epochs=3", "model.name=tiny_cnn", "data.root=/some/path"],
    )
    runs = expand_sweep(cfg)
    assert len(runs) == 2
    assert all(r.spec.model.name == "tiny_cnn" and r.spec.train.epochs == 3 for r in runs)
    assert runs[0].spec.data.root == "/some/path"
    cfg = load_sweep_text(BASE, overrides=["grid.train.lr=[0.1, 0.01]"])
    assert [r.spec.train.lr for r in expand_sweep(cfg)] == [0.1, 0.01]


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (BASE + "grid: {model.nmae: [a]}", [], "grid key 'model.nmae'"),
        (BASE.replace("epochs: 1", "epochs: one"), [], "train.epochs"),
        (BASE.replace("epochs: 1", "epochs: 1, optimiser: sgd"), [], "train.optimiser: unknown key"),
        (BASE + "grid: {train.optimizer: [sgd, rmsprop]}", [], "grid.train.optimizer[1]"),
        (BASE + "grid: {seed: []}", [], "empty list"),
        (BASE + "exclude: [{model.name: x}]", [], "exclude[0]"),
        (BASE, ["train.epochz=1"], "unknown key 'train.epochz'"),
        (BASE, ["novalue"], "expected key=value"),
        ("name: s\nname: t\n", [], "duplicate key 'name'"),
        ("name: s\ntrain:\n\tepochs: 1\n", [], "tab"),
        ("name: !!python/object/apply:os.system ['touch /tmp/x']\n", [], "python/object"),
        ("- a\n- b\n", [], "expected a mapping"),
        ("data: {kind: digits}\n", [], "name: Field required"),
    ],
)
@pytest.mark.reliability
def test_invalid_sweeps_are_rejected_with_location(text: str, overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep_text(text, overrides=overrides, path="sweep.yaml")
    assert expected in str(info.value)


@pytest.mark.reliability
def test_error_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: s\ndata:\n  kind: digits\ntrain:\n  epochs: 1\n  lr: -1\n")
    with pytest.raises(ConfigError) as info:
        load_sweep(p)
    assert f"{p}:6" in str(info.value) and "train.lr" in str(info.value)


@pytest.mark.reliability
def test_unsafe_yaml_tag_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    res = cli("run", str(p), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert not marker.exists()


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["resnet_9000", "os.system", "../../x"])
def test_unknown_model_fails_whole_sweep_with_suggestions(name: str) -> None:
    runs = expand_sweep(load_sweep_text(BASE + f"grid: {{model.name: [tiny_cnn, '{name}']}}"))
    with pytest.raises(UnknownModelError) as info:
        validate_names(runs)
    assert name in str(info.value)
    if name == "resnet_9000":
        assert "resnet" in str(info.value).split(name, 1)[1]


@pytest.mark.reliability
def test_cli_config_errors_exit_2_and_create_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: s\noutput_dir: {out}\ntrain:\n  epochs: 1\n  batchsize: 4\n")
    res = cli("run", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    assert "train.batchsize" in res.stderr and f"{bad}:5" in res.stderr
    assert not out.exists()
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(f"name: s\noutput_dir: {out}\nmodel: {{name: resnet_9000}}\n")
    res = cli("run", str(unknown), cwd=tmp_path)
    assert res.returncode == 2 and "resnet_9000" in res.stderr and "resnet50" in res.stderr
    assert not out.exists()


def test_dry_run_lists_the_classic_12_run_grid() -> None:
    # A dry run reads no data, so it works whether or not ../shared is present.
    res = cli(
        "run",
        "configs/cifar10_resnet_grid.yaml",
        "--set",
        f"data.root={REPO.parent / 'shared/data/cifar10_jpg'}",
        "--set",
        "data.kind=imagefolder",
        "--set",
        "data.limit_per_class=50",
        "--set",
        "train.epochs=1",
        "--dry-run",
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    assert "12 runs" in res.stdout


def test_model_option_conflicts_fail_the_sweep_before_any_run() -> None:
    runs = expand_sweep(load_sweep_text(BASE + "model: {stem: cifar}\ngrid: {model.name: [resnet18, vgg11]}"))
    with pytest.raises(ConfigError, match="stem: cifar"):
        validate_names(runs)


@pytest.mark.reliability
def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ntrain: {epochs: x}\n")
    line = one_line_error(cli("run", str(p), cwd=tmp_path))
    assert f"{p}:2: train.epochs" in line
    missing = tmp_path / "nope.yaml"
    line = one_line_error(cli("run", str(missing), cwd=tmp_path))
    assert str(missing) in line
    res = cli("--debug", "ls", str(tmp_path / "empty"), cwd=tmp_path)
    assert res.returncode == 2
