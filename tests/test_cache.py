"""The prepared-data cache on real files and real processes: hit, miss, corruption, concurrent writers."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from archbench.config import DataSpec
from archbench.data import cache, create_dataset
from helpers import cli, wait_until


def _write_folder(root: Path, per_class: int = 6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i:02d}.png")
    return root


def _spec(root: Path, cache_dir: Path, **kw: object) -> DataSpec:
    return DataSpec(kind="imagefolder", root=str(root), cache_dir=str(cache_dir), **kw)  # type: ignore[arg-type]


def test_miss_then_hit_maps_the_same_arrays(tmp_path: Path) -> None:
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    first = create_dataset(_spec(root, store))
    assert first.loading["cache_hit"] is False and first.loading["decode_seconds"] > 0
    second = create_dataset(_spec(root, store, resolution=16, memory_budget="1MB"))  # same decoded arrays
    assert second.loading["cache_hit"] is True and second.loading["decode_seconds"] == 0.0
    assert second.loading["cache_key"] == first.loading["cache_key"]
    assert isinstance(second.train.x, np.memmap)
    assert second.fingerprint == first.fingerprint
    for a, b in ((first.train, second.train), (first.val, second.val), (first.test, second.test)):
        assert np.array_equal(np.asarray(a.x), np.asarray(b.x)) and np.array_equal(a.y, b.y)
    # what is stored: split indices and the sample ids (paths relative to the root)
    key_dir = store / first.loading["cache_key"]
    ids = json.loads((key_dir / "ids.json").read_text())
    train_index = np.load(key_dir / "train_index.npy")
    assert len(ids["ids"]["train"]) == len(train_index) == len(second.train)
    assert all(i.startswith(("cat/", "dog/")) for i in ids["ids"]["test"])
    # a changed source file (size/mtime) or a changed decoding option is a different key: decoded again
    with open(root / "cat" / "00.png", "ab") as f:
        f.write(b"\0")
    third = create_dataset(_spec(root, store))
    assert third.loading["cache_hit"] is False and third.loading["cache_key"] != first.loading["cache_key"]
    fourth = create_dataset(_spec(root, store, split_seed=1))
    assert fourth.loading["cache_key"] not in (first.loading["cache_key"], third.loading["cache_key"])
    assert {e.key for e in cache.list_stores(store) if e.status == "ok"} == {
        first.loading["cache_key"],
        third.loading["cache_key"],
        fourth.loading["cache_key"],
    }


def test_damaged_store_detected_set_aside_and_rebuilt(tmp_path: Path) -> None:
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    good = create_dataset(_spec(root, store))
    key = good.loading["cache_key"]
    reference = np.array(good.train.x)
    del good
    path = store / key / "train_x.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in the pixels
    path.write_bytes(bytes(data))

    res = cli("cache", "verify", "--dir", str(store))
    assert res.returncode == 1 and "train_x.npy: sha256 differs" in res.stdout, res.stdout + res.stderr

    cache.store._verified.clear()  # as in a fresh process
    again = create_dataset(_spec(root, store))
    assert again.loading["cache_hit"] is False
    assert "sampled sha256 differs" in again.loading["damaged_store_set_aside"]
    assert np.array_equal(np.asarray(again.train.x), reference)
    statuses = sorted(e.status for e in cache.list_stores(store))
    assert statuses == ["ok", "set-aside"]

    res = cli("cache", "verify", "--dir", str(store))
    assert res.returncode == 0 and f"{key}: ok" in res.stdout
    res = cli("cache", "ls", "--dir", str(store))
    assert res.returncode == 0 and "set-aside" in res.stdout and "2 entries" in res.stdout
    res = cli("cache", "clear", "--dir", str(store))
    assert res.returncode == 0 and "removed 2 entries" in res.stdout
    assert cache.list_stores(store) == []


def test_truncated_store_is_damaged(tmp_path: Path) -> None:
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    key = create_dataset(_spec(root, store)).loading["cache_key"]
    with open(store / key / "test_x.npy", "r+b") as f:
        f.truncate(100)
    cache.store._verified.clear()
    with pytest.raises(cache.DamagedCacheError, match="test_x.npy: 100 bytes"):
        cache.open_store(store / key)


_CHILD = textwrap.dedent(
    """
    import json, sys
    from archbench.config import DataSpec
    from archbench.data import create_dataset
    b = create_dataset(DataSpec(kind="imagefolder", root=sys.argv[1], cache_dir=sys.argv[2]))
    print(json.dumps({"loading": b.loading, "fingerprint": b.fingerprint, "n": len(b.train)}))
    """
)


def _blocked_on_a_lock() -> set[int]:
    """Pids waiting for a lock now: the `->` lines of /proc/locks ("1: -> FLOCK ADVISORY WRITE <pid> ...")."""
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "->":
            pids.add(int(parts[5]))
    return pids


def test_two_processes_one_writer_the_other_maps(tmp_path: Path) -> None:
    """Two real processes ask for the same dataset while its key is locked; exactly one decodes."""
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    key = cache.cache_key(_spec(root, store))
    (store / ".locks").mkdir(parents=True)
    fd = os.open(store / ".locks" / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # hold the key so both children queue up behind it
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), str(store)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]

    def both_waiting() -> bool:
        assert all(p.poll() is None for p in procs), "a child finished while the key was locked"
        return {p.pid for p in procs} <= _blocked_on_a_lock()

    # Seen blocked on a lock (the kernel's list of waiting flocks): not merely slow to start.
    wait_until(both_waiting, 300, "both children to wait on the locked key")
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    hits = sorted(o["loading"]["cache_hit"] for o in outs)
    assert hits == [False, True]  # one writer; the other waited, then mapped its store
    assert outs[0]["fingerprint"] == outs[1]["fingerprint"] and outs[0]["n"] == outs[1]["n"]
    left = [p.name for p in store.iterdir() if p.name not in (".locks", cache.SOURCES)]
    assert left == [key]  # no temp left


def test_prepare_command_decodes_once(tmp_path: Path) -> None:
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"name: p\noutput_dir: {tmp_path / 'out'}\n"
        f"data: {{kind: imagefolder, root: {root}, cache_dir: {store}}}\n"
        "grid:\n  train.lr: [0.1, 0.01]\n  data.resolution: [8, 16]\n"
    )
    res = cli("prepare", str(sweep))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("decoded in") == 1 and "cached" not in res.stdout  # 4 runs, one dataset
    res = cli("prepare", str(sweep))
    assert res.returncode == 0 and res.stdout.count("cached") == 1
    assert not (tmp_path / "out").exists()  # preparing trains nothing


def test_remembered_listing_sees_added_removed_renamed_and_sampled_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit identifies the source by its directories' stat plus a sample of files, not a full
    listing; every change below still changes the key. (The settle window is set to 0 so the folder
    written just now counts as settled; the next test shows the window.)"""
    monkeypatch.setattr(cache.source, "SETTLE_SECONDS", 0.0)
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"

    def load() -> dict[str, object]:
        return create_dataset(_spec(root, store)).loading

    first = load()
    assert first["source_check"] == "listing" and list((store / cache.SOURCES).glob("*.json"))
    second = load()
    assert second["source_check"] == "directories+sample" and second["cache_hit"] is True
    assert second["cache_key"] == first["cache_key"]

    (root / "dog" / "99.png").write_bytes((root / "dog" / "00.png").read_bytes())  # added
    added = load()
    assert added["source_check"] == "listing" and added["cache_key"] != first["cache_key"]
    (root / "dog" / "99.png").unlink()  # removed again: the first store is hit, after a listing
    removed = load()
    assert removed["source_check"] == "listing" and removed["cache_key"] == first["cache_key"]
    (root / "cat" / "00.png").rename(root / "cat" / "zz.png")  # renamed
    renamed = load()
    assert renamed["cache_key"] not in (first["cache_key"], added["cache_key"])
    (root / "cat" / "zz.png").rename(root / "cat" / "00.png")
    assert load()["cache_key"] == first["cache_key"]

    # Rewritten in place: no directory changes; found because a folder of <= SAMPLE_FILES files has
    # every file checked.
    assert load()["source_check"] == "directories+sample"
    with open(root / "cat" / "01.png", "ab") as f:
        f.write(b"\0")
    rewritten = load()
    assert rewritten["source_check"] == "listing" and rewritten["cache_key"] != first["cache_key"]


def test_what_the_cheap_check_misses_the_full_listing_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented blind spot: a file rewritten in place outside the sample (here the sample is
    empty) keeps the old key on a hit; `prepare(full_check=True)` (`archbench prepare`) lists and sees it."""
    monkeypatch.setattr(cache.source, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(cache.source, "SAMPLE_FILES", 0)
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    spec = _spec(root, store)
    key = create_dataset(spec).loading["cache_key"]
    with open(root / "cat" / "01.png", "ab") as f:
        f.write(b"\0")
    assert create_dataset(spec).loading["cache_key"] == key  # not seen by the directory check
    _, loading = cache.prepare(spec, full_check=True)
    assert loading["source_check"] == "listing" and loading["cache_key"] != key
    assert create_dataset(spec).loading["cache_key"] == loading["cache_key"]  # the new listing is remembered

    # A miss is never built on the cheap check's word: with the store gone, the folder is listed first.
    with open(root / "cat" / "02.png", "ab") as f:
        f.write(b"\0")
    assert create_dataset(spec).loading["cache_key"] == loading["cache_key"]  # blind again (a hit) ...
    cache.clear_stores(store, [loading["cache_key"]])
    rebuilt = create_dataset(spec).loading
    assert rebuilt["source_check"] == "listing" and rebuilt["cache_hit"] is False
    assert rebuilt["cache_key"] not in (key, loading["cache_key"])  # ... but not when decoding
    cache.clear_stores(store)
    assert not (store / cache.SOURCES).exists()  # clearing everything forgets the remembered listings


def test_a_folder_still_changing_is_not_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Directories changed within SETTLE_SECONDS of a listing may change again within the same timestamp
    tick: such a listing is not remembered, so the next open lists again."""
    monkeypatch.setattr(cache.source, "SETTLE_SECONDS", 3600.0)
    root, store = _write_folder(tmp_path / "imgs"), tmp_path / "cache"
    create_dataset(_spec(root, store))
    assert not list(store.glob(f"{cache.SOURCES}/*.json"))
    assert create_dataset(_spec(root, store)).loading["source_check"] == "listing"


def test_decode_identity_is_what_changes_the_decoded_arrays(tmp_path: Path) -> None:
    """One definition serves the cache key, the runner's in-memory reuse and `archbench prepare`: options
    applied per batch (resolution, augment) or about memory (memory_budget) do not change it; the source
    folder, the cache folder and every decoding option do."""
    from archbench.config import AugmentSpec
    from archbench.data.identity import decode_identity

    base = _spec(tmp_path / "imgs", tmp_path / "cache")
    same = [
        base.model_copy(update={"resolution": 16}),
        base.model_copy(update={"augment": AugmentSpec(hflip=True)}),
        base.model_copy(update={"memory_budget": "1MB"}),
    ]
    assert {decode_identity(s) for s in same} == {decode_identity(base)}
    different = [
        base.model_copy(update={"root": str(tmp_path / "other")}),
        base.model_copy(update={"cache_dir": str(tmp_path / "other-cache")}),
        base.model_copy(update={"split_seed": 1}),
        base.model_copy(update={"limit_per_class": 3}),
        base.model_copy(update={"options": {"image_size": 8}}),
    ]
    assert len({decode_identity(s) for s in [base, *different]}) == 1 + len(different)
