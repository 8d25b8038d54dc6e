"""Checkpoints (RELIABILITY.md cases 2, 3): the full training state round-trips, a damaged file is named,
set aside and the previous one used, the digest is of the written bytes; cadence (every N epochs, every
M minutes, always at the end or when a callback ends the run); old-format files still load and resume.
In-process on a tiny synthetic dataset: no subprocess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archbench.config import RunSpec
from archbench.data import create_dataset
from archbench.store.checkpoint import load_checkpoint, load_latest, save_checkpoint, state_digest
from archbench.util.errors import CheckpointError

pytestmark = pytest.mark.reliability


def test_full_training_state_round_trips(tmp_path: Path) -> None:
    from archbench.engine.train import train_run

    spec = RunSpec.model_validate({"data": {"kind": "digits"}, "train": {"epochs": 1, "threads": 1}})
    bundle = create_dataset(spec.data)
    train_run(spec, bundle, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "rng",
        "epoch",
        "batch_in_epoch",
        "step",
        "perm",
        "history",
    ):
        assert key in state, key
    assert set(state["rng"]) >= {"torch", "data", "numpy", "python"}
    assert state["optimizer"]["state"], "optimizer momentum buffers are saved"
    # Save what was loaded and load it again: every tensor and value is equal (digest over all of them).
    save_checkpoint(tmp_path / "again.pt", {k: v for k, v in state.items() if k != "_digest"})
    again = load_checkpoint(tmp_path / "again.pt")
    assert state_digest(again) == state_digest(state)


def _two_checkpoints(tmp_path: Path) -> tuple[Path, dict, dict]:
    path = tmp_path / "last.pt"
    first = {"model": {"w": torch.arange(4.0)}, "epoch": 1}
    second = {"model": {"w": torch.arange(4.0) * 2}, "epoch": 2}
    save_checkpoint(path, first)
    save_checkpoint(path, second)
    return path, first, second


@pytest.mark.parametrize("damage", ["truncated", "empty", "bitflip"])
def test_damaged_checkpoint_is_named_set_aside_and_previous_used(tmp_path: Path, damage: str) -> None:
    path, first, _ = _two_checkpoints(tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        # Flip one bit inside the stored tensor data (the bytes of 2.0 * arange(4)).
        raw = bytearray(data)
        needle = (torch.arange(4.0) * 2).numpy().tobytes()
        i = bytes(raw).find(needle)
        assert i >= 0
        raw[i + 5] ^= 0x10
        path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    state, notes = load_latest(path)
    assert state is not None and state["epoch"] == first["epoch"]
    assert len(notes) == 1 and (tmp_path / "last.pt.bad-0").exists()


def _bundle(n: int = 96) -> Any:
    from archbench.data.registry import DatasetBundle, Split

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 4, n).astype(np.int64)
    small = Split(x[:32], y[:32])
    return DatasetBundle("t", list("abcd"), Split(x, y), small, small, [0.5] * 3, [0.25] * 3, "")


def _spec(**train: Any) -> Any:
    from archbench.config import RunSpec

    base = {"epochs": 3, "batch_size": 16, "threads": 1, "device": "cpu", "log_every": 4}
    return RunSpec.model_validate(
        {"data": {"augment": {"crop_padding": 2, "hflip": True}}, "train": base | train}
    )


def _weights(model: Any) -> str:
    return state_digest(model.state_dict())


def test_checkpoint_every_n_epochs_and_always_at_the_end(tmp_path: Path) -> None:
    from archbench.engine.train import train_run

    seen: list[tuple[int | None, int | None]] = []
    last, best = tmp_path / "checkpoints" / "last.pt", tmp_path / "checkpoints" / "best.pt"

    def on_epoch(stats: dict[str, Any]) -> None:
        saved = load_checkpoint(last) if last.exists() else None
        seen.append((saved["epoch"] if saved else None, stats["epoch"]))
        if saved is not None:  # `best` is written with `last`, and says the same thing
            assert load_checkpoint(best)["best"] == saved["best"]

    res = train_run(_spec(epochs=5, checkpoint={"every_epochs": 2}), _bundle(), tmp_path, on_epoch=on_epoch)
    assert seen == [(None, 1), (2, 2), (2, 3), (4, 4), (5, 5)]
    assert load_checkpoint(best)["best"] == res.best
    ref = train_run(_spec(epochs=5), _bundle(), tmp_path / "every")
    assert _weights(res.model) == _weights(ref.model)  # the cadence changes nothing that is computed


def test_time_cadence_and_stop_mid_epoch_resume_bitwise(tmp_path: Path) -> None:
    """A checkpoint at every step boundary (every_minutes tiny), a stop mid-epoch, a resume in this
    process: the weights equal an uninterrupted run's."""
    from archbench.engine.train import train_run
    from archbench.util.errors import RunKilled

    ref = train_run(_spec(), _bundle(), tmp_path / "ref")
    spec = _spec(checkpoint={"every_minutes": 1e-9})
    run_dir = tmp_path / "run"
    steps_saved: list[int] = []

    def should_stop() -> bool:
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            steps_saved.append(load_checkpoint(last)["step"])
        return len(steps_saved) == 8  # in epoch 2 (6 steps per epoch)

    with pytest.raises(RunKilled):
        train_run(spec, _bundle(), run_dir, should_stop=should_stop)
    # Each boundary wrote `last` (the next one sees it); step 6 twice: the epoch's end, then the boundary.
    assert steps_saved == [0, 1, 2, 3, 4, 6, 6, 7]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 2, 8)
    heard: list[tuple[int, int]] = []
    res = train_run(spec, _bundle(), run_dir, on_resume=lambda epoch, step: heard.append((epoch, step)))
    assert heard == [(2, 8)]  # told once: it goes on in epoch 2 (1-based) after 8 steps
    assert res.resumes == 1 and _weights(res.model) == _weights(ref.model)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref.history]


def test_a_run_ended_by_its_epoch_callback_is_checkpointed(tmp_path: Path) -> None:
    from archbench.engine.train import train_run
    from archbench.util.errors import RunPruned

    def prune(stats: dict[str, Any]) -> None:
        if stats["epoch"] == 1:
            raise RunPruned("pruned at epoch 1")

    with pytest.raises(RunPruned):
        train_run(_spec(checkpoint={"every_epochs": 10}), _bundle(), tmp_path, on_epoch=prune)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["best"]["epoch"] == 1


def _old_format(path: Path, state: dict[str, Any]) -> None:
    """Write `state` as checkpoints were written before the zip-comment digest (`_digest` inside)."""
    old = dict(state)
    old["_digest"] = state_digest(old)
    torch.save(old, path)


def test_old_format_checkpoints_load_verify_and_resume(tmp_path: Path) -> None:
    from archbench.engine.train import train_run
    from archbench.util.errors import CheckpointError, RunKilled

    run_dir = tmp_path / "run"
    with pytest.raises(RunKilled):
        train_run(_spec(), _bundle(), run_dir, should_stop=iter([False] * 8 + [True]).__next__)
    last = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    assert state["batch_in_epoch"] == 2
    # As the older trainer saved it: Python numbers for the sums, no augmentation draws.
    state["sums"] = {"loss": float(state["sums"]["loss"]), "correct": int(state["sums"]["correct"]),
                     "seen": state["sums"]["seen"], "seconds": state["sums"]["seconds"]}  # fmt: skip
    del state["draws"]
    _old_format(last, state)
    again = load_checkpoint(last)
    assert "_digest" not in again and state_digest(again) == state_digest(state)
    res = train_run(_spec(), _bundle(), run_dir)
    assert res.resumes == 1 and [h["epoch"] for h in res.history] == [1, 2, 3]
    # A flipped bit in an old-format file is still caught by its digest.
    _old_format(tmp_path / "old.pt", {"model": {"w": torch.arange(4.0)}, "epoch": 1})
    raw = bytearray((tmp_path / "old.pt").read_bytes())
    i = bytes(raw).find(torch.arange(4.0).numpy().tobytes())
    raw[i + 5] ^= 0x10
    (tmp_path / "old.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(tmp_path / "old.pt")


def test_digest_is_of_the_written_bytes_and_a_damaged_digest_is_caught(tmp_path: Path) -> None:
    import hashlib
    import zipfile

    from archbench.store.checkpoint import save_checkpoint
    from archbench.util.errors import CheckpointError

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(4.0)}, "epoch": 1})
    raw = path.read_bytes()
    comment = zipfile.ZipFile(path).comment
    assert comment.startswith(b"archbench-sha256:")
    # The digest is the sha256 of the file as torch.save wrote it (its zip comment empty).
    unsigned = raw[: -len(comment) - 2] + b"\x00\x00"
    assert comment.split(b":")[1].decode() == hashlib.sha256(unsigned).hexdigest()
    assert torch.load(path, weights_only=True)["epoch"] == 1  # still a plain torch.save file
    damaged = bytearray(raw)
    damaged[-1] = ord("0") if damaged[-1] != ord("0") else ord("1")  # the digest itself
    path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path)
