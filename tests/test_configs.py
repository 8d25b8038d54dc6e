"""Every shipped config gets a smoke run: the real file, few steps, tiny data (torchgeo's habit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import REPO, SHARED_DATA
from helpers import cli

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_every_config_is_valid_and_expands(tmp_path: Path) -> None:
    assert CONFIGS, "configs/ is empty"
    # Planning checks the files each kind needs (not their content): an empty CIFAR-10 layout passes.
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (batches / name).write_bytes(b"")
    for cfg in CONFIGS:
        text = cfg.read_text()
        if "../shared" in text and not SHARED_DATA.is_dir():
            continue  # its dry run reads the scene's headers (case 14 preflight); CI has ../shared
        extra = ["--set", f"data.root={tmp_path}"] if "root: null" in text else []
        res = cli("run", str(cfg), "--dry-run", *extra, cwd=REPO)
        assert res.returncode == 0, f"{cfg.name}: {res.stderr}"


def _smoke(cfg: Path, tmp_path: Path, *overrides: str) -> list:
    args = ["run", str(cfg), "--set", f"output_dir={tmp_path}", "--set", "train.epochs=1", *overrides]
    res = cli(*args, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    records = [read_record(d) for d in tmp_path.glob("*/runs/*")]
    assert records and all(r is not None and r.status == "completed" for r in records)
    return records


@pytest.mark.slow  # trains four runs, ResNet-18 among them
def test_quickstart_smoke(tmp_path: Path) -> None:
    records = _smoke(REPO / "configs" / "quickstart.yaml", tmp_path, "--set", "data.limit_per_class=30")
    assert len(records) == 4
    assert {r.spec.model.name for r in records} == {"tiny_cnn", "resnet18"}


@pytest.mark.slow  # trains four runs, ResNet-18 among them
def test_cifar10_resnet_grid_smoke_on_shared_jpegs(tmp_path: Path) -> None:
    root = SHARED_DATA / "cifar10_jpg"
    if not root.is_dir():
        pytest.skip(f"{root} is absent; CI provides ../shared")
    records = _smoke(
        REPO / "configs" / "cifar10_resnet_grid.yaml",
        tmp_path,
        "--set",
        "data.kind=imagefolder",
        "--set",
        f"data.root={root}",
        "--set",
        "data.limit_per_class=2",
        "--set",
        "data.test_limit_per_class=2",
        "--set",
        "grid.model.name=[resnet18]",
    )
    assert len(records) == 4  # resnet18 x avg/max x sgd/adam (resnet34/50 are covered by test_models)
    assert all(r.class_names[0] == "airplane" and r.metrics.n_test == 20 for r in records)


def test_cifar10_r18_fast_smoke_on_shared_jpegs(tmp_path: Path) -> None:
    root = SHARED_DATA / "cifar10_jpg"
    if not root.is_dir():
        pytest.skip(f"{root} is absent; CI provides ../shared")
    records = _smoke(
        REPO / "configs" / "cifar10_r18_fast.yaml",
        tmp_path,
        "--set",
        f"data.root={root}",
        "--set",
        "data.limit_per_class=2",
        "--set",
        "data.test_limit_per_class=2",
        "--set",
        "train.threads=1",
    )
    assert len(records) == 1 and records[0].spec.train.schedule == "onecycle"


def test_tune_digits_smoke(tmp_path: Path) -> None:
    records = _smoke(
        REPO / "configs" / "tune_digits.yaml",
        tmp_path,
        "--set",
        "tune.trials=2",
        "--set",
        "tune.seeds=[0]",
        "--set",
        "data.limit_per_class=30",
    )
    roles = sorted((r.tune or {}).get("role") for r in records)
    assert roles == ["final", "final", "trial", "trial", "trial", "trial"]
    assert all((r.metrics is None) == (r.tune["role"] == "trial") for r in records)


@pytest.mark.slow
def test_gpu_suite_cpu_smoke_prints_one_summary() -> None:
    """benchmarks/gpu_suite.sh --cpu-smoke: the GPU suite's whole pipeline, CPU-sized (digits, tiny_cnn)."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    res = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--cpu-smoke"],
        capture_output=True, text=True, env=env, timeout=1200, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["device"]["type"] == "cpu" and out["mfu"] is None  # no peak for a CPU: never a made-up MFU
    assert 0.0 <= out["test_top1"] <= 1.0 and out["train_seconds"] > 0  # 1 epoch: a smoke, not a score
    assert out["achieved_tflops"] > 0 and out["forward_gflops_per_image"] > 0
    names = [b["benchmark"] for b in out["bench"]]
    assert names == ["step_throughput", "data_path", "syncs_per_step"]


def test_unquoted_on_off_in_yaml_mean_the_words_and_hash_the_same() -> None:
    """YAML 1.1 reads `amp: on` as true; the sweep takes it as "on", with the id of the quoted spelling."""
    from archbench.sweep.expand import expand_sweep, load_sweep_text

    def ids(train: str) -> list[str]:
        text = "name: t\noutput_dir: /tmp/x\ndata: {kind: digits}\nmodel: {name: tiny_cnn}\n"
        text += f"train: {train}\n"
        return [spec.run_id for spec in expand_sweep(load_sweep_text(text))]

    assert ids("{amp: on, channels_last: off}") == ids('{amp: "on", channels_last: "off"}')
    assert ids("{amp: on}") != ids("{amp: off}")
    with pytest.raises(Exception, match="train.amp"):
        load_sweep_text("name: t\ndata: {kind: digits}\ntrain: {amp: 3}\n")
