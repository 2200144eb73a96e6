"""Calibration and the lookup-table reasons."""

import numpy as np
import pytest

from rating.calibrate import Calibration, fit_platt, newton_logistic
from rating.reasons import fit_reason_table, top_k, top_reasons


def test_platt_recovers_a_known_miscalibration():
    rng = np.random.default_rng(0)
    raw = rng.normal(-3, 1.5, 200_000)
    y = rng.random(raw.size) < 1 / (1 + np.exp(-(0.5 * raw - 1.0)))
    cal = fit_platt(raw, y.astype(float))
    assert cal.slope == pytest.approx(0.5, abs=0.03)
    assert cal.intercept == pytest.approx(-1.0, abs=0.1)


def test_platt_needs_both_outcomes_and_positive_slope():
    with pytest.raises(ValueError, match="both outcomes"):
        fit_platt(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="slope"):
        Calibration(slope=-1.0)


def test_newton_logistic_converges_from_an_offset_far_below_the_rate():
    """A pure Newton step from an offset that prices the rows at 1% when 60% are bad overshoots and
    diverges; the halved steps reach the maximum likelihood (here the intercept is the log-odds gap)."""
    rng = np.random.default_rng(0)
    n = 5000
    offset = np.full(n, np.log(0.01 / 0.99))
    y = (rng.random(n) < 0.6).astype(float)
    (a,) = newton_logistic(np.ones((n, 1)), y, offset=offset)
    rate = y.mean()
    assert a == pytest.approx(np.log(rate / (1 - rate)) - offset[0], abs=1e-6)


def test_reason_table_reproduces_additive_contributions():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5000, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    contrib = np.column_stack(
        [np.nan_to_num(X[:, 0], nan=-5.0), 0.1 * np.nan_to_num(X[:, 1]), np.zeros(5000)]
    )
    table = fit_reason_table(X, contrib, n_bins=32)
    approx = table.contributions(X)
    present = ~np.isnan(X[:, 0])
    assert np.corrcoef(approx[present, 0], contrib[present, 0])[0, 1] > 0.99
    assert approx[~present, 0] == pytest.approx(-5.0)
    assert np.abs(approx[:, 2]).max() == 0


def test_top_reasons_keep_only_risk_raising_signals_in_order():
    reasons = top_reasons(np.array([0.1, -0.5, 0.7, 0.0, 0.3]), list("abcde"), {"c": "text c"}, k=4)
    assert [r.code for r in reasons] == ["c", "e", "a"]
    assert reasons[0].text == "text c" and reasons[1].text == "e"


def test_top_reasons_of_one_row_rank_as_top_k_ties_and_never_included():
    rng = np.random.default_rng(5)
    for _ in range(2000):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 6))
        c = rng.normal(size=n).round(int(rng.integers(0, 2)))  # rounded: many ties
        c[rng.random(n) < 0.3] = -np.inf  # never a reason
        names = [f"s{j}" for j in range(n)]
        index, _ = top_k(c[None, :], k)
        expected = [names[j] for j in index[0].tolist() if j >= 0]
        assert [r.code for r in top_reasons(c, names, {}, k)] == expected
