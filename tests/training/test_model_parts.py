"""Star cut-points, the promotion gate, the scorecard, evaluation metrics and monotone checks."""

import numpy as np
import pandas as pd
import pytest

from features.build import make_spine
from training.evaluate import (
    approval_curve,
    compare_at_rule_rate,
    ks_statistic,
    psi,
    star_table,
    stars_monotone,
)
from training.model import StarCutError, checked_monotone, star_cuts
from training.promote import gate
from training.scorecard import WoEScorecard
from training.snapshots import default_split, month_starts


def risky_scores(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    score = rng.normal(600, 60, n)
    p = 1 / (1 + np.exp((score - 500) / 40))
    return np.rint(score), (rng.random(n) < p).astype(int)


def test_star_cuts_give_the_planned_shares_and_falling_bad_rates():
    score, y = risky_scores()
    cuts = star_cuts(score, y)
    stars = 1 + np.searchsorted(np.asarray(cuts), score, side="right")
    shares = np.bincount(stars, minlength=6)[1:] / len(score)
    assert shares == pytest.approx([0.05, 0.15, 0.30, 0.30, 0.20], abs=0.01)


def test_star_cuts_refuse_a_score_that_does_not_rank():
    score, _ = risky_scores()
    y = np.random.default_rng(3).integers(0, 2, len(score))
    with pytest.raises(StarCutError, match="strictly fall"):
        star_cuts(score, y)


def test_star_table_and_monotonicity():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    star = np.array([1, 1, 1, 2, 2, 3, 3, 4, 5, 5])
    table = star_table(y, star)
    assert table["rows"].tolist() == [3, 2, 2, 1, 2]
    assert not stars_monotone(table)  # stars 3, 4 and 5 all have a bad rate of 0


@pytest.mark.parametrize(
    "mode, new_auc, monotone, champ_auc, expected",
    [
        ("auto", 0.80, True, None, True),
        ("auto", 0.80, True, 0.81, False),
        ("auto", 0.82, True, 0.81, True),
        ("auto", 0.90, False, 0.81, False),
        ("never", 0.99, True, None, False),
        ("force", 0.50, False, 0.90, True),
    ],
)
def test_gate(mode, new_auc, monotone, champ_auc, expected):
    assert gate(mode, new_auc, monotone, champ_auc).promote is expected


def test_gate_keeps_an_incomparable_champion():
    assert not gate("auto", 0.9, True, None, champion_comparable=False).promote
    with pytest.raises(ValueError, match="promote must be"):
        gate("sometimes", 0.9, True, None)


def test_scorecard_learns_a_signal_and_ignores_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 5))
    X[rng.random(20000) < 0.1, 0] = np.nan
    y = (rng.random(20000) < 1 / (1 + np.exp(-(np.nan_to_num(X[:, 0], nan=3) * 1.5 - 2)))).astype(int)
    card = WoEScorecard(max_signals=2).fit(X, y)
    assert card.selected_[0] == 0
    p = card.predict_proba(X)
    assert p[y == 1].mean() > 2 * p[y == 0].mean()
    with pytest.raises(ValueError, match="n_bins"):
        WoEScorecard(n_bins=1).fit(X, y)


def test_metrics_on_known_cases():
    y = np.array([0, 0, 1, 1])
    assert ks_statistic(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    x = np.random.default_rng(0).normal(size=10000)
    assert psi(x, x) == pytest.approx(0, abs=1e-9)
    assert psi(x, x + 1) > 0.25
    curve = approval_curve(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), points=5)
    assert curve["approved"].tolist() == [1, 1, 3, 4]
    assert curve["bad"].tolist() == [0, 0, 1, 2]


def test_compare_at_rule_rate_counts_bad_among_the_same_number_approved():
    y = np.array([1, 0, 0, 1, 0, 0])
    rule = np.array([1, 1, 1, 0, 0, 0])
    cmp = compare_at_rule_rate(
        "s", y, rule, p_model=np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.4]), p_scorecard=np.arange(6.0)
    )
    assert (cmp.rule_bad, cmp.model_bad, cmp.scorecard_bad) == (1, 0, 1)
    assert cmp.model_reduction == 1.0
    # the rule's bad rate is 1/3; the model's safest 4 rows hold no bad, 5 hold 1 (1/5), all 6 hold 2 (1/3)
    assert cmp.model_approval_rate_at_rule_bad_rate == pytest.approx(1.0)
    clean_rule = np.array([0, 1, 1, 0, 0, 0])  # approves two good rows: a bad rate of 0
    strict = compare_at_rule_rate(
        "s", y, clean_rule, np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.4]), np.arange(6.0)
    )
    assert strict.model_approval_rate_at_rule_bad_rate == pytest.approx(4 / 6)


def test_checked_monotone_drops_a_contradicted_direction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 2)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=20000) > 1.5).astype(int)
    constraints, dropped = checked_monotone(X, y, [-1, 1])
    assert constraints == [0, 1] and dropped == [0]


def test_snapshots_and_split():
    start, exported = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2026-01-01", tz="UTC")
    dates = month_starts(start, exported)
    assert dates[0] == pd.Timestamp("2024-04-01", tz="UTC") and dates[-1] == pd.Timestamp(
        "2025-10-01", tz="UTC"
    )
    split = default_split(dates)
    assert split.assign(pd.Series(dates)).value_counts().to_dict() == {
        "train": len(dates) - 4,
        "valid": 2,
        "test": 2,
    }
    buyers = pd.DataFrame(
        {"buyer_id": [1, 2], "registered_at": [start, pd.Timestamp("2024-04-01", tz="UTC")]}
    )
    spine = make_spine(buyers, dates[:2])
    assert spine["buyer_id"].tolist() == [
        1,
        1,
        2,
    ]  # buyer 2 registers exactly at the first date: not yet a buyer
