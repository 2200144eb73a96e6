"""MLflow tracking set-up: where runs and artifacts go."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
SQLITE_PREFIX = "sqlite:///"


def _sqlite_artifact_dir(uri: str) -> Path | None:
    """For a SQLite store, ``artifacts/`` beside the database file; None for other stores."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri[len(SQLITE_PREFIX) :]).parent / "artifacts"


def configure_tracking() -> str:
    """Use ``MLFLOW_TRACKING_URI`` when set, else the local SQLite store under ``mlruns/``; returns the URI.

    A SQLite store keeps its artifacts in ``artifacts/`` beside the database (created here).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    artifacts = _sqlite_artifact_dir(uri)
    if artifacts is not None:
        artifacts.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``; a new one on a SQLite store keeps artifacts beside the database."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = _sqlite_artifact_dir(mlflow.get_tracking_uri())
    location = (artifacts.resolve() / name).as_uri() if artifacts is not None else None
    return mlflow.create_experiment(name, artifact_location=location)
