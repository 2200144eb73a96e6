"""Package a ``RatingModel`` as an MLflow pyfunc: booster artifact, code, signature, input example."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

import features
import rating
from rating.artifact import BOOSTER_ARTIFACT, RatingModel, save_booster

MODEL_REQUIREMENTS = ("mlflow", "cloudpickle", "lightgbm", "numpy", "pandas", "pyarrow")
"""What loading and scoring the pyfunc imports (``rating`` and ``features`` travel as code paths).
Declared, not inferred: MLflow's inference loaded the model in a subprocess (3 s of every run) and
listed ``buyer-trust`` (this project, on no index), rich and psutil, but not lightgbm."""


def model_requirements() -> list[str]:
    """``MODEL_REQUIREMENTS`` pinned to the versions installed here (those the model was trained with)."""
    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]


@contextmanager
def pyfunc_kwargs(model: RatingModel, example: np.ndarray) -> Iterator[dict]:
    """Keyword arguments for ``mlflow.pyfunc.log_model``/``save_model`` (valid inside the block).

    Args:
        model: The fitted rating (its booster is written to a temporary text file).
        example: A few rows of the signal matrix, used for the signature and input example.
    """
    frame = pd.DataFrame(np.asarray(example, dtype=np.float32), columns=model.signal_names)
    output = model.predict(None, frame)
    with tempfile.TemporaryDirectory() as tmp:
        yield {
            "python_model": model,
            "artifacts": {BOOSTER_ARTIFACT: str(save_booster(model.booster, Path(tmp)))},
            "code_paths": [str(Path(rating.__file__).parent), str(Path(features.__file__).parent)],
            "signature": infer_signature(frame, output),
            "input_example": frame,
            "pip_requirements": model_requirements(),
        }


def save_rating(model: RatingModel, path: Path, example: np.ndarray) -> str:
    """Save the rating as a pyfunc model directory at ``path``; returns its URI."""
    with pyfunc_kwargs(model, example) as kwargs:
        mlflow.pyfunc.save_model(path=str(path), **kwargs)
    return str(path)


def log_rating(model: RatingModel, example: np.ndarray, registered_model_name: str | None = None):
    """Log the rating to the active run (and register it when a name is given); returns ModelInfo."""
    with pyfunc_kwargs(model, example) as kwargs:
        return mlflow.pyfunc.log_model(name="rating", registered_model_name=registered_model_name, **kwargs)
