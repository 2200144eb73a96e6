"""Service heads trained by the real code (``training.heads``) for the single-row and leaf-table tests:
categorical context, NaNs, early stopping, an uplift, and a presale head stacked on a rating booster."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.contract import CATEGORIES, REFUND_KINDS, REFUND_REASONS
from rating.heads import ServiceHead
from training.heads import add_uplift, context_matrix, fit_base
from training.opportunities import FAST_REFUND, PRESALE

SIGNALS = [f"s{i}" for i in range(12)]
ROWS = 400  # rows compared per head
STACKED = "stacked presale"  # the ``heads`` key of the presale head boosted from a rating's margin


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


@pytest.fixture(scope="session")
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
            rating_rows = _opportunities(service, 6000, 4)
            rating = lgb.train(
                {"objective": "binary", "verbose": -1, "num_leaves": 7, "num_threads": 1},
                lgb.Dataset(rating_rows[SIGNALS].to_numpy(), rating_rows["bad"]),
                25,
            )
            out[STACKED] = fit_base(service, train, valid, SIGNALS, seed=0, prior=rating, prior_weight=None)
            out[STACKED].uplift = (0.4, 0.0)  # a constant shift, as training fits today
        out[service] = head
    return out


@pytest.fixture(scope="session")
def head_rows():
    """``rows(head, seed)``: ``ROWS`` signal rows (with NaNs) and their context (some missing) for ``head``."""
    return _rows


def _rows(head: ServiceHead, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rows = _opportunities(head.service, ROWS, seed)
    ctx = context_matrix(head.service, rows)
    ctx[::7, -1] = np.nan  # missing context values too
    return rows[SIGNALS].to_numpy(np.float64), ctx
