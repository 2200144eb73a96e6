"""The single-row fast path gives what ``Booster.predict`` gives, on heads trained by the real code."""

import json
import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.contract import CATEGORIES, REFUND_KINDS, REFUND_REASONS
from rating.heads import UPLIFT, ServiceHead
from rating.single_row import SingleRowPredictor
from training.heads import add_uplift, context_matrix, fit_base
from training.opportunities import FAST_REFUND, PRESALE

SIGNALS = [f"s{i}" for i in range(12)]
ROWS = 400  # rows compared per head


def _opportunities(service: str, n: int, seed: int) -> pd.DataFrame:
    """Synthetic opportunities: signals with NaNs, the raw context columns and a label."""
    rng = np.random.default_rng(seed)
    X = rng.gamma(1.0, 1.0, size=(n, len(SIGNALS)))
    X[rng.random(X.shape) < 0.25] = np.nan
    frame = pd.DataFrame(X, columns=SIGNALS)
    amount = rng.uniform(10, 5000, n).round(2)
    frame["amount"] = amount
    frame["category"] = rng.choice([*CATEGORIES, "unknown"], n)  # unknown: code -1, missing for LightGBM
    if service == PRESALE:
        frame["deposit"] = (amount * rng.uniform(0.05, 0.3, n)).round(2)
        frame["due_in_days"] = rng.uniform(1, 40, n)
        frame["shipped"] = rng.random(n) < 0.4
    else:
        frame["order_amount"] = amount * rng.uniform(1.0, 3.0, n)
        frame["kind"] = rng.choice(REFUND_KINDS, n)
        frame["reason"] = rng.choice(REFUND_REASONS, n)
        frame["photos"] = rng.integers(0, 4, n)
        frame["order_age_days"] = rng.uniform(0, 60, n)
    category = frame["category"].map({c: i for i, c in enumerate(CATEGORIES)}).fillna(3).to_numpy()
    logit = 0.6 * np.nan_to_num(X[:, 0], nan=2.0) + 0.4 * (category % 3) + np.log(amount) / 3 - 4.0
    frame["bad"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture(scope="module")
def heads() -> dict[str, ServiceHead]:
    """A presale head (categorical context, early stopping, uplift) and a refund head, via training.heads."""
    out = {}
    for service in (PRESALE, FAST_REFUND):
        train, valid = _opportunities(service, 6000, 1), _opportunities(service, 3000, 2)
        head = fit_base(service, train, valid, SIGNALS, seed=0)
        if service == PRESALE:
            proxy_rows = _opportunities(service, 3000, 3)
            proxy = lgb.train(
                {"objective": "binary", "verbose": -1, "num_leaves": 7, "num_threads": 1},
                lgb.Dataset(proxy_rows[SIGNALS].to_numpy(), proxy_rows["bad"]),
                20,
            )
            head = add_uplift(head, proxy, valid, fitted_on="shipped")  # no legacy rule's signals here
        out[service] = head
    return out


def _rows(head: ServiceHead, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rows = _opportunities(head.service, ROWS, seed)
    ctx = context_matrix(head.service, rows)
    ctx[::7, -1] = np.nan  # missing context values too
    return rows[SIGNALS].to_numpy(np.float64), ctx


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_heads_use_categorical_context_and_missing_values(heads, service):
    base = heads[service].base
    names = base.feature_name()
    used = {names[i] for i, gain in enumerate(base.feature_importance("split")) if gain > 0}
    assert "ctx_category" in used
    assert '"decision_type": "=="' in json.dumps(base.dump_model())  # categorical splits


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_raw_and_contributions_equal_booster_predict(heads, service):
    head = heads[service]
    signals, ctx = _rows(head, 10)
    X = head.inputs(signals, ctx)
    assert np.isnan(X).any()
    raw = SingleRowPredictor(head.base, "raw")
    contrib = SingleRowPredictor(head.base, "contrib")
    expected_raw = head.base.predict(X, raw_score=True)
    expected_contrib = head.base.predict(X, pred_contrib=True)
    got_raw = np.array([raw(x)[0] for x in X])
    got_contrib = np.stack([contrib(x) for x in X])
    np.testing.assert_allclose(got_raw, expected_raw, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_contrib, expected_contrib, rtol=0, atol=1e-9)


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_head_one_row_equals_the_batch_path(heads, service):
    """``explain`` and ``row_logit`` (fast path) against ``logit`` and ``pred_contrib`` (Booster.predict),
    also after a pickle round trip (the C predictors are not pickled and are rebuilt)."""
    head = heads[service]
    signals, ctx = _rows(head, 11)
    batch = head.logit(signals, ctx)
    contrib = head.base.predict(head.inputs(signals, ctx), pred_contrib=True)
    uplift = head.uplift_logit(signals)
    for copy in (head, pickle.loads(pickle.dumps(head))):
        for i in range(0, ROWS, 3):
            logit, c, names = copy.explain(signals[i], ctx[i])
            assert logit == pytest.approx(batch[i], abs=1e-9)
            assert copy.row_logit(signals[i], ctx[i]) == pytest.approx(batch[i], abs=1e-9)
            expected = contrib[i, :-1].copy()
            if head.treatment is not None:
                expected[head.context_names.index(head.treatment) + len(SIGNALS)] = 0.0
            if uplift is not None:
                expected = np.append(expected, uplift[i])
                assert names[-1] == UPLIFT
            np.testing.assert_allclose(c, expected, rtol=0, atol=1e-9)
    assert "_one_row" in head.__dict__ and "_one_row" not in head.__getstate__()


def test_predictor_checks_its_input(heads):
    head = heads[FAST_REFUND]
    with pytest.raises(ValueError, match="kind"):
        SingleRowPredictor(head.base, "leaf")
    with pytest.raises(ValueError, match="row: has 3 values"):
        SingleRowPredictor(head.base, "raw")(np.zeros(3))
