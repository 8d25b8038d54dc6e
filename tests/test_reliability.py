"""The reliability and security catalogue (../shared/RELIABILITY.md) cases not covered elsewhere.

Covered in other files: 1, 6, 7 in test_resume.py; 5 and 9 (NaN) in test_run_e2e.py; 12, 13, 15, 17 in
test_data.py; 18-20 in test_sweep.py; 21 (pickle payload as pretrained weights) in test_models.py;
14 in test_maps.py; 25-34 in test_trust.py. All carry the `reliability` marker: `pytest -m reliability`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from archbench.config import DataSpec, RunSpec
from archbench.data import create_dataset
from archbench.store.checkpoint import load_checkpoint, load_latest, save_checkpoint, state_digest
from archbench.store.record import read_record
from archbench.util.errors import CheckpointError, DatasetError
from conftest import REPO, image_folder_sweep, run_cli, tiny_sweep

pytestmark = pytest.mark.reliability


def _only_run(out: Path) -> Path:
    (run_dir,) = (out / "tiny" / "runs").iterdir()
    return run_dir


# --- 2: full state round trip


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


# --- 3: checkpoint damage


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


def test_sigkill_while_writing_checkpoint_keeps_previous_complete_file(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=3, optimizers="[sgd]")
    # Epoch 1 writes best.pt and last.pt (writes 1 and 2); die half-way through write 3 (epoch 2).
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "kill@checkpoint_write:3"})
    assert res.returncode == -9, res.stdout + res.stderr
    run_dir = _only_run(tmp_path / "results")
    # The canonical files are the previous complete ones; the half-written data stays in a temp file.
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 1
    load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert list((run_dir / "checkpoints").glob(".*.tmp-*")), "the half-written temp file stays a temp file"
    assert run_cli("run", str(sweep), cwd=tmp_path).returncode == 0
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed" and rec.resumes == 1


# --- 4: kill while writing the record, and between final checkpoint and record ---


@pytest.mark.parametrize("fault", ["kill@record_write", "kill@after_checkpoint"])
def test_kill_around_the_record_never_leaves_a_broken_record(tmp_path: Path, fault: str) -> None:
    sweep = tiny_sweep(tmp_path, epochs=2, optimizers="[sgd]")
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": fault})
    assert res.returncode == -9
    run_dir = _only_run(tmp_path / "results")
    text = (run_dir / "record.json").read_text()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "running", text[:200]  # complete and valid, but not done
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed"
    # Finished without retraining: both epochs come from the first process, the resume trained nothing.
    assert [h.epoch for h in rec.history] == [1, 2]
    resumed = [e for e in rec.events if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["epoch"] == 2


# --- 8: disk full


def test_disk_full_fails_one_run_keeps_previous_checkpoint_and_resumes_later(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=2, optimizers="[sgd]")
    text = sweep.read_text().replace("model.name: [tiny_cnn]", "model.name: [simple_cnn, tiny_cnn]")
    sweep.write_text(text)
    # 1) simple_cnn is killed during epoch 2, so its epoch-1 checkpoint exists.
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "kill@step:25#simple_cnn"})
    assert res.returncode == -9
    simple = next(d for d in (tmp_path / "results" / "tiny" / "runs").iterdir() if "simple" in d.name)
    before = load_checkpoint(simple / "checkpoints" / "last.pt")
    assert before["epoch"] == 1
    # 2) Files larger than 1 MB cannot be written: simple_cnn's next checkpoint (~2.3 MB) fails, tiny_cnn's
    #    (~50 kB) fits, so that run completes.
    limit = 1_000_000
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHBENCH_FAULT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "archbench", "run", str(sweep)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rec = read_record(simple)
    assert rec is not None and rec.status == "failed" and rec.failure_reason == "disk_full"
    detail = rec.failure_detail or ""
    assert "errno 27" in detail and str(simple / "checkpoints") in detail  # errno and the path written
    after = load_checkpoint(simple / "checkpoints" / "last.pt")
    assert state_digest(after) == state_digest(before)  # previous checkpoint intact
    tiny = next(d for d in (tmp_path / "results" / "tiny" / "runs").iterdir() if "tiny" in d.name)
    rec_t = read_record(tiny)
    assert rec_t is not None and rec_t.status == "completed"
    # 3) Space is back: the failed run resumes and completes.
    assert run_cli("run", str(sweep), cwd=tmp_path).returncode == 0
    rec = read_record(simple)
    assert rec is not None and rec.status == "completed" and rec.resumes >= 1


# --- 9: absurd learning rate; no non-finite checkpoint ---------------------------------------------------


def test_absurd_learning_rate_fails_with_non_finite_loss_and_no_bad_checkpoint(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=3, optimizers="[sgd]")
    res = run_cli("run", str(sweep), "--set", "train.lr=1e12", "--set", "train.schedule=none", cwd=tmp_path)
    assert res.returncode == 1
    run_dir = _only_run(tmp_path / "results")
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "failed"
    assert re.fullmatch(r"non_finite_loss@\d+", rec.failure_reason or "")
    for ckpt in (run_dir / "checkpoints").glob("*.pt"):
        state = load_checkpoint(ckpt)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


# --- 10: out of memory in one run


def test_oom_in_one_run_fails_it_and_others_complete(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1)
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "oom@step:2#sgd"})
    assert res.returncode == 1
    assert "1 trained, 1 failed" in res.stdout and "oom" in res.stdout
    recs = [read_record(d) for d in (tmp_path / "results" / "tiny" / "runs").iterdir()]
    assert sorted((r.status, r.failure_reason) for r in recs if r) == [("completed", None), ("failed", "oom")]


# --- 11: DataLoader workers


def test_training_uses_no_dataloader_workers() -> None:
    """Case 11 cannot happen: data lives on the device as tensors and no worker process exists to die.
    This guards that design: no DataLoader with workers anywhere in the package."""
    src = REPO / "src" / "archbench"
    offenders = [
        p for p in src.rglob("*.py") if re.search(r"DataLoader\(|num_workers\s*=\s*[1-9]", p.read_text())
    ]
    assert offenders == []


# --- 16: labels out of range


def _write_idx(root: Path, labels: np.ndarray) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = len(labels)
    images = np.zeros((n, 28, 28), np.uint8)
    for split, count in (("train", n), ("t10k", n)):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            np.array([2051, count, 28, 28], ">i4").tobytes() + images[:count].tobytes()
        )
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            np.array([2049, count], ">i4").tobytes() + labels[:count].astype(np.uint8).tobytes()
        )


def test_label_out_of_range_is_rejected_in_preflight_with_count_and_indices(tmp_path: Path) -> None:
    labels = np.tile(np.arange(10), 3)
    labels[[4, 17]] = 10
    _write_idx(tmp_path, labels)
    with pytest.raises(DatasetError) as info:
        create_dataset(DataSpec(kind="mnist", root=str(tmp_path)))
    msg = str(info.value)
    assert "2 label(s) outside [0, 10)" in msg and "4, 17" in msg


def test_negative_label_in_cifar_batch_is_rejected(tmp_path: Path) -> None:
    import pickle

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = list(np.tile(np.arange(10), 2))
        if name == "data_batch_3":
            labels[7] = -1
        batch = {b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": labels}
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [n.encode() for n in ("airplane automobile bird cat deer dog frog horse ship truck").split()]
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    with pytest.raises(DatasetError) as info:
        create_dataset(DataSpec(kind="cifar10", root=str(tmp_path)))
    assert "-1" in str(info.value)


# --- 17: class map in the record (end to end on an image folder)


def test_imagefolder_sweep_end_to_end_records_class_map(tmp_path: Path) -> None:
    sweep = image_folder_sweep(tmp_path, ["cat", "dog", "eel"], per_split=(12, 4), side=12)
    (tmp_path / "imgs" / "train" / ".ipynb_checkpoints").mkdir()
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = read_record(_only_run(tmp_path / "results"))
    assert rec is not None and rec.data is not None
    assert rec.class_names == ["cat", "dog", "eel"]
    assert rec.data["info"]["class_to_idx"] == {"cat": 0, "dog": 1, "eel": 2}
    assert rec.metrics is not None and rec.metrics.n_test == 12


# --- 21: torch.load and pickle in the source; payload checkpoints ---


def test_source_uses_only_safe_loading() -> None:
    src = REPO / "src" / "archbench"
    problems = []
    for p in src.rglob("*.py"):
        text = p.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                problems.append(f"{p}: {m.group(0)}")
        if re.search(r"\bpickle\.loads?\(", text) or "yaml.load(" in text or "yaml.unsafe_load" in text:
            problems.append(f"{p}: unsafe pickle/yaml load")
        if re.search(r"Loader\s*=\s*yaml\.(Full|Unsafe)?Loader\b", text):
            problems.append(f"{p}: yaml Loader")
    assert problems == []


def test_checkpoint_with_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    assert run_cli("run", str(sweep), "--dry-run", cwd=tmp_path).returncode == 0
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    res = run_cli(
        "run", str(sweep), "--set", "train.epochs=2", cwd=tmp_path, env={"ARCHBENCH_FAULT": "kill@step:3"}
    )
    assert res.returncode == -9
    run_dir = _only_run(tmp_path / "results")
    torch.save({"model": Payload(), "_digest": "x"}, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(run_dir / "checkpoints" / "last.pt")
    res = run_cli("run", str(sweep), "--set", "train.epochs=2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    assert (run_dir / "checkpoints" / "last.pt.bad-0").exists()


# --- 22: hostile names and symlinks


@pytest.mark.parametrize(
    "name",
    ["../../escape", "/abs/path", "a\x00b", "x" * 300, "<script>alert(1)</script>", '=HYPERLINK("x")'],
)
def test_hostile_sweep_names_stay_inside_output_dir(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"name: {json.dumps(name)}\noutput_dir: {out}\ntrain: {{epochs: 1, threads: 1}}\n"
        "data: {kind: digits, limit_per_class: 10}\n"
    )
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    made = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents and p != sweep]
    assert made == [], made
    (sweep_dir,) = out.iterdir()
    assert re.fullmatch(r"[A-Za-z0-9._-]+", sweep_dir.name) and len(sweep_dir.name) <= 64
    rec = read_record(next((sweep_dir / "runs").iterdir()))
    assert rec is not None and rec.sweep == name  # the raw name is kept, as data only


def test_symlinked_run_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    res = run_cli("run", str(sweep), "--dry-run", cwd=tmp_path)
    run_id = re.search(r"(tiny_cnn_sgd-[0-9a-f]{10})", res.stdout)
    assert run_id, res.stdout
    outside = tmp_path / "outside"
    outside.mkdir()
    runs = tmp_path / "results" / "tiny" / "runs"
    runs.mkdir(parents=True)
    (runs / run_id.group(1)).symlink_to(outside)
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 1
    assert "unsafe_path" in res.stdout
    assert list(outside.iterdir()) == []


def test_csv_cells_are_neutralised() -> None:
    import csv
    import io

    from archbench.store.results import rows_to_csv

    text = rows_to_csv([{"a": '=HYPERLINK("http://x")', "b": "+1", "c": "-2", "d": "@x", "e": "ok"}])
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@x", "ok"]


def test_gzip_is_not_a_payload_vector(tmp_path: Path) -> None:
    """A .gz IDX file holding a pickle is read as bytes and rejected by its magic, never unpickled."""
    import pickle

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        with gzip.open(raw / f"{name}.gz", "wb") as f:
            f.write(pickle.dumps({"x": 1}))
    with pytest.raises(DatasetError, match="magic"):
        create_dataset(DataSpec(kind="mnist", root=str(tmp_path)))
