"""``training.model.seed_free``: when a retrain with another seed gives the same booster, so the reason
stability twin reuses it instead of fitting it again."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from training.model import DEFAULT_PARAMS, seed_free


def _fit(params: dict, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    lgb_params = {k: v for k, v in params.items() if k not in ("num_boost_round", "early_stopping_rounds")}
    booster = lgb.train(lgb_params | {"min_data_in_leaf": 20}, lgb.Dataset(X, y), num_boost_round=30)
    return booster.predict(X, raw_score=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 8))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=3000) > 0.5).astype(float)
    return X, y


def test_the_default_learner_is_seed_free_and_a_retrain_gives_the_same_booster(data):
    X, y = data
    assert seed_free(DEFAULT_PARAMS, len(X))
    a = _fit({**DEFAULT_PARAMS, "seed": 7}, X, y)
    b = _fit({**DEFAULT_PARAMS, "seed": 8}, X, y)
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "change",
    [
        {"feature_fraction": 0.5},
        {"bagging_fraction": 0.8, "bagging_freq": 1},
        {"extra_trees": True},
        {"deterministic": False},
    ],
)
def test_sampling_makes_the_seed_matter(data, change):
    X, y = data
    assert not seed_free({**DEFAULT_PARAMS, **change}, len(X))
    if "deterministic" not in change:  # and the booster does move with it
        a = _fit({**DEFAULT_PARAMS, **change, "seed": 7}, X, y)
        b = _fit({**DEFAULT_PARAMS, **change, "seed": 8}, X, y)
        assert not np.array_equal(a, b)


def test_more_rows_than_the_bin_sample_makes_the_seed_matter():
    assert seed_free(DEFAULT_PARAMS, 200_000)
    assert not seed_free(DEFAULT_PARAMS, 200_001)
    assert seed_free({**DEFAULT_PARAMS, "bin_construct_sample_cnt": 10**6}, 200_001)
