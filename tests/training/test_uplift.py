"""The presale uplift's fit (``training.heads.add_uplift``): linear, or flat below a knot."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.contract import CATEGORIES
from rating.context import PRESALE_CONTEXT, TREATMENT
from rating.heads import UPLIFT, ServiceHead
from training.heads import add_shift, add_uplift, context_matrix
from training.opportunities import PRESALE

SIGNALS = ["s0", "s1", "s2"]
N = 40_000


def _booster(X: np.ndarray, y: np.ndarray, rounds: int) -> lgb.Booster:
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "num_threads": 1, "seed": 0}
    return lgb.train(params, lgb.Dataset(X, y), rounds)


@pytest.fixture(scope="module")
def world():
    """Shipped-early presales whose true uplift is 1.0 below the proxy's median and rises 1.5 per unit
    above it (shipping early never lowers a buyer's risk), a base head and the proxy."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, len(SIGNALS)))
    rows = pd.DataFrame(X, columns=SIGNALS)
    rows["amount"] = rng.uniform(10, 3000, N)
    rows["deposit"] = rows["amount"] * 0.1
    rows["category"] = rng.choice(CATEGORIES, N)
    rows["due_in_days"] = rng.uniform(1, 30, N)
    rows["shipped"] = True
    rows["vip_last"] = 0.0  # no buyer the legacy rule ships: every row was explored
    rows["credit_score_last"] = 650.0
    proxy = _booster(X, (rng.random(N) < 1 / (1 + np.exp(-(2 * X[:, 1] - 2)))).astype(int), 40)
    ctx = context_matrix(PRESALE, rows)
    base = _booster(np.hstack([X, ctx]), (rng.random(N) < 1 / (1 + np.exp(-(X[:, 0] - 3.5)))).astype(int), 20)
    head = ServiceHead(PRESALE, list(SIGNALS), list(PRESALE_CONTEXT), base, treatment=TREATMENT)
    z = proxy.predict(X, raw_score=True)
    knot = float(np.median(z))
    truth = 1.0 + 1.5 * np.maximum(z - knot, 0.0)
    logit = head.logit(X, ctx) + truth
    rows["bad"] = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(int)
    return head, proxy, rows, z, truth


def _fitted(world, quantile, rows=None, fitted_on="explored"):
    head, proxy, own, _, _ = world
    fresh = ServiceHead(
        head.service, head.signal_names, head.context_names, head.base, treatment=head.treatment
    )
    return add_uplift(fresh, proxy, own if rows is None else rows, quantile, fitted_on)


def test_a_knot_at_the_median_recovers_a_flat_uplift_below_it(world):
    _, _, rows, z, truth = world
    fitted = _fitted(world, 0.5)
    assert fitted.knot == pytest.approx(np.median(z))
    low = z <= np.quantile(z, 0.1)  # the buyers a policy that prices shipping early cheaply would pick
    got = fitted.uplift_of(z)
    assert abs(got[low].mean() - truth[low].mean()) < 0.25
    assert abs(got[~low].mean() - truth[~low].mean()) < 0.25


def test_the_linear_uplift_under_prices_the_low_proxy_buyers_the_knot_prices(world):
    _, _, _, z, truth = world
    linear, knotted = _fitted(world, None), _fitted(world, 0.5)
    assert linear.knot is None
    low = z <= np.quantile(z, 0.1)
    # the straight line through a hinge runs below its flat part at the low end
    assert linear.uplift_of(z)[low].mean() < truth[low].mean() - 0.3
    assert knotted.uplift_of(z)[low].mean() > linear.uplift_of(z)[low].mean() + 0.3


def test_a_knot_above_every_proxy_fits_the_shift_only(world):
    fitted = _fitted(world, 1.0)
    assert fitted.uplift[1] == 0.0
    assert 0.8 < fitted.uplift[0] < 2.5  # the shift: about the mean true uplift


def test_the_legacy_rules_own_shipped_presales_are_left_out_of_the_fit(world):
    """Presales the legacy rule shipped (VIP, score >= 700) carry no moral hazard the base did not
    learn from; here 5,000 of them, never defaulting, at the proxy's low end: fitted on every
    shipped presale they drag the uplift down, fitted on the explored ones they change nothing."""
    head, _, rows, z, truth = world
    low = rows[z <= np.quantile(z, 0.2)].sample(5000, replace=True, random_state=1)
    ruled = low.assign(vip_last=1.0, credit_score_last=750.0, bad=0)
    both = pd.concat([rows, ruled], ignore_index=True)
    alone = _fitted(world, 0.5)
    explored = _fitted(world, 0.5, both)
    everything = _fitted(world, 0.5, both, fitted_on="shipped")
    assert explored.uplift == pytest.approx(alone.uplift) and explored.knot == pytest.approx(alone.knot)
    lowest = z <= np.quantile(z, 0.1)
    assert everything.uplift_of(z)[lowest].mean() < explored.uplift_of(z)[lowest].mean() - 0.25
    with pytest.raises(ValueError, match="fitted_on"):
        _fitted(world, 0.5, fitted_on="all")


@pytest.fixture(scope="module")
def shifted(world):
    """The world's presales relabelled with a constant shift of 0.8 when shipped early; a legacy-rule
    shipped third (VIP, bureau 750) whose defaults carry no shift at all."""
    head, _, rows, _, _ = world
    rng = np.random.default_rng(1)
    rows = rows.copy()
    rule = rng.random(len(rows)) < 1 / 3
    rows.loc[rule, "vip_last"], rows.loc[rule, "credit_score_last"] = 1.0, 750.0
    logit = head.logit(rows[SIGNALS].to_numpy(), context_matrix(PRESALE, rows)) + np.where(rule, -5.0, 0.8)
    rows["bad"] = (rng.random(len(rows)) < 1 / (1 + np.exp(-logit))).astype(int)
    return head, rows


def test_the_shift_is_fitted_on_the_explored_presales_alone_and_prices_every_path_alike(shifted):
    head, rows = shifted
    fresh = ServiceHead(
        head.service, head.signal_names, head.context_names, head.base, treatment=head.treatment
    )
    fitted = add_shift(fresh, rows)
    a, b = fitted.uplift
    assert a == pytest.approx(0.8, abs=0.1) and b == 0.0  # the rule's third (no shift) did not pull it down
    assert fitted.proxy is None and fitted.knot is None
    assert fitted.metrics["uplift_rows"] == pytest.approx((rows["vip_last"] == 0).sum())
    X, ctx = rows[SIGNALS].to_numpy()[:50], context_matrix(PRESALE, rows.iloc[:50])
    np.testing.assert_allclose(fitted.logit(X, ctx), head.logit(X, ctx) + a)
    one = {
        "amount": 100.0,
        "deposit": 10.0,
        "category": CATEGORIES[0],
        "due_in_days": 10.0,
        "shipped_early": 1.0,
    }
    risk = fitted.risk(X[0], one, k=4)
    assert risk.p_loss == pytest.approx(fitted.risk(X[0], one, k=0).p_loss, rel=1e-9)
    assert all(r.code != UPLIFT for r in risk.reasons)  # the same for every presale: nobody's reason


def test_without_a_default_among_the_explored_presales_the_shift_stays_zero(shifted):
    head, rows = shifted
    quiet = rows.assign(bad=0)
    fresh = ServiceHead(
        head.service, head.signal_names, head.context_names, head.base, treatment=head.treatment
    )
    assert add_shift(fresh, quiet).uplift == (0.0, 0.0)
