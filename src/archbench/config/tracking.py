"""`tracking:` in a sweep file (MLflow): where runs are mirrored. Not part of any run's identity."""

from __future__ import annotations

from pydantic import Field

from archbench.config.base import _Strict


class MlflowSpec(_Strict):
    """`tracking.mlflow`: mirror every run into MLflow (the local record stays the truth)."""

    uri: str = Field(
        ..., min_length=1, description="tracking URI: http://host:5000 or sqlite:///path/mlflow.db"
    )
    experiment: str | None = Field(None, description="MLflow experiment; null: the sweep's name")
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="the most a run waits for MLflow when it ends; the rest goes to the outbox",
    )
    log_models: bool = Field(
        False, description="also log each completed run's evaluated checkpoint as an MLflow PyTorch model"
    )


class TrackingSpec(_Strict):
    """`tracking:` in a sweep file. Not part of any run's identity."""

    mlflow: MlflowSpec | None = Field(None, description="mirror every run into MLflow; null: no tracking")
