"""Exact TreeSHAP from per-leaf tables (``rating.path_shap``) equals LightGBM's ``pred_contrib``."""

import lightgbm as lgb
import numpy as np
import pytest

from rating.path_shap import path_shap
from tests.rating.conftest import STACKED
from training.opportunities import FAST_REFUND, PRESALE


def _assert_treeshap(booster: lgb.Booster, X: np.ndarray) -> None:
    table = path_shap(booster)
    expected = booster.predict(X, pred_contrib=True)
    got = np.stack([table.contributions(x) for x in X])
    np.testing.assert_allclose(got, expected[:, :-1], rtol=0, atol=1e-9)
    assert table.bias == pytest.approx(expected[0, -1], abs=1e-9)


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_heads_trained_by_the_real_code(heads, head_rows, service):
    """Categorical context (with unknown categories), NaNs and early stopping."""
    head = heads[service]
    X = head.inputs(*head_rows(head, 30))
    assert np.isnan(X).any()
    _assert_treeshap(head.base, X)


def test_the_trees_predict_walks(heads, head_rows):
    head = heads[FAST_REFUND]
    booster = lgb.Booster(model_str=head.base.model_to_string())
    booster.best_iteration = booster.current_iteration() // 2
    _assert_treeshap(booster, head.inputs(*head_rows(head, 31)))


@pytest.mark.parametrize(
    "params",
    [
        {"zero_as_missing": True},  # missing type Zero: 0 and NaN go the default way
        {"use_missing": False},  # missing type None: NaN is 0
        {},  # missing type NaN where the training data had NaNs
    ],
)
def test_every_missing_value_rule(params):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[rng.random(X.shape) < 0.2] = 0.0
    y = (rng.random(3000) < 1 / (1 + np.exp(-np.nan_to_num(X[:, 0] + X[:, 1] * X[:, 2])))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 15, "num_threads": 1, **params},
        lgb.Dataset(X, y),
        30,
    )
    rows = X[:300].copy()
    rows[::11] = 0.0
    rows[::13] = np.nan
    _assert_treeshap(booster, rows)


def test_categories_as_lightgbm_casts_them():
    """A category is the value truncated to an integer: -0.5 is 0, -1 and unseen ones go right, and
    NaN as the split's missing type says."""
    rng = np.random.default_rng(1)
    n = 4000
    X = np.column_stack([rng.integers(0, 12, n).astype(float), rng.normal(size=n)])
    X[rng.random(n) < 0.1, 0] = np.nan
    y = (rng.random(n) < np.where(np.isin(X[:, 0], [1, 4, 7, 9]), 0.7, 0.2)).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "num_threads": 1, "min_data_per_group": 5},
        lgb.Dataset(X, y, categorical_feature=[0]),
        20,
    )
    rows = np.column_stack([[-0.5, -1.0, 2.7, 4.0, 999.0, np.nan, 0.0, 9.99, 11.0, 1.0], rng.normal(size=10)])
    _assert_treeshap(booster, rows)


def test_a_tree_of_one_leaf_only_adds_to_the_bias():
    X = np.random.default_rng(2).normal(size=(500, 3))
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "min_data_in_leaf": 1000}, lgb.Dataset(X, X[:, 0]), 3
    )
    table = path_shap(booster)
    assert np.all(table.contributions(X[0]) == 0) and table.bias == pytest.approx(booster.predict(X[:1])[0])


def test_a_row_of_the_wrong_width_is_named(heads):
    table = path_shap(heads[PRESALE].base)
    with pytest.raises(ValueError, match="x: has 3 values, the booster expects"):
        table.contributions(np.zeros(3))


def test_one_table_holds_a_scaled_booster_over_the_first_inputs(heads, head_rows):
    """A stacked head's base and its rating (over the signals, the base's first inputs) in one table:
    each input's credit is the base's plus the factor times the rating's, and so is the bias."""
    head = heads[STACKED]
    X = head.inputs(*head_rows(head, 31))
    n = len(head.signal_names)
    table = path_shap(head.base, ((head.prior, 0.7),))
    base, prior = head.base.predict(X, pred_contrib=True), head.prior.predict(X[:, :n], pred_contrib=True)
    expected = base[:, :-1].copy()
    expected[:, :n] += 0.7 * prior[:, :-1]
    np.testing.assert_allclose(np.stack([table.contributions(x) for x in X]), expected, rtol=0, atol=1e-9)
    assert table.bias == pytest.approx(base[0, -1] + 0.7 * prior[0, -1], abs=1e-9)
    with pytest.raises(ValueError, match="scaled: a booster reads"):
        path_shap(head.prior, ((head.base, 1.0),))
