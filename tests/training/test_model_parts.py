"""Star cut-points, the promotion gate, the scorecard, evaluation metrics and monotone checks."""

import numpy as np
import pandas as pd
import pytest

from features.build import make_spine
from training.evaluation.gate import Comparison, gate
from training.evaluation.metrics import ks_statistic, psi, star_table, stars_monotone
from training.evaluation.scorecard import OptBinningScorecard
from training.evaluation.yardsticks import Estimate
from training.model import StarCutError, checked_monotone, star_cuts
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


def _cmp(name, higher, new, old, low, high):
    return Comparison(name, higher, new, old, Estimate(new - old, low, high))


AUC_BETTER = _cmp("rating_auc", True, 0.82, 0.81, 0.002, 0.018)
AUC_SAME = _cmp("rating_auc", True, 0.81, 0.81, -0.004, 0.004)
AUC_WORSE = _cmp("rating_auc", True, 0.79, 0.81, -0.03, -0.01)
LOSS_BETTER = _cmp("presale_loss_ratio_at_rule_volume", False, 0.4, 0.6, -0.3, -0.1)
LOSS_NOISY_WORSE = _cmp("presale_loss_ratio_at_rule_volume", False, 0.65, 0.6, -0.05, 0.15)
LOSS_WORSE = _cmp("presale_loss_ratio_at_rule_volume", False, 0.9, 0.6, 0.1, 0.5)


@pytest.mark.parametrize(
    "mode, monotone, comparisons, expected",
    [
        ("auto", True, None, True),  # no champion yet
        ("auto", True, [AUC_BETTER, LOSS_BETTER], True),
        ("auto", True, [AUC_SAME, LOSS_NOISY_WORSE], False),  # nothing better: an equal model stays out
        ("auto", True, [AUC_BETTER, LOSS_NOISY_WORSE], True),  # worse only within the interval
        ("auto", True, [AUC_BETTER, LOSS_WORSE], False),  # better AUC cannot buy a worse loss
        ("auto", True, [AUC_WORSE, LOSS_BETTER], False),
        ("auto", False, [AUC_BETTER, LOSS_BETTER], False),
        ("never", True, None, False),
        ("force", False, [AUC_WORSE, LOSS_WORSE], True),
    ],
)
def test_gate(mode, monotone, comparisons, expected):
    assert gate(mode, monotone, comparisons).promote is expected


def test_gate_names_what_is_worse_and_keeps_an_incomparable_champion():
    verdict = gate("auto", True, [AUC_BETTER, LOSS_WORSE])
    assert "presale_loss_ratio_at_rule_volume" in verdict.reason and "worse" in verdict.reason
    assert not gate("auto", True, None, champion_comparable=False).promote
    with pytest.raises(ValueError, match="promote must be"):
        gate("sometimes", True, None)
    assert LOSS_WORSE.metrics()["gate_presale_loss_ratio_at_rule_volume_diff_ci_low"] == 0.1


def test_scorecard_learns_a_signal_and_ignores_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 5))
    X[rng.random(20000) < 0.1, 0] = np.nan
    y = (rng.random(20000) < 1 / (1 + np.exp(-(np.nan_to_num(X[:, 0], nan=3) * 1.5 - 2)))).astype(int)
    names = [f"s{i}" for i in range(5)]
    card = OptBinningScorecard(names, [1, 0, 0, 0, 0], max_signals=2).fit(X, y)
    assert 0 in card.selected_
    assert card.information_value_[0] == card.information_value_.max()
    p = card.predict_proba(X)
    assert p[y == 1].mean() > 2 * p[y == 0].mean()
    with pytest.raises(ValueError, match="directions"):
        OptBinningScorecard(names, [2, 0, 0, 0, 0]).fit(X, y)
    with pytest.raises(ValueError, match="columns"):
        card.predict_proba(X[:, :3])


def test_metrics_on_known_cases():
    y = np.array([0, 0, 1, 1])
    assert ks_statistic(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    x = np.random.default_rng(0).normal(size=10000)
    assert psi(x, x) == pytest.approx(0, abs=1e-9)
    assert psi(x, x + 1) > 0.25


def test_checked_monotone_drops_a_contradicted_direction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 2)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=20000) > 1.5).astype(int)
    constraints, dropped = checked_monotone(X, y, [-1, 1])
    assert constraints == [0, 1] and dropped == [0]


def test_snapshots_and_split():
    start, exported = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2026-07-01", tz="UTC")
    dates = month_starts(start, exported)
    assert dates[0] == pd.Timestamp("2024-04-01", tz="UTC") and dates[-1] == pd.Timestamp(
        "2026-04-01", tz="UTC"
    )
    split = default_split(dates)
    # test opens with the latest presale season (deposits from October for November 11)
    assert split.params() == {
        "train_as_of_last": "2025-01-01",
        "valid_as_of_first": "2025-05-01",
        "valid_as_of_last": "2025-07-01",
        "test_as_of_first": "2025-10-01",
    }
    parts = split.assign(pd.Series(dates)).value_counts().to_dict()
    assert parts == {"train": 10, "valid": 3, "test": 7, "gap": 5}
    buyers = pd.DataFrame(
        {"buyer_id": [1, 2], "registered_at": [start, pd.Timestamp("2024-04-01", tz="UTC")]}
    )
    spine = make_spine(buyers, dates[:2])
    assert spine["buyer_id"].tolist() == [
        1,
        1,
        2,
    ]  # buyer 2 registers exactly at the first date: not yet a buyer


def test_scorecard_fits_the_same_bins_twice_on_more_rows_than_the_quantile_subsample():
    # scikit-learn's quantile pre-binning draws an unseeded 200,000-row subsample above that size
    rng = np.random.default_rng(1)
    X = rng.normal(size=(210_000, 2))
    y = (rng.random(210_000) < 1 / (1 + np.exp(-(X[:, 0] - 2)))).astype(int)
    np.random.seed(5)
    before = np.random.random()
    np.random.seed(5)
    first, second = (OptBinningScorecard(["a", "b"], [1, 0]).fit(X, y) for _ in range(2))
    assert np.array_equal(first.predict_proba(X[:5000]), second.predict_proba(X[:5000]))
    assert np.random.random() == before  # the caller's global generator is left as it was
