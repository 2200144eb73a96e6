"""A presale base boosted from the rating's margin (``training.heads.fit_base`` with a ``prior``)."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.contract import CATEGORIES
from training.heads import context_matrix, fit_base, prior_line
from training.opportunities import PRESALE

SIGNALS = [f"s{i}" for i in range(6)]


def _presales(rng: np.random.Generator, n: int, margin_of) -> pd.DataFrame:
    """Presales whose log-odds of default are ``margin_of(signals) - 2.5`` plus 0.8 for appliances."""
    X = rng.normal(size=(n, len(SIGNALS)))
    rows = pd.DataFrame(X, columns=SIGNALS)
    rows["amount"] = rng.uniform(10, 3000, n)
    rows["deposit"] = rows["amount"] * 0.1
    rows["category"] = rng.choice(CATEGORIES, n)
    rows["due_in_days"] = rng.uniform(1, 30, n)
    rows["shipped"] = rng.random(n) < 0.3
    logit = margin_of(X) - 2.5 + 0.8 * (rows["category"] == "appliances").to_numpy()
    rows["bad"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return rows


@pytest.fixture(scope="module")
def world():
    """A rating learnt on many buyer rows, and few presales whose risk is that rating's plus the category's."""
    rng = np.random.default_rng(3)

    def margin_of(X):
        return 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.6 * np.maximum(X[:, 2], 0) + 0.5 * X[:, 3] * X[:, 4]

    X = rng.normal(size=(60_000, len(SIGNALS)))
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-(margin_of(X) - 3.0)))).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "num_threads": 1, "seed": 0}
    rating = lgb.train(params, lgb.Dataset(X, y), 150)
    return rating, {
        w: _presales(rng, n, margin_of) for w, n in (("train", 3000), ("valid", 2000), ("test", 20_000))
    }


def test_the_base_boosts_from_the_margin_and_the_head_adds_it_back(world):
    rating, rows = world
    head = fit_base(PRESALE, rows["train"], rows["valid"], SIGNALS, seed=0, prior=rating)
    c, w = head.prior_line
    assert w == 1.0  # the default: the rating's margin as it is, moved to the presale rate by c
    margin = rating.predict(rows["train"][SIGNALS].to_numpy(), raw_score=True)
    assert c == pytest.approx(prior_line(margin, rows["train"])[0])
    test = rows["test"]
    signals, ctx = test[SIGNALS].to_numpy(), context_matrix(PRESALE, test)
    own = head.base.predict(head.inputs(signals, ctx), raw_score=True)
    np.testing.assert_allclose(
        head.logit(signals, ctx), own + c + w * rating.predict(signals, raw_score=True), rtol=0, atol=1e-12
    )


def test_boosting_from_the_rating_learns_more_from_few_presales(world):
    """3,000 presales: the base alone learns the buyer's risk from them; boosted from the rating it
    learns only what the presale adds (the category), and prices unseen presales better."""
    rating, rows = world
    test = rows["test"]
    signals, ctx, y = test[SIGNALS].to_numpy(), context_matrix(PRESALE, test), test["bad"].to_numpy()

    def log_loss(head):
        p = np.clip(head.probability(signals, ctx), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    alone = fit_base(PRESALE, rows["train"], rows["valid"], SIGNALS, seed=0)
    stacked = fit_base(PRESALE, rows["train"], rows["valid"], SIGNALS, seed=0, prior=rating)
    assert alone.prior is None
    assert log_loss(stacked) < log_loss(alone) - 0.005


def test_the_prior_line_fits_w_when_asked_and_stays_put_without_both_outcomes():
    rng = np.random.default_rng(5)
    margin = rng.normal(size=50_000)
    rows = pd.DataFrame({"bad": (rng.random(50_000) < 1 / (1 + np.exp(-(0.6 * margin - 2.0)))).astype(int)})
    c, w = prior_line(margin, rows, weight=None)
    assert c == pytest.approx(-2.0, abs=0.06) and w == pytest.approx(0.6, abs=0.05)
    c1, w1 = prior_line(margin, rows)
    assert w1 == 1.0 and c1 != c  # w held at 1, c refitted for it
    assert prior_line(margin, rows.assign(bad=0), weight=None) == (0.0, 1.0)
