"""A run's evaluated checkpoint as an MLflow PyTorch model (`tracking.mlflow.log_models`): owns what it holds.

The model is the run's network with the checkpoint its test numbers come from (`eval.checkpoint`, best by
default), whose sha256 is checked against the record first (engine.artifacts.load_model). It is saved with
`mlflow.pytorch` in the pickle format under the run's artifact folder `model/`: a whole `nn.Module` that
takes any batch size and loads offline wherever archbench is installed
(`mlflow.pytorch.load_model("runs:/<mlflow run id>/model")`). MLflow 3's default format, 'pt2', is a traced
graph whose batch size is fixed by the example input, so it is not used. The requirements are the record's
library versions, so MLflow never infers them (inference starts a subprocess per model).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archbench.store.layout import CHECKPOINTS_DIR
from archbench.store.record import RunRecord

TAG_MODEL_SHA = "archbench.model_sha256"
MODEL_DIR = "model"
REQUIREMENTS = ("torch", "torchvision", "timm", "numpy")


def model_checkpoint_sha(record: RunRecord) -> str | None:
    """The sha256 of the checkpoint a run logs as its model: only a completed run that is not a tuning trial
    (a trial is scored on validation only); None: no model to log."""
    if record.status != "completed" or (record.tune or {}).get("role") == "trial":
        return None
    name = record.spec.eval.checkpoint
    return record.artifacts.get(f"{CHECKPOINTS_DIR}/{name}.pt") or record.checkpoint_sha256


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """MLflow warns on every pickled model; the format is chosen on purpose (see the module docstring)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def log_model(cl: Any, mlflow_run_id: str, run_dir: Path, record: RunRecord, checkpoint_sha: str) -> None:
    """Save the run's model with mlflow.pytorch and upload it as the artifact folder `model/`; the tag
    `archbench.model_sha256` (the checkpoint's sha256) then says which checkpoint it holds."""
    import inspect

    import mlflow.pytorch

    from archbench.engine.artifacts import load_model

    model = load_model(run_dir, record)  # refuses a checkpoint whose sha256 differs from the record's
    kwargs: dict[str, Any] = {}
    if "serialization_format" in inspect.signature(mlflow.pytorch.save_model).parameters:  # MLflow >= 3
        kwargs["serialization_format"] = "pickle"
    metadata = {
        "archbench_run_id": record.run_id,
        "archbench_version": str(record.code_version.get("archbench") or ""),
        "spec_hash": record.spec_hash,
        "checkpoint": record.spec.eval.checkpoint,
        "checkpoint_sha256": checkpoint_sha,
        "class_names": list(record.class_names or []),
    }
    requirements = [f"{n}=={record.libraries[n]}" for n in REQUIREMENTS if n in record.libraries]
    with tempfile.TemporaryDirectory(prefix="archbench-model-") as tmp, _quiet("mlflow.pytorch"):
        path = Path(tmp) / MODEL_DIR
        mlflow.pytorch.save_model(
            model, str(path), pip_requirements=requirements, metadata=metadata, **kwargs
        )
        cl.log_artifacts(mlflow_run_id, str(path), MODEL_DIR)
    cl.set_tag(mlflow_run_id, TAG_MODEL_SHA, checkpoint_sha)
