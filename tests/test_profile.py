"""Profiling: counts against torchvision's published table, the record block from a real sweep, the
resolution axis, CPU subprocess memory, and the `archbench profile` command.

Real models and real subprocesses, no mocks. Only FLOP counting (one image) touches the big networks;
timings run on tiny ones.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from archbench.config import ModelSpec
from archbench.store.record import read_record
from helpers import cli

# torchvision's weight metadata (`_ops`, `num_params`) for these, at the resolution the table uses.
PUBLISHED = [
    ("resnet18", 224),
    ("resnet34", 224),
    ("resnet50", 224),
    ("resnet101", 224),
    ("resnet152", 224),
    ("vgg11", 224),
    ("mobilenet_v3_small", 224),
    ("efficientnet_b3", 300),
    ("vit_b_16", 224),
]


def _published_meta(name: str) -> dict[str, float]:
    import torchvision

    return dict(torchvision.models.get_model_weights(name).DEFAULT.meta)  # offline: package data


def test_torchvision_ops_are_multiply_adds() -> None:
    """`_ops` (labelled GFLOPS in torchvision's docs) are GMACs: the papers' 4.09 for ResNet-50, 17.56 for
    ViT-B/16. Our `gmacs` is compared with them, `gflops` is twice that."""
    assert _published_meta("resnet50")["_ops"] == pytest.approx(4.089, abs=1e-3)
    assert _published_meta("vit_b_16")["_ops"] == pytest.approx(17.564, abs=1e-3)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Compute in this process on one thread: two threads on a shared 2-core machine spin-wait for each
    other and a one-second count takes fifteen."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("name", "resolution"), PUBLISHED, ids=[n for n, _ in PUBLISHED])
def test_params_and_gmacs_match_torchvision(name: str, resolution: int) -> None:
    from archbench.stages.profile.counting import count_target
    from archbench.stages.profile.target import Target

    meta = _published_meta(name)
    counts = count_target(Target(ModelSpec(name=name), 3, 1000, (resolution, resolution)))
    assert counts["counted_on"] == "meta"  # shapes only: seconds for all nine, not minutes
    assert counts["params_total"] == counts["params_trainable"] == meta["num_params"]
    assert counts["flops"] / 2e9 == pytest.approx(meta["_ops"], rel=0.01)


def test_vit_attention_is_counted_on_a_real_cpu_run(one_thread: None) -> None:
    """On CPU, MHA's fused fast path and SDPA's CPU kernel would hide ViT-B/16's attention matmuls (16.85
    instead of 17.56 GMACs); the real network on CPU counts the same as the meta build."""
    import torch

    from archbench.stages.profile.counting import count_flops, count_target
    from archbench.stages.profile.target import Target, build_model, example_batch

    target = Target(ModelSpec(name="vit_b_16"), 3, 1000, (224, 224))
    model = build_model(target, torch.device("cpu"))
    flops, by_op = count_flops(model, example_batch(target, 1, torch.device("cpu"))[0])
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in by_op, by_op
    assert flops == count_target(target)["flops"]
    assert flops / 2e9 == pytest.approx(_published_meta("vit_b_16")["_ops"], rel=0.01)
    assert torch.backends.mha.get_fastpath_enabled()  # the switch is restored after counting


def test_training_step_flops_include_attention_backward() -> None:
    """Forward+backward of attention on CPU is counted (the CPU kernel has no formula in torch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from archbench.stages.profile.counting import _custom_mapping

    q = torch.randn(2, 4, 10, 8, requires_grad=True)
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    forward = 2 * (2 * 4) * 10 * 10 * (8 + 8)
    assert counter.get_total_flops() == forward + forward * 5 // 2


# --- a real sweep with `profile:` on --------------------------------------------------------------------

SWEEP = """
name: prof
output_dir: {out}
data: {{kind: digits}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, threads: 1}}
grid:
  data.resolution: [16, 32]
{profile}
"""
PROFILE = "profile: {batch_sizes: [1, 16], iters: 3, warmup: 1, budget_s: 0}"  # exactly 3 calls


@pytest.fixture(scope="module")
def profiled_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 2-run digits sweep (resolution 16 and 32) run once with `profile:`, then once more."""
    tmp = tmp_path_factory.mktemp("profile_sweep")
    yaml = tmp / "sweep.yaml"
    yaml.write_text(textwrap.dedent(SWEEP.format(out=tmp / "results", profile=PROFILE)))
    first = cli("run", str(yaml), cwd=tmp)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = sorted((tmp / "results" / "prof" / "runs").iterdir())
    after_first = {r.name: (read_record(r) or None) for r in runs}
    second = cli("run", str(yaml), cwd=tmp)
    assert second.returncode == 0, second.stdout + second.stderr
    return {"tmp": tmp, "runs": runs, "after_first": after_first, "second": second}


def test_sweep_records_get_a_profile_block(profiled_sweep: dict[str, object]) -> None:
    """The runner profiles each run right after evaluating it."""
    after_first = profiled_sweep["after_first"]
    assert isinstance(after_first, dict)
    for run_id, rec in after_first.items():
        assert rec is not None and rec.status == "completed"
        assert "profile" in rec.stages, f"{run_id}: no profile block after the first `archbench run`"


def test_profile_block_contents(profiled_sweep: dict[str, object]) -> None:
    runs = profiled_sweep["runs"]
    assert isinstance(runs, list) and len(runs) == 2
    for run_dir in runs:
        rec = read_record(run_dir)
        assert rec is not None and rec.params is not None
        block = rec.stages["profile"]
        assert "error" not in block, block
        assert block["resolution"] == rec.spec.data.resolution
        # Same builder as training: the counts agree with what the run recorded.
        assert block["params_total"] == rec.params["total"]
        assert block["params_trainable"] == rec.params["trainable"]
        assert block["flops"] == 2 * block["macs"] > 0
        assert block["gmacs"] == pytest.approx(block["macs"] / 1e9, abs=1e-6)
        assert 0 < block["latency_ms_p50"] <= block["latency_ms_p90"]
        assert block["throughput_img_s"] > 0 and block["train_throughput_img_s"] > 0
        assert block["train_step_ms"] > 0 and block["peak_memory_mb"] > 0
        entry = block["per_resolution"][0]
        assert [e["batch"] for e in entry["inference"]] == [1, 16]
        assert all(e["iters"] == 3 for e in entry["inference"]) and entry["train_iters"] == 3
        assert entry["memory"]["train_step_mb"] >= entry["memory"]["baseline_mb"] > 0
        training = block["training"]
        assert training["wall_seconds"] == pytest.approx(rec.train_seconds)
        assert training["seconds_per_epoch"] == pytest.approx(rec.history[0].seconds, rel=1e-3)
        assert training["time_to_best_s"] == pytest.approx(rec.history[0].seconds, rel=1e-3)
        assert training["images_per_s"] == pytest.approx(rec.history[0].images_per_s, rel=1e-3)
        assert block["device"]["type"] == "cpu" and block["threads"] == 1
        assert block["amp"] == "off" and block["channels_last"] is False
        assert block["libraries"]["torch"] == version("torch")
        assert "aten.convolution" in block["counted_ops"]


def test_rerun_does_not_retrain_or_reprofile(profiled_sweep: dict[str, object]) -> None:
    second = profiled_sweep["second"]
    assert "2 skipped" in second.stdout  # type: ignore[attr-defined]
    after_first = profiled_sweep["after_first"]
    assert isinstance(after_first, dict)
    for run_dir in profiled_sweep["runs"]:  # type: ignore[attr-defined]
        rec, before = read_record(run_dir), after_first[run_dir.name]
        assert rec is not None and before is not None
        assert rec.history == before.history and rec.checkpoint_sha256 == before.checkpoint_sha256
        if "profile" in before.stages:
            assert rec.stages["profile"] == before.stages["profile"]


def test_flops_grow_with_resolution(profiled_sweep: dict[str, object]) -> None:
    blocks = {}
    for run_dir in profiled_sweep["runs"]:  # type: ignore[attr-defined]
        rec = read_record(run_dir)
        assert rec is not None
        blocks[rec.spec.data.resolution] = rec.stages["profile"]
    assert set(blocks) == {16, 32}
    assert 0 < blocks[16]["flops"] < blocks[32]["flops"]
    assert blocks[16]["params_total"] == blocks[32]["params_total"]  # global pooling: size-independent


def test_ls_shows_profile_columns_and_sweep_table_is_written(profiled_sweep: dict[str, object]) -> None:
    tmp = profiled_sweep["tmp"]
    assert isinstance(tmp, Path)
    res = cli("ls", str(tmp / "results" / "prof"), cwd=tmp)
    assert res.returncode == 0, res.stderr
    for column in ("gmacs", "latency_ms_p50", "throughput_img_s", "peak_memory_mb"):
        assert column in res.stdout
    out = tmp / "results" / "prof" / "stages" / "profile"
    index = json.loads((out / "index.json").read_text())
    assert index["title"] == "Profile" and index["tables"][0]["csv"] == "profile.csv"
    for fig in index["figures"]:
        assert (out / fig["path"]).stat().st_size > 0
    lines = (out / "profile.csv").read_text().splitlines()
    assert lines[0].startswith("run_id,model,run_resolution,resolution,params_total")
    assert len(lines) == 3


# --- memory and the command line ------------------------------------------------------------------------


def test_cpu_subprocess_memory_grows_with_batch() -> None:
    from archbench.stages.profile.memory import cpu_peak_rss
    from archbench.stages.profile.target import Target

    target = Target(ModelSpec(name="simple_cnn"), 3, 10, (32, 32))
    kwargs = {"train_step": True, "amp": False, "channels_last": False, "threads": 1}
    small = cpu_peak_rss(target, 1, **kwargs)  # type: ignore[arg-type]
    large = cpu_peak_rss(target, 128, **kwargs)  # type: ignore[arg-type]
    assert large["inference_mb"] > small["inference_mb"]
    assert large["train_step_mb"] > small["train_step_mb"]
    assert large["train_step_mb"] >= large["inference_mb"] >= large["baseline_mb"] > 0


def test_one_failing_size_does_not_stop_the_others(one_thread: None) -> None:
    import torch

    from archbench.stages.profile.measure import ProfileSettings, Target, measure

    settings = ProfileSettings(batch_sizes=(1, 2), warmup=0, iters=1, memory=False, train_step=False)
    bad = measure(Target(ModelSpec(name="vit_b_16"), 3, 10, (40, 40)), settings, torch.device("cpu"))
    good = measure(Target(ModelSpec(name="tiny_cnn"), 3, 10, (16, 16)), settings, torch.device("cpu"))
    assert "multiple of 16" in bad["error"] and bad["resolution"] == 40
    assert "error" not in good and good["latency_ms_p50"] > 0


def test_cli_profile_prints_published_params() -> None:
    res = cli(
        "profile", "resnet18", "--resolutions", "64", "--device", "cpu", "--iters", "2", "--threads", "1"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "11,689,512" in res.stdout
    assert "resnet18" in res.stdout and "GMACs" in res.stdout


def test_cli_profile_json_and_bad_input() -> None:
    res = cli(
        "profile", "tiny_cnn", "--resolutions", "16,32", "--device", "cpu", "--iters", "1", "--warmup", "0",
        "--threads", "1", "--batch-sizes", "1,4", "--no-memory", "--num-classes", "10", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert [r["resolution"] for r in report["results"]] == [16, 32]
    assert report["results"][0]["flops"] < report["results"][1]["flops"]
    assert report["results"][0]["throughput_batch"] == 4 and "peak_memory_mb" not in report["results"][0]
    bad = cli("profile", "resnet_9000", "--device", "cpu")
    assert bad.returncode == 2 and "resnet18" in bad.stderr  # nearest names suggested, nothing measured
    bad = cli("profile", "tiny_cnn", "--resolutions", "0,abc")
    assert bad.returncode == 2 and "--resolutions" in bad.stderr


def test_profile_command_on_a_sweep_folder_runs_the_stage_driver(profiled_sweep: dict[str, object]) -> None:
    """`archbench profile SWEEP --record` is the stage the runner ran: every completed run gets its block."""
    from typer.testing import CliRunner

    from archbench.cli.app import app

    tmp = profiled_sweep["tmp"]
    assert isinstance(tmp, Path)
    sweep = tmp / "results" / "prof"
    index = sweep / "stages" / "profile" / "index.json"
    index.unlink()
    res = CliRunner().invoke(app, ["profile", str(sweep), "--record", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert res.output.count("profiled ") == 2
    for run_dir in profiled_sweep["runs"]:  # type: ignore[attr-defined]
        rec = read_record(run_dir)
        assert rec is not None and "error" not in rec.stages["profile"]
    assert json.loads(index.read_text())["title"] == "Profile"
