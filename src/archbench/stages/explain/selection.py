"""The shared image selection: owns choosing, once per sweep and test set, which test images get explained.

Every run of a sweep is explained on the same images so a grid compares models on equal footing. The
choice is made by the first run explained (seeded by `explain.seed`), written to
`<sweep>/stages/explain/selection.json` and reused by every later run. Runs whose test sets differ (other
data fingerprints) get one selection per fingerprint. `mistakes` and `correct` read the saved predictions
of every run explained or completed so far with that fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archbench.stages.base import run_folders, stage_output
from archbench.store import layout
from archbench.store.record import RunRecord, now_iso, read_record
from archbench.util.paths import atomic_write_bytes, atomic_write_text

SELECTION_NAME = "selection.json"
SELECTION_VERSION = 1


def stage_dir(sweep_dir: Path) -> Path:
    """`<sweep>/stages/explain`, created on first use."""
    return stage_output(sweep_dir, "explain")


@dataclass
class Selection:
    """The chosen test indices of one test set (fingerprint), with how and from what they were chosen."""

    fingerprint: str
    indices: list[int]
    labels: list[int]
    select: str
    images: int
    seed: int
    how: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    reused: bool = False

    @property
    def hash(self) -> str:
        """Identifies the exact images: the fingerprint of the test set and the ordered indices."""
        text = json.dumps({"fingerprint": self.fingerprint, "indices": self.indices}, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "indices": self.indices,
            "labels": self.labels,
            "select": self.select,
            "images": self.images,
            "seed": self.seed,
            "how": self.how,
            "created_at": self.created_at,
        }

    def images_file(self, sweep_dir: Path) -> Path:
        """Where the selected images themselves are kept (native size, for the figures)."""
        return stage_dir(sweep_dir) / f"images-{self.hash[:12]}.npz"


def choose_indices(
    select: str, n: int, seed: int, y_true: np.ndarray, wrong: np.ndarray | None = None
) -> tuple[list[int], dict[str, Any]]:
    """Pure: `n` test indices chosen by `select` with a seeded generator, and a note on how.

    `wrong` is a runs×images boolean matrix (a model got the image wrong). `mistakes`: images most models
    got wrong first (ties in random order), topped up at random when too few; `correct`: images every
    model got right, topped up with the fewest-wrong; `random`: uniform; `per-class`: one image per class
    in turn (classes in order), at random within a class.
    """
    rng = np.random.default_rng(seed)
    total = int(y_true.shape[0])
    n = min(n, total)
    how: dict[str, Any] = {"select": select, "seed": seed, "test_size": total}
    if select == "random":
        chosen = np.sort(rng.choice(total, size=n, replace=False))
    elif select == "per-class":
        pools = {int(c): list(rng.permutation(np.flatnonzero(y_true == c))) for c in np.unique(y_true)}
        picked: list[int] = []
        while len(picked) < n:
            for pool in pools.values():
                if pool and len(picked) < n:
                    picked.append(int(pool.pop(0)))
        chosen = np.array(sorted(picked, key=lambda i: (int(y_true[i]), i)), dtype=np.int64)
        how["classes"] = len(pools)
    elif select in ("mistakes", "correct"):
        if wrong is None or wrong.shape[0] == 0:
            raise ValueError(f"select={select} needs the saved predictions of at least one run")
        wrong_count = wrong.sum(0)
        shuffled = rng.permutation(total)
        if select == "mistakes":
            order = shuffled[np.argsort(-wrong_count[shuffled], kind="stable")]
            matching = int((wrong_count > 0).sum())
        else:
            order = shuffled[np.argsort(wrong_count[shuffled], kind="stable")]
            matching = int((wrong_count == 0).sum())
        chosen = order[:n]
        if select == "mistakes" and matching < n:
            # Too few mistakes: the rest at random among the right answers (not by "fewest right").
            rest = shuffled[wrong_count[shuffled] == 0][: n - matching]
            chosen = np.concatenate([order[:matching], rest])
        how.update(
            {
                "runs": int(wrong.shape[0]),
                "matching": matching,
                "topped_up": max(0, n - matching),
                "wrong_by_models": [int(wrong_count[i]) for i in chosen],
            }
        )
    else:
        raise ValueError(f"unknown select {select!r}; use mistakes, correct, random or per-class")
    return [int(i) for i in chosen], how


@contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    """Serialise selection changes between processes explaining runs of the same sweep."""
    from archbench.store.lock import file_lock

    with file_lock(stage_dir(sweep_dir) / ".selection.lock"):
        yield


def read_selections(sweep_dir: Path) -> dict[str, Selection]:
    """fingerprint → Selection from `selection.json` (empty when absent or unreadable)."""
    path = layout.stage_dir(sweep_dir, "explain") / SELECTION_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        groups = raw["groups"]
        return {
            fp: Selection(
                fingerprint=fp,
                indices=[int(i) for i in g["indices"]],
                labels=[int(v) for v in g["labels"]],
                select=str(g["select"]),
                images=int(g["images"]),
                seed=int(g["seed"]),
                how=dict(g.get("how", {})),
                created_at=str(g.get("created_at", "")),
            )
            for fp, g in groups.items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _wrong_matrix(
    sweep_dir: Path, fingerprint: str, y_true: np.ndarray, extra: tuple[Path, RunRecord] | None
) -> tuple[np.ndarray, list[str]]:
    """Which images each run (with this fingerprint and saved predictions) got wrong."""
    rows, run_ids = [], []
    for run_dir in run_folders(sweep_dir):
        rec = extra[1] if extra is not None and run_dir == extra[0] else read_record(run_dir)
        predictions = layout.RunLayout(run_dir).predictions
        if rec is None or rec.data_fingerprint != fingerprint or not predictions.exists():
            continue
        if rec.status != "completed" and (extra is None or run_dir != extra[0]):
            continue
        with np.load(predictions, allow_pickle=False) as z:
            if z["y_true"].shape != y_true.shape or not np.array_equal(z["y_true"], y_true):
                continue
            rows.append(z["y_pred"] != y_true)
        run_ids.append(run_dir.name)
    matrix = np.stack(rows) if rows else np.zeros((0, y_true.shape[0]), dtype=bool)
    return matrix, run_ids


def get_selection(
    sweep_dir: Path,
    fingerprint: str,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    select: str,
    images: int,
    seed: int,
    policy: str = "reuse",
    current: tuple[Path, RunRecord] | None = None,
) -> Selection:
    """The selection for this test set: the stored one, or a new one written for every later run.

    policy `reuse` keeps any stored selection (the stage: consistency across models wins over a changed
    config); `match` keeps it only if it was made with the same select/images/seed; `new` always chooses
    again. `current` is the run being explained (counted for `mistakes`/`correct` even before its record
    says completed).
    """
    with _locked(sweep_dir):
        stored = read_selections(sweep_dir)
        old = stored.get(fingerprint)
        same = old is not None and (old.select, old.images, old.seed) == (select, images, seed)
        if old is not None and (policy == "reuse" or (policy == "match" and same)):
            old.reused = True
            if not old.images_file(sweep_dir).exists():
                _write_images(old, sweep_dir, test_x)
            return old
        wrong: np.ndarray | None = None
        run_ids: list[str] = []
        if select in ("mistakes", "correct"):
            wrong, run_ids = _wrong_matrix(sweep_dir, fingerprint, test_y, current)
        indices, how = choose_indices(select, images, seed, test_y, wrong)
        if run_ids:
            how["from_runs"] = run_ids
        if old is not None:
            how["replaces"] = old.hash
        sel = Selection(
            fingerprint=fingerprint,
            indices=indices,
            labels=[int(test_y[i]) for i in indices],
            select=select,
            images=images,
            seed=seed,
            how=how,
            created_at=now_iso(),
        )
        stored[fingerprint] = sel
        doc = {"version": SELECTION_VERSION, "groups": {fp: s.to_json() for fp, s in stored.items()}}
        _write_images(sel, sweep_dir, test_x)
        atomic_write_text(stage_dir(sweep_dir) / SELECTION_NAME, json.dumps(doc, indent=2))
        return sel


def _write_images(sel: Selection, sweep_dir: Path, test_x: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    idx = np.asarray(sel.indices, dtype=np.int64)
    np.savez_compressed(buf, indices=idx, images=test_x[idx], labels=np.asarray(sel.labels, dtype=np.int64))
    atomic_write_bytes(sel.images_file(sweep_dir), buf.getvalue())


def load_selected_images(sweep_dir: Path, sel: Selection) -> np.ndarray | None:
    """The selected images (native size, as stored) or None when the file is missing or stale."""
    try:
        with np.load(sel.images_file(sweep_dir), allow_pickle=False) as z:
            if list(z["indices"]) != sel.indices:
                return None
            return np.asarray(z["images"])
    except (OSError, ValueError, KeyError):
        return None
