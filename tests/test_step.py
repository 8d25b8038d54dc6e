"""The training step never waits for the device: device->host reads happen only every `train.log_every`
steps (and at the epoch's end), counted op by op under a `TorchDispatchMode` on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from archbench.config import RunSpec
from archbench.data.registry import DatasetBundle, Split
from archbench.engine.train import train_run
from archbench.util.errors import RunFailure

READS_PER_LOG = 3  # loss sum, correct count, first non-finite step: one stacked copy, three values


class CountReads(TorchDispatchMode):
    """Counts what would make a GPU's host wait: scalar reads (`.item()`, `float(t)`, `bool(t)`, ...) and
    device->host copies; and host->device copies (on CPU both kinds of copy are 0 by construction)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.h2d = 0
        self.d2h = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        elif func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            if func is torch.ops.aten.copy_.default:
                src, dst = args[1], args[0].device
            else:
                src, dst = args[0], torch.device(kwargs.get("device") or args[0].device)
            if isinstance(src, torch.Tensor) and src.device.type == "cpu" and dst.type != "cpu":
                self.h2d += 1
            elif isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst.type == "cpu":
                self.d2h += 1
        return func(*args, **kwargs)


def _bundle(n: int = 192, seed: int = 0) -> DatasetBundle:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 4, n).astype(np.int64)
    small = Split(x[:32], y[:32])
    return DatasetBundle("t", list("abcd"), Split(x, y), small, small, [0.5] * 3, [0.25] * 3, "")


def _spec(**train: Any) -> RunSpec:
    return RunSpec.model_validate(
        {
            "data": {"augment": {"crop_padding": 2, "hflip": True}},
            "train": {"epochs": 2, "batch_size": 16, "threads": 1, "device": "cpu", "grad_clip": 1.0} | train,
        }
    )


@pytest.mark.parametrize("log_every", [4, 5])
def test_no_device_read_between_log_intervals(tmp_path: Path, log_every: int) -> None:
    counter = CountReads()
    before_step: list[int] = []  # reads counted so far, taken at the start of every step
    logged: list[tuple[int, int, float, float]] = []

    def should_stop() -> bool:
        before_step.append(counter.reads)
        return False

    def on_batch(epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        logged.append((epoch, done, loss, acc))

    with counter:
        res = train_run(
            _spec(log_every=log_every), _bundle(), tmp_path, should_stop=should_stop, on_batch=on_batch
        )
    per_epoch = res.history[0]["step"]  # 192 training images / 16 = 12 batches
    assert per_epoch == 12 and len(before_step) == 2 * per_epoch
    for step in range(len(before_step) - 1):
        if (step + 1) % per_epoch == 0:
            continue  # the epoch's end: its read, validation and checkpoints (below)
        reads = before_step[step + 1] - before_step[step]
        want = READS_PER_LOG if (step + 1) % log_every == 0 else 0
        assert reads == want, f"step {step}: {reads} reads, expected {want}"
    assert counter.h2d == 0 and counter.d2h == 0
    # Progress is heard at the log interval (global steps) and at each epoch's end, nowhere else.
    done = [(e * per_epoch + d) for e, d, _, _ in logged]
    intervals = {s for s in range(1, 2 * per_epoch + 1) if s % log_every == 0}
    expect = sorted(intervals | {per_epoch, 2 * per_epoch})
    assert done == expect
    assert all(np.isfinite(loss) and 0.0 <= acc <= 1.0 for _, _, loss, acc in logged)
    # The epoch's last reading is the epoch's record.
    last = [x for x in logged if x[1] == per_epoch]
    assert [(h["train_loss"], h["train_acc"]) for h in res.history] == [(x[2], x[3]) for x in last]


def test_the_log_interval_does_not_change_the_run(tmp_path: Path) -> None:
    a = train_run(_spec(log_every=1), _bundle(), tmp_path / "a")
    b = train_run(_spec(log_every=1000), _bundle(), tmp_path / "b")
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    keep = ("train_loss", "train_acc", "val_loss", "val_acc", "step")
    assert [{k: h[k] for k in keep} for h in a.history] == [{k: h[k] for k in keep} for h in b.history]


@pytest.mark.parametrize("bad_step", [3, 13])
def test_first_non_finite_step_is_named_at_the_next_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_step: int
) -> None:
    monkeypatch.setenv("ARCHBENCH_FAULT", f"nan@step:{bad_step}")
    with pytest.raises(RunFailure) as info:
        train_run(_spec(log_every=5), _bundle(), tmp_path)
    assert info.value.reason == f"non_finite_loss@{bad_step}"
    if bad_step > 12:  # after the first epoch: its checkpoint exists and holds only finite values
        from archbench.store.checkpoint import load_checkpoint

        state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
        assert state["step"] == 12
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# --- the policy around the step: determinism, the optimizer's implementation, torch.compile ---


def test_deterministic_auto_is_bitwise_on_cpu_and_autotuned_on_cuda() -> None:
    from archbench.engine.runtime import deterministic_enabled, device_info

    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # resolving a policy needs no CUDA device
    for setting, on_cpu, on_cuda in [("auto", True, False), (True, True, True), (False, False, False)]:
        train = _spec(deterministic=setting).train
        assert (deterministic_enabled(train, cpu), deterministic_enabled(train, cuda)) == (on_cpu, on_cuda)
    info = device_info(cpu, _spec().train)
    assert info["deterministic"] is True and info["deterministic_setting"] == "auto"
    assert info["cudnn_benchmark"] is False and info["compile"] is False
    assert RunSpec.model_validate({"train": {"deterministic": "true"}}).train.deterministic is True


def test_determinism_set_up_imports_no_inductor_and_the_record_says_what_ran(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, torch; from archbench.config import RunSpec; "
        "from archbench.engine.runtime import configure_determinism; "
        "configure_determinism(RunSpec().train, torch.device('cpu'), 0); "
        "assert torch.are_deterministic_algorithms_enabled(); "
        "print(sorted(m for m in sys.modules if m.startswith('torch._inductor')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    res = train_run(_spec(epochs=1, deterministic=False), _bundle(), tmp_path)
    assert res.device["deterministic"] is False and res.device["optimizer"] == "foreach"


@pytest.mark.slow
def test_compile_trains_and_keeps_its_seconds_apart(tmp_path: Path) -> None:
    # 192 images in batches of 16: one shape, so one compilation (in the first step of the first epoch).
    try:
        res = train_run(_spec(compile=True), _bundle(), tmp_path)
    except Exception as exc:  # no C++ compiler, or inductor unsupported on this platform
        if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
            pytest.skip(f"torch.compile cannot compile on this machine: {str(exc).splitlines()[0]}")
        raise
    assert res.device["compile"] is True and res.device["compile_seconds"] > 0
    assert res.history[0]["compile_seconds"] == res.device["compile_seconds"]
    assert res.history[1]["compile_seconds"] == 0.0  # nothing recompiled in the second epoch
    assert all(np.isfinite(h["train_loss"]) and h["seconds"] > 0 for h in res.history)
    # The checkpoint holds the model's own keys, not the compiled wrapper's.
    from archbench.store.checkpoint import load_checkpoint

    keys = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"].keys()
    assert not any(k.startswith("_orig_mod") for k in keys)


def test_host_allocator_keeps_freed_memory_and_can_be_left_alone(tmp_path: Path) -> None:
    """glibc's allocator is told to keep freed blocks (no page faults per step for batch-sized buffers);
    ARCHBENCH_HOST_ALLOCATOR=default leaves it alone. Each case in a fresh process (the setting is global)."""
    import ctypes.util
    import os
    import subprocess
    import sys

    if ctypes.util.find_library("c") is None:
        pytest.skip("no C library to tune here")
    code = "from archbench.engine.runtime import keep_host_memory as k; print(k()); print(k())"
    env = {k: v for k, v in os.environ.items() if k != "ARCHBENCH_HOST_ALLOCATOR"}
    tuned = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = tuned.stdout.split()
    if not lines or lines[0] != "glibc":
        pytest.skip(f"not glibc: {tuned.stdout.strip()!r}")
    assert tuned.stdout.splitlines()[0] == tuned.stdout.splitlines()[1]  # set once, reported the same
    assert "mmap_threshold=256MiB" in tuned.stdout
    left = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "ARCHBENCH_HOST_ALLOCATOR": "default"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.split() == ["default", "default"]
