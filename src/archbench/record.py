"""The run record: the versioned contract between stages. Owns its schema, atomic writing and trusted reading.

Every later stage (ls, report, profile, explain, maps) reads records through `read_record`; none reads
live objects. A record is trusted only if it validates and its `spec_hash` matches its own `spec`.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import RunSpec
from .paths import atomic_write_text

SCHEMA_VERSION = 1
RECORD_NAME = "record.json"
Status = Literal["running", "completed", "failed", "killed", "pruned"]  # pruned: tuning trials


class EpochStats(BaseModel):
    model_config = ConfigDict(extra="allow")

    epoch: int
    step: int = Field(description="global optimizer-batch count at the end of this epoch")
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float


class Metrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    top1: float = Field(description="test accuracy as a fraction")
    top5: float | None = None
    loss: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    kappa: float
    per_class_accuracy: list[float | None]
    confusion_matrix: list[list[int]]
    n_test: int
    checkpoint: str = Field(description="which checkpoint was evaluated: best or last")


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    sweep: str
    status: Status
    spec: RunSpec
    spec_hash: str
    axes: dict[str, Any] = Field(default_factory=dict)
    seed: int
    failure_reason: str | None = None
    failure_detail: str | None = None
    data: dict[str, Any] | None = Field(None, description="dataset summary incl. fingerprint and class names")
    data_fingerprint: str | None = None
    class_names: list[str] | None = None
    code_version: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)
    device: dict[str, Any] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    train_seconds: float | None = None
    resumes: int = 0
    events: list[dict[str, Any]] = Field(default_factory=list)
    history: list[EpochStats] = Field(default_factory=list)
    best: dict[str, Any] | None = None
    metrics: Metrics | None = None
    params: dict[str, int] | None = None
    model_build: dict[str, Any] = Field(
        default_factory=dict,
        description="how the network was built for this run's input: a ViT's input_size, native_input_size, "
        "patch_grid, pos_embed_interpolated (empty for models that take any size)",
    )
    checkpoint_sha256: str | None = None
    artifacts: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of every file the record vouches for, by path relative to the run folder "
        "(checkpoints/best.pt, checkpoints/last.pt, predictions.npz, history.csv); `archbench verify`",
    )
    warnings: int = Field(0, description="library warnings during the run, one line each in warnings.log")
    stages: dict[str, Any] = Field(
        default_factory=dict, description="blocks added by later stages: profile, explain, map"
    )
    tune: dict[str, Any] | None = Field(
        None, description="tuning tags: role (trial | final), study, trial number, params (see tune/)"
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_record(run_dir: Path, record: RunRecord) -> None:
    from . import faults

    text = record.model_dump_json(indent=2)
    if record.status == "completed" and faults.active("kill@record_write"):
        # Leave half a temp file behind, then die: the canonical record must stay absent or complete.
        (run_dir / f".{RECORD_NAME}.tmp-{os.getpid()}").write_text(text[: len(text) // 2])
        faults.die()
    atomic_write_text(run_dir / RECORD_NAME, text)


def read_record(run_dir: Path) -> RunRecord | None:
    """The run's record if it exists, validates, and its spec hash is its own; otherwise None."""
    path = run_dir / RECORD_NAME
    try:
        raw = path.read_text(encoding="utf-8")
        rec = RunRecord.model_validate(json.loads(raw))
    except (OSError, ValueError, ValidationError):
        return None
    from .sweep import spec_hash

    if rec.schema_version != SCHEMA_VERSION or rec.spec_hash != spec_hash(rec.spec):
        return None
    return rec


def is_completed(run_dir: Path, expected_hash: str | None = None) -> bool:
    rec = read_record(run_dir)
    if rec is None or rec.status != "completed":
        return False
    return expected_hash is None or rec.spec_hash == expected_hash


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def code_version() -> dict[str, Any]:
    from . import __version__

    return {"archbench": __version__, "git_commit": git_commit()}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "timm", "numpy", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def host_info() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
