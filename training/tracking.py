"""MLflow tracking set-up: where runs and artifacts go."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_DIR = Path("mlruns") / "artifacts"


def configure_tracking() -> str:
    """Use ``MLFLOW_TRACKING_URI`` when set, else the local SQLite store under ``mlruns/``; returns the URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri == DEFAULT_TRACKING_URI:
        DEFAULT_ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created with artifacts under ``mlruns/artifacts`` for a local store."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if mlflow.get_tracking_uri() == DEFAULT_TRACKING_URI:
        location = (DEFAULT_ARTIFACT_DIR.resolve() / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)
