"""Planning refuses what would otherwise fork a thousand processes, hang on a network, write to a tracker
nobody reads, overflow every trial or fail every run (RELIABILITY 35-39, 42's options, a symlinked sweep
folder): one line naming the key, exit 2, in seconds, no traceback, nothing created."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

import pytest

from archbench.sweep.checks import plan_problems
from archbench.sweep.endpoints import ray_address_problems, reach, tracking_uri_problems
from archbench.sweep.expand import expand_sweep, load_sweep_text
from archbench.util.errors import ConfigError
from archbench.util.machine import usable_cores
from conftest import tiny_sweep
from helpers import cli

pytestmark = pytest.mark.reliability


def refused(tmp_path: Path, *args: str, sweep: Path | None = None) -> str:
    """Run the CLI on a one-run digits sweep; it must exit 2 with one error line and create nothing."""
    sweep = sweep or tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]", out=tmp_path / "out")
    res = cli("run", str(sweep), *args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert not (tmp_path / "out").exists()
    return lines[0]


def problems(tmp_path: Path, text: str) -> list[str]:
    """`plan_problems` of a sweep given as YAML text (the base is the tiny digits sweep)."""
    base = f"name: t\noutput_dir: {tmp_path / 'out'}\ntrain: {{epochs: 1, threads: 1, device: cpu}}\n"
    cfg = load_sweep_text(base + textwrap.dedent(text))
    return plan_problems(cfg, expand_sweep(cfg))


# --- 35: processes above the usable cores ----------------------------------------------------------------


def test_more_processes_than_usable_cores_is_refused_unless_oversubscribed(tmp_path: Path) -> None:
    cores = usable_cores()
    line = refused(tmp_path, "--set", "executor.resources.processes=1000")
    assert f"1000 processes for one run, but this machine has {cores} usable core(s)" in line
    assert "oversubscribe: true" in line
    over = f"executor: {{resources: {{processes: {cores + 1}}}}}\n"
    assert any("usable core" in p for p in problems(tmp_path, over))
    assert problems(tmp_path, f"executor: {{resources: {{processes: {cores}}}}}\n") == []
    allowed = f"executor: {{resources: {{processes: {cores + 1}, oversubscribe: true}}}}\n"
    assert problems(tmp_path, allowed) == []
    # A Ray cluster's nodes are not this machine: its runs are not held to this machine's cores.
    ray = f"executor: {{kind: ray, address: '127.0.0.1:1', resources: {{processes: {cores + 1}}}}}\n"
    assert not any("usable core" in p for p in problems(tmp_path, ray))


# --- 36: Ray addresses ----------------------------------------------------------------------------------


def test_malformed_and_unreachable_ray_addresses_exit_2_before_the_sweep_folder(tmp_path: Path) -> None:
    line = refused(tmp_path, "--executor", "ray", "--address", "garbage::::")
    assert "executor.address 'garbage::::'" in line and "HOST:PORT" in line
    line = refused(
        tmp_path, "--executor", "ray", "--address", "127.0.0.1:1", "--set", "executor.connect_timeout_s=5"
    )
    assert "executor.address '127.0.0.1:1'" in line and "no Ray cluster reachable" in line


def test_a_silent_address_is_given_up_after_the_connect_timeout() -> None:
    """A listening socket whose accept queue is full never answers a new connection: the check gives up
    after the configured timeout instead of waiting as long as Ray would."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        try:
            assert reach("127.0.0.1", port, 1.0) == "no answer within 1s"
            (line,) = ray_address_problems(f"127.0.0.1:{port}", 1.0)
            assert f"127.0.0.1:{port}" in line and "executor.connect_timeout_s=1" in line
        finally:
            for c in fillers:
                c.close()
    assert ray_address_problems(None, 1.0) == []  # a local Ray, started for the sweep
    for bad in ("host:0", "host:70000", "a b:1", "[zz]:1", "ray://", "http://h:1"):
        (line,) = ray_address_problems(bad, 1.0)
        assert "expected 'auto', HOST:PORT" in line


# --- 37: tracking URIs ----------------------------------------------------------------------------------


def test_tracking_uris_no_mlflow_store_accepts_are_refused_and_nothing_is_created(tmp_path: Path) -> None:
    line = refused(tmp_path, "--set", "tracking.mlflow.uri=foo://bar")
    assert "tracking.mlflow.uri 'foo://bar'" in line and "scheme 'foo'" in line
    missing = tmp_path / "missing" / "dir"
    line = refused(tmp_path, "--mlflow-uri", f"sqlite:///{missing / 'x.db'}")
    assert f"folder {missing} does not exist" in line
    assert not (tmp_path / "missing").exists()
    for bad in ("not a uri", "http://", "mysql://", "sqlite:///" + str(tmp_path), "x\x1b://y"):
        (p,) = tracking_uri_problems(bad)
        assert "tracking.mlflow.uri" in p and "\x1b" not in p
    for good in (
        f"sqlite:///{tmp_path / 'm.db'}",
        "sqlite:///relative.db",
        "http://127.0.0.1:5000",
        "https://mlflow.example.org",
        "postgresql+psycopg2://u:p@db.example.org:5432/mlflow",
        "databricks",
        "databricks://profile",
    ):
        assert tracking_uri_problems(good) == [], good
    assert list(tmp_path.glob("*.db")) == []


def test_sync_with_an_unusable_uri_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "s" / "runs").mkdir(parents=True)
    res = cli("sync", str(tmp_path / "s"), "--mlflow-uri", "foo://bar", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: --mlflow-uri 'foo://bar': scheme 'foo' is not one MLflow accepts")


# --- 38: tuning search spaces ---------------------------------------------------------------------------


TUNE = """
grid: {{model.name: [tiny_cnn]}}
tune:
  trials: 2
  space:
    train.lr: {{type: loguniform, low: {low}, high: {high}}}
"""


def test_tuning_bounds_follow_the_numeric_rules_of_grid_values(tmp_path: Path) -> None:
    sweep = tmp_path / "tune.yaml"
    body = TUNE.format(low="1.0e-4", high="1.0e308")  # YAML 1.1 reads 1.0e308 as a string: coerced later
    sweep.write_text(f"name: t\noutput_dir: {tmp_path / 'out'}\ntrain: {{epochs: 1, threads: 1}}\n{body}")
    line = refused(tmp_path, sweep=sweep)
    assert "tune.space.train.lr.high = 1e+308 overflows float32" in line and "tune.yaml:" in line
    for low, high, why in (
        ("1.0e-4", ".inf", "not a finite number"),
        ("0.1", "0.01", "low must be below high"),
        ("0", "0.1", "loguniform needs low > 0"),
        ("1.0e-4", "-1.0e+39", "overflows float32"),
    ):
        with pytest.raises(ConfigError, match=why):
            problems(tmp_path, TUNE.format(low=low, high=high))


# --- 39: path keys pointing at the wrong kind of thing ----------------------------------------------------


def test_path_keys_of_the_wrong_kind_name_the_key_and_create_nothing(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    a_folder = tmp_path / "a_folder"
    a_folder.mkdir()
    line = refused(tmp_path, "--set", f"data.cache_dir={a_file}")
    assert line == f"error: data.cache_dir: {a_file} is a file; expected a folder (the prepared-data cache)"
    cases = {
        f"data: {{cache_dir: {a_file / 'sub'}}}": "data.cache_dir: " + str(a_file) + " is a file, so",
        f"model: {{pretrained: {a_folder}}}": f"model.pretrained: {a_folder} is a folder; expected a file",
        f"data: {{kind: imagefolder, root: {a_file}}}": f"data.root: {a_file} is a file; expected a folder",
        f"data: {{kind: raster_patches, options: {{scene: {a_folder}}}}}": "data.options.scene: ",
        f"map: {{scene: {a_folder}}}": f"map.scene: {a_folder} is a folder; expected a file",
        f"map: {{root: {a_file}}}": f"map.root: {a_file} is a file; expected a folder",
    }
    for text, want in cases.items():
        found = problems(tmp_path, text + "\n")
        assert len(found) == 1 and found[0].startswith(want), (text, found)
    found = problems(tmp_path, TUNE.format(low="1e-4", high="0.1") + f"  storage: {a_folder}\n")
    assert found == [f"tune.storage: {a_folder} is a folder; expected a file (the Optuna SQLite database)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder", "sweep.yaml"]


# --- 42 (options) and a symlinked sweep folder ----------------------------------------------------------


def test_dataset_options_the_kind_does_not_know_are_refused_listing_the_known_ones(tmp_path: Path) -> None:
    line = refused(tmp_path, "--set", "data.options.x=1")
    assert line == "error: data.options: unknown option(s) x for data.kind=digits (known: none)"
    found = problems(tmp_path, f"data: {{kind: imagefolder, root: {tmp_path}, options: {{size: 8}}}}\n")
    assert found == [
        "data.options: unknown option(s) size for data.kind=imagefolder (known: image_size, threads)"
    ]
    found = problems(tmp_path, f"data: {{kind: cifar100, root: {tmp_path}, options: {{label: coarse}}}}\n")
    assert found == ["data.options: unknown option(s) label for data.kind=cifar100 (known: label_type)"]


def test_a_sweep_folder_that_is_a_symlink_out_of_output_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "tiny")
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]", out=tmp_path / "out")
    res = cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "the sweep folder" in line and "is a symlink to" in line and str(elsewhere) in line
    assert list(elsewhere.iterdir()) == [] and "internal error" not in line


def test_a_sqlite_store_inside_the_output_folder_that_the_run_creates_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "results"  # not there yet: the run creates it before tracking starts
    inside = f"sqlite:///{out / 'mlflow.db'}"
    assert tracking_uri_problems(inside, output_dir=out) == []
    (p,) = tracking_uri_problems(f"sqlite:///{tmp_path / 'elsewhere' / 'm.db'}", output_dir=out)
    assert "does not exist" in p
    assert not out.exists()
