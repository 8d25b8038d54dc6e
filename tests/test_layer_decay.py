"""`train.layer_decay` (issue 27): per-layer learning rates from timm's layer groups, refused elsewhere."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from archbench.config import ModelSpec, RunSpec, TrainSpec, spec_hash
from archbench.engine.optim import build_optimizer, build_scheduler
from archbench.models import create_model
from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli
from helpers import cli, set_args
from test_recipes_train import only_run, recipe_sweep, refused_at_planning

REPO = Path(__file__).resolve().parents[1]
VIT = "timm:vit_tiny_patch16_224"


def tiny_vit() -> torch.nn.Module:
    return create_model(ModelSpec(name=VIT), in_chans=3, num_classes=10, image_size=32)


def lr_of(opt: torch.optim.Optimizer) -> dict[int, float]:
    """Each parameter's learning rate (by id), from the optimizer's groups."""
    return {id(p): float(g["lr"]) for g in opt.param_groups for p in g["params"]}


def test_vit_layers_get_learning_rates_that_decrease_toward_the_input() -> None:
    model = tiny_vit()
    opt = build_optimizer(model, TrainSpec(lr=0.1, layer_decay=0.75, weight_decay=0.05))
    lr = lr_of(opt)
    named = dict(model.named_parameters())
    assert set(lr) == {id(p) for p in named.values()}  # every parameter is trained, once
    depth = len(model.blocks)  # type: ignore[arg-type]
    # timm's ViT groups: stem (patch_embed, cls_token, pos_embed) = 0, block i = i + 1, then norm and head.
    assert lr[id(named["head.weight"])] == pytest.approx(0.1)
    assert lr[id(named["patch_embed.proj.weight"])] == pytest.approx(0.1 * 0.75 ** (depth + 1))
    blocks = [lr[id(named[f"blocks.{i}.attn.qkv.weight"])] for i in range(depth)]
    assert all(a < b for a, b in zip(blocks, blocks[1:], strict=False))  # strictly rising toward the head
    assert lr[id(named["patch_embed.proj.weight"])] < blocks[0]
    # Weight decay is the run's, on every parameter, as without layer decay.
    assert {g["weight_decay"] for g in opt.param_groups} == {0.05}


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_the_schedule_keeps_each_layers_ratio(schedule: str) -> None:
    model = tiny_vit()
    train = TrainSpec(lr=0.1, layer_decay=0.5, schedule=schedule, epochs=2, optimizer="adamw")
    opt = build_optimizer(model, train)
    sched = build_scheduler(opt, train, steps_per_epoch=4)
    for _ in range(3):
        opt.step()
        sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    scales = [g["lr_scale"] for g in opt.param_groups]
    top = lrs[scales.index(1.0)]
    assert top > 0
    assert lrs == pytest.approx([top * s for s in scales])


def test_without_layer_decay_there_is_one_group_and_no_id_changes() -> None:
    assert len(build_optimizer(tiny_vit(), TrainSpec()).param_groups) == 1
    res = cli("run", str(REPO / "configs" / "quickstart.yaml"), "--dry-run", cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "tiny_cnn_sgd_0.05-dded763f50" in res.stdout and "resnet18_adam_0.002-62e5d5468d" in res.stdout
    assert "layer_decay" not in RunSpec().identity()["train"]
    assert spec_hash(RunSpec.model_validate({"train": {"layer_decay": 0.8}})) != spec_hash(RunSpec())


def test_a_model_without_layer_groups_is_refused_at_planning(tmp_path: Path) -> None:
    lines = refused_at_planning(tmp_path, "quickstart.yaml", "train.layer_decay", "train.layer_decay=0.8")
    assert len(lines) == 2 and "tiny_cnn" in lines[0] and "resnet18" in lines[1], lines
    assert all("no layer groups" in ln for ln in lines)


def test_a_tiny_vit_trains_with_layer_decay_and_records_it(tmp_path: Path) -> None:
    sweep = recipe_sweep(tmp_path, "optimizer: adamw, layer_decay: 0.75", epochs=1)
    sets = (f"model.name={VIT}", "data.resolution=32", "data.limit_per_class=4", "train.lr=0.001")
    res = cli("run", str(sweep), *set_args(*sets), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(only_run(tmp_path))
    assert rec is not None and rec.status == "completed"
    assert rec.spec.train.layer_decay == 0.75


def _layer_decay_sweep(tmp: Path) -> tuple[Path, list[str]]:
    """The tiny ViT with layer decay and a cosine schedule: 3 short epochs (8 digits per class, batch 16)."""
    sweep = recipe_sweep(tmp, "optimizer: adamw, layer_decay: 0.75, schedule: cosine", epochs=3)
    sets = (f"model.name={VIT}", "data.resolution=32", "data.limit_per_class=8", "train.lr=0.001",
            "train.batch_size=16")  # fmt: skip
    return sweep, set_args(*sets)


def _final_state(tmp: Path) -> tuple[str, list[float], list[float]]:
    """The weights' digest, then each optimizer group's learning rate and its layer-decay scale, from the
    run's last checkpoint."""
    state = load_checkpoint(only_run(tmp) / "checkpoints" / "last.pt")
    groups = state["optimizer"]["param_groups"]
    return state_digest(state["model"]), [g["lr"] for g in groups], [g.get("lr_scale", 1.0) for g in groups]


@pytest.mark.reliability
def test_sigkill_mid_epoch_with_layer_decay_resumes_bitwise(tmp_path: Path) -> None:
    """Killed in epoch 2 and resumed, a layer-decay run ends with the same weights and the same per-group
    learning rates (each group's scale and the schedule's position) as a run never stopped."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir()
    killed.mkdir()
    sweep, sets = _layer_decay_sweep(ref)
    assert cli("run", str(sweep), *sets, cwd=ref).returncode == 0
    sweep, sets = _layer_decay_sweep(killed)
    res = run_cli("run", str(sweep), *sets, cwd=killed, env={"ARCHBENCH_FAULT": "kill@step:7"})
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    again = run_cli("run", str(sweep), *sets, cwd=killed)
    assert again.returncode == 0, again.stdout + again.stderr
    digest, lrs, scales = _final_state(killed)
    assert (digest, lrs, scales) == _final_state(ref)
    assert len(set(scales)) > 2  # the groups really have different rates
    rec = read_record(only_run(killed))
    assert rec is not None and rec.resumes == 1 and rec.status == "completed"
