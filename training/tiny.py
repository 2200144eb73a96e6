"""A small but real rating model on synthetic data, for tests of the packages that consume it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rating.artifact import RatingModel
from training.model import DEFAULT_PARAMS, Dataset, fit_rating
from training.package import save_rating


def synthetic_dataset(signal_names: list[str], n: int, seed: int) -> Dataset:
    """Rows whose risk rises with the first half of the signals and falls with the rest."""
    rng = np.random.default_rng(seed)
    k = len(signal_names)
    X = rng.gamma(1.0, 1.0, size=(n, k)).astype(np.float32)
    X[rng.random((n, k)) < 0.05] = np.nan
    weights = np.where(np.arange(k) < k // 2, 0.6, -0.4) / np.sqrt(k / 4)
    logit = np.nan_to_num(X, nan=1.0) @ weights - 3.2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return Dataset(X=X, y=y)


def make_tiny_rating(signal_names: list[str], seed: int = 0, n: int = 20000) -> RatingModel:
    """Fit a real ``RatingModel`` on synthetic data over ``signal_names`` (a few seconds)."""
    train = synthetic_dataset(signal_names, n, seed)
    valid = synthetic_dataset(signal_names, n // 2, seed + 1)
    k = len(signal_names)
    monotone = [1 if j < k // 2 else -1 for j in range(k)]
    params = {**DEFAULT_PARAMS, "num_boost_round": 60, "early_stopping_rounds": 10, "min_data_in_leaf": 50}
    texts = {name: f"Reason text for {name}" for name in signal_names}
    return fit_rating(train, valid, signal_names, texts, monotone, params, seed=seed)


def save_tiny_rating(path: Path, signal_names: list[str], seed: int = 0) -> str:
    """Fit and save a tiny rating as an MLflow pyfunc directory; returns a URI ``load_rating`` accepts."""
    model = make_tiny_rating(signal_names, seed)
    example = synthetic_dataset(signal_names, 5, seed + 2).X
    return save_rating(model, Path(path), example)
