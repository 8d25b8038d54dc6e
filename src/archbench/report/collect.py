"""What a report is built from: owns reading records, predictions and stage indexes into plain data.

Reads files only (never live objects), hashes every record and prediction file it uses, and groups runs
into configurations (the run spec without its seed). It computes no statistic and writes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from archbench.config import canonical_json
from archbench.report.replicates import fold_of, folds_in, is_replicate_axis, without_replicate
from archbench.store.layout import INDEX_NAME, RunLayout, SweepLayout, sweep_of
from archbench.store.record import RunRecord, read_record
from archbench.store.results import find_runs, find_sweep_dirs, run_axes
from archbench.util.escape import visible

# Stage sections appear in this order; any other stage follows alphabetically.
STAGE_ORDER = ("tune", "profile", "explain", "map")
# Limits on what a stage index may make the report embed (a report must stay one sane file).
MAX_STAGE_FIGURE_BYTES = 20 * 1024 * 1024
MAX_STAGE_TABLE_BYTES = 5 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Data settings that do not change which examples are in the test split (see data/registry.py).
_NOT_TEST_SET = ("resolution", "augment", "limit_per_class", "val_fraction")


@dataclass
class RunEntry:
    """One planned or present run, with its record when it has a valid one."""

    run_id: str
    sweep_dir: Path
    run_dir: Path
    record: RunRecord | None
    plan: dict[str, Any] | None
    record_sha256: str | None = None
    predictions: dict[str, Any] | None = None
    predictions_sha256: str | None = None
    config_key: str = ""
    config_label: str = ""
    verify_problems: list[str] | None = None  # set when a completed record did not verify (verify.py)
    in_plan: bool = True  # in its sweep's current plan (`report --all` also reports the others)

    @property
    def status(self) -> str:
        if self.verify_problems:
            return "not verified"
        return self.record.status if self.record is not None else "missing"

    @property
    def completed(self) -> bool:
        return (
            self.record is not None
            and self.record.status == "completed"
            and self.record.metrics is not None
            and not self.verify_problems
        )

    @property
    def seed(self) -> int | None:
        if self.record is not None:
            return self.record.seed
        spec = (self.plan or {}).get("spec") or {}
        seed = spec.get("seed")
        return seed if isinstance(seed, int) else None

    @cached_property  # read per pair of runs when comparing: the spec is dumped once
    def fold(self) -> int | None:
        """Its fold of a spatial k-fold (`split: block_kfold`), else None."""
        spec = _entry_spec(self)
        return fold_of(spec) if spec is not None else None

    @property
    def axes(self) -> dict[str, Any]:
        """Its record's grid values, completed by its plan entry's (`run_axes`)."""
        return run_axes(self.record, self.plan)

    @property
    def sweep_name(self) -> str:
        """The sweep's raw name (may be hostile: escape before display)."""
        return self.record.sweep if self.record is not None else self.sweep_dir.name

    @property
    def reason(self) -> str:
        if self.verify_problems:
            return "NOT VERIFIED, numbers not used: " + "; ".join(self.verify_problems)
        if self.record is None:
            return "no valid record.json (never run, deleted, damaged or tampered with)"
        if self.record.status == "running":
            return "still running (or its process died and no sweep has noticed yet)"
        if self.record.status == "completed" and self.record.metrics is None:
            return "completed without test metrics"
        return self.record.failure_reason or self.record.status


@dataclass
class Configuration:
    """Runs that differ only in their seed (and, in a spatial k-fold, their fold: replicates.py)."""

    key: str
    label: str
    sweep_dir: Path
    axes: dict[str, Any]
    model: str
    test_set: str
    runs: list[RunEntry] = field(default_factory=list)
    spec: dict[str, Any] | None = None  # the spec of its first run (seeds aside, all runs share it)

    @property
    def completed(self) -> list[RunEntry]:
        return sorted(
            (r for r in self.runs if r.completed), key=lambda r: (r.seed or 0, r.fold or 0, r.run_id)
        )

    @property
    def folds(self) -> int | None:
        """k of a spatial k-fold configuration, as its completed records state it; else None."""
        ks = {folds_in(r.record.data) for r in self.completed if r.record is not None}
        return max((k for k in ks if k is not None), default=None)


@dataclass
class StageFigure:
    path: Path
    caption: str
    png: bytes


@dataclass
class StageTable:
    title: str
    path: Path
    header: list[str]
    rows: list[list[str]]
    truncated: bool = False
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> label, scale, digits


@dataclass
class StageSection:
    """One `<sweep>/stages/<name>/index.json`, validated: every path stays inside its folder."""

    sweep_dir: Path
    name: str
    title: str
    figures: list[StageFigure] = field(default_factory=list)
    tables: list[StageTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    protocol: str | None = None  # a stage that decided how the compared runs were made (tuning) says so


@dataclass
class ReportData:
    source: Path
    sweep_dirs: list[Path]
    runs: list[RunEntry]
    configs: list[Configuration]
    stages: list[StageSection]
    warnings: list[str] = field(default_factory=list)
    outside_plan: int = 0  # run folders left out because their sweep's current plan does not list them
    successes: list[str] = field(default_factory=list)  # good news the report states (every number verified)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_stable(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _load_record(run_dir: Path) -> tuple[RunRecord | None, str | None]:
    """The trusted record and the sha256 of exactly the bytes it was parsed from (retry if rewritten)."""
    for _ in range(3):
        before = _read_stable(RunLayout(run_dir).record)
        rec = read_record(run_dir) if run_dir.is_dir() else None
        after = _read_stable(RunLayout(run_dir).record)
        if before == after:
            return rec, (sha256_bytes(after) if rec is not None and after is not None else None)
    return None, None


def _load_predictions(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    import numpy as np

    raw = _read_stable(RunLayout(run_dir).predictions)
    if raw is None:
        return None, None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            preds = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None, None
    if "y_true" not in preds or "y_pred" not in preds or preds["y_true"].shape != preds["y_pred"].shape:
        return None, None
    return preds, sha256_bytes(raw)


def config_key(spec: dict[str, Any]) -> str:
    """Hash of the run spec without its seed (and k-fold fold): runs sharing it are its replicates."""
    return hashlib.sha256(canonical_json(without_replicate(spec)).encode()).hexdigest()


def test_set_key(spec: dict[str, Any]) -> str:
    """Hash of the data settings that decide which examples are in the test split (a k-fold
    configuration's folds together: its runs pair with another's fold by fold)."""
    data = {k: v for k, v in (without_replicate(spec).get("data") or {}).items() if k not in _NOT_TEST_SET}
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _entry_spec(entry: RunEntry) -> dict[str, Any] | None:
    if entry.record is not None:
        return entry.record.spec.identity()
    spec = (entry.plan or {}).get("spec")
    return spec if isinstance(spec, dict) else None


def _label_for(axes: dict[str, Any], model: str) -> str:
    parts = [str(v) for v in axes.values()]
    return visible(" · ".join(parts) if parts else model)  # labels go into figures and tables as text


def group_configurations(runs: list[RunEntry], several_sweeps: bool) -> list[Configuration]:
    """Configurations in first-planned order; each run's `config_key` and `config_label` are set."""
    configs: dict[tuple[Path, str], Configuration] = {}
    for entry in runs:
        spec = _entry_spec(entry)
        if spec is None:  # a stray folder with neither record nor plan entry: its own configuration
            key, model, tset = "unknown-" + entry.run_id, "?", "unknown-" + entry.run_id
        else:
            key, model, tset = (
                config_key(spec),
                str((spec.get("model") or {}).get("name", "?")),
                test_set_key(spec),
            )
        ident = (entry.sweep_dir, key)
        if ident not in configs:
            axes = {
                k: visible(v) if isinstance(v, str) else v
                for k, v in entry.axes.items()
                if not is_replicate_axis(k, spec)
            }
            model = visible(model)
            label = _label_for(axes, model) if spec is not None else entry.run_id
            if several_sweeps:
                label = f"{visible(entry.sweep_name)}: {label}"
            configs[ident] = Configuration(key, label, entry.sweep_dir, axes, model, tset, spec=spec)
        configs[ident].runs.append(entry)
    out = list(configs.values())
    _disambiguate(out)
    for c in out:
        for r in c.runs:
            r.config_key, r.config_label = c.key, c.label
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _disambiguate(configs: list[Configuration]) -> None:
    """Labels must be unique (they name rows, points and matrix cells). Configurations sharing a label
    (e.g. runs left from an earlier version of the sweep file) get the settings that tell them apart."""
    by_label: dict[str, list[Configuration]] = {}
    for c in configs:
        by_label.setdefault(c.label, []).append(c)
    for group in by_label.values():
        if len(group) < 2:
            continue
        flat = [_flatten(without_replicate(c.spec)) if c.spec else {} for c in group]
        keys = sorted({k for f in flat for k in f})
        differ = [k for k in keys if len({canonical_json(f.get(k)) for f in flat}) > 1]
        for c, f in zip(group, flat, strict=True):
            extra = ", ".join(f"{k}={f.get(k)}" for k in differ[:3])
            c.label = f"{c.label} ({extra})" if extra else c.label
    seen: set[str] = set()
    for c in configs:  # still equal (more than three settings differ): the config hash decides
        if c.label in seen:
            c.label = f"{c.label} [{c.key[:6]}]"
        seen.add(c.label)


def _inside(folder: Path, rel: Any) -> Path | None:
    """`folder/rel` if `rel` is a relative path that stays inside `folder` (symlinks resolved)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or os.path.isabs(rel):
        return None
    root = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(folder / rel))
    if root not in real.parents or not real.is_file():
        return None
    return real


def _read_stage_csv(path: Path, max_rows: int = 500) -> tuple[list[str], list[list[str]], bool]:
    import csv

    if path.stat().st_size > MAX_STAGE_TABLE_BYTES:
        raise ValueError(f"larger than {MAX_STAGE_TABLE_BYTES // 1024 // 1024} MiB")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], [], False
    return rows[0], rows[1 : max_rows + 1], len(rows) - 1 > max_rows


def _listed_files(
    index: dict[str, Any], folder: Path, kind: str, key: str, problems: list[str]
) -> Iterator[tuple[str, dict[str, Any], Path]]:
    """Each entry of the index's list of `kind`s whose `key` names a file inside `folder`, with its label
    ("figure 0") for later problems; an entry that names no such file is a problem instead."""
    for i, entry in enumerate(index.get(f"{kind}s") or []):
        entry = entry if isinstance(entry, dict) else {}
        path = _inside(folder, entry.get(key))
        if path is None:
            problems.append(f"{kind} {i}: {key} {entry.get(key)!r} is not a file inside {folder}")
            continue
        yield f"{kind} {i}", entry, path


def load_stage_section(sweep_dir: Path, folder: Path) -> StageSection:
    name = folder.name
    section = StageSection(sweep_dir, name, title=name)
    try:
        index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            raise ValueError("expected a JSON object")
    except (OSError, ValueError) as exc:
        section.problems.append(f"{folder / INDEX_NAME}: unreadable ({exc})")
        return section
    section.title = str(index.get("title") or name)
    for label, fig, path in _listed_files(index, folder, "figure", "path", section.problems):
        if path.stat().st_size > MAX_STAGE_FIGURE_BYTES:
            section.problems.append(f"{label}: {path.name} is larger than 20 MiB; not embedded")
            continue
        png = path.read_bytes()
        if not png.startswith(PNG_MAGIC):
            section.problems.append(f"{label}: {path.name} is not a PNG; not embedded")
            continue
        section.figures.append(StageFigure(path, str(fig.get("caption") or ""), png))
    for label, tab, path in _listed_files(index, folder, "table", "csv", section.problems):
        try:
            header, rows, truncated = _read_stage_csv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            section.problems.append(f"{label}: {path.name}: {exc}")
            continue
        columns = _column_formats(tab.get("columns"))
        section.tables.append(
            StageTable(str(tab.get("title") or path.stem), path, header, rows, truncated, columns)
        )
    section.notes = [str(n) for n in (index.get("notes") or []) if n is not None]
    section.protocol = str(index["protocol"]) if index.get("protocol") else None
    return section


def _column_formats(raw: Any) -> dict[str, dict[str, Any]]:
    """An index table's `columns` (see StageIndex.Column), keeping only well-formed entries: a stage's
    files are read, never trusted, and a bad entry only loses its formatting."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in (raw if isinstance(raw, dict) else {}).items():
        if not isinstance(spec, dict):
            continue
        label, scale, digits = spec.get("label"), spec.get("scale", 1.0), spec.get("digits")
        ok_scale = isinstance(scale, int | float) and not isinstance(scale, bool) and math.isfinite(scale)
        ok_digits = digits is None or (
            isinstance(digits, int) and not isinstance(digits, bool) and 0 <= digits <= 12
        )
        if ok_scale and ok_digits and (label is None or isinstance(label, str)):
            out[str(name)] = {"label": label, "scale": float(scale), "digits": digits}
    return out


def _stage_sort_key(name: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(name), "") if name in STAGE_ORDER else (len(STAGE_ORDER), name)


def find_stage_sections(sweep_dirs: list[Path]) -> list[StageSection]:
    out = []
    for sd in sweep_dirs:
        stages = SweepLayout(sd).stages
        if not stages.is_dir():
            continue
        folders = [p for p in stages.iterdir() if p.is_dir() and (p / INDEX_NAME).is_file()]
        for folder in sorted(folders, key=lambda p: _stage_sort_key(p.name)):
            out.append(load_stage_section(sd, folder))
    return out


def is_trial(record: RunRecord | None, plan: dict[str, Any] | None) -> bool:
    """A tuning trial (validation only, no test metrics): by its record's tags, else by its plan entry."""
    if record is not None:
        return (record.tune or {}).get("role") == "trial"
    return (plan or {}).get("role") == "trial"


def collect(path: Path, every_run: bool = False) -> ReportData:
    """Everything under `path` (a sweep folder or an output_dir of sweeps) that a report may use: the runs
    of each sweep's current plan, or with `every_run` also every other run folder there."""
    sweep_dirs = find_sweep_dirs(path)
    from archbench.store.verify import verify_run

    runs: list[RunEntry] = []
    verified = 0
    legacy: list[str] = []
    outside = 0
    for found in find_runs(path):
        run_dir, plan = found.run_dir, found.plan
        record, record_sha = _load_record(run_dir)
        if is_trial(record, plan):
            continue  # tuning trials are reported by the tuning section, never compared
        if not found.in_plan and not every_run:
            outside += 1
            continue
        entry = RunEntry(run_dir.name, sweep_of(run_dir) or run_dir, run_dir, record, plan, record_sha)
        entry.in_plan = found.in_plan
        if entry.completed and record is not None and not record.artifacts:
            # Recorded before records carried artifact hashes (as the runner, kept as they are): the
            # numbers are used, and the report says they could not be verified.
            legacy.append(run_dir.name)
        elif entry.completed and record is not None:
            verdict = verify_run(run_dir, plan, record)
            if verdict.ok:
                verified += 1
            else:
                entry.verify_problems = verdict.problems
        if entry.completed:
            entry.predictions, entry.predictions_sha256 = _load_predictions(run_dir)
        runs.append(entry)
    configs = group_configurations(runs, several_sweeps=len(sweep_dirs) > 1)
    data = ReportData(Path(path), sweep_dirs, runs, configs, find_stage_sections(sweep_dirs))
    data.outside_plan = outside
    unverified = [r for r in runs if r.verify_problems]
    if unverified:
        data.warnings.append(
            f"{len(unverified)} completed run(s) did NOT verify and are left out of every table and figure "
            "(their files or numbers changed since they were recorded): "
            + "; ".join(f"{r.run_id}: {'; '.join(r.verify_problems or [])}" for r in unverified)
        )
    if legacy:
        data.warnings.append(
            f"{len(legacy)} completed run(s) were recorded without artifact hashes (before records carried "
            "them), so their numbers are used but could NOT be verified; re-run them to verify: "
            + ", ".join(legacy)
        )
    if verified and not unverified and not legacy:
        data.successes.append(
            f"Every number in this report verified: the {verified} completed run(s) it uses match the "
            "sha256 of their checkpoints, predictions and history, and every metric recomputes from "
            "predictions.npz (archbench verify)."
        )
    for c in configs:
        by_fold = {(r.fold, r.record.data_fingerprint) for r in c.completed if r.record is not None}
        if len(by_fold) > len({fold for fold, _ in by_fold}):  # each k-fold fold has its own data
            data.warnings.append(
                f"configuration {c.label}: its runs were trained on different data (fingerprints "
                f"{', '.join(sorted({str(f)[:12] for _, f in by_fold}))}); its seeds are not comparable"
            )
        for r in c.completed:
            if r.predictions is None:
                data.warnings.append(
                    f"run {r.run_id}: predictions.npz missing or unreadable; "
                    "left out of the significance tests"
                )
    return data
