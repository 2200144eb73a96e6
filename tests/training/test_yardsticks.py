"""The honest yardsticks: expected loss at the rule's volume and loss rate, buyer bootstrap, AUC."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluation.report import reason_only_ranking
from training.evaluation.yardsticks import Estimate, auc_comparison, compare_service, high_risk_loss_share
from training.snapshots import TimeSplit


def _case():
    # five opportunities of four buyers: value, truth's loss probability, realised outcome
    value = np.array([100.0, 100.0, 200.0, 50.0, 50.0])
    p_true = np.array([0.10, 0.01, 0.02, 0.50, 0.04])
    bad = np.array([1, 0, 0, 1, 0])
    buyer = np.array([1, 2, 2, 3, 4])
    rule = np.array([True, False, False, True, False])  # V = 150, L = 10 + 25 = 35
    return value, p_true, bad, buyer, rule


def test_rule_volume_and_loss_rate_by_hand():
    value, p_true, bad, buyer, rule = _case()
    model = np.array([0.5, 0.2, 0.1, 0.9, 0.3])  # approves row 2 (200 > 150: no), so row 2 alone exceeds V
    res = compare_service(
        "s", value, p_true, bad, buyer, rule, {"model": model, "oracle": p_true}, replicates=20
    )
    assert res.rule_value == 150 and res.rule_expected_loss == pytest.approx(35.0)
    # model order: 2 (200), 1, 4, 0, 3 -> the first row already exceeds V = 150: nothing approved
    assert res.at_rule_volume["model"].approved == 0
    # oracle order: 1 (100, loss 1), 2 (200) ... -> only row 1 fits within 150
    oracle = res.at_rule_volume["oracle"]
    assert oracle.approved == 1 and oracle.expected_loss == pytest.approx(1.0)
    assert oracle.loss_ratio.value == pytest.approx(1.0 / 35.0)
    # rule's loss rate 35/150 = 0.233; oracle prefixes: 1/100, 5/300, 7/350, 17/450, 42/500 -> all within
    assert res.volume_multiple_at_rule_loss_rate["oracle"].value == pytest.approx(500 / 150)
    assert res.rule_share_opportunities == pytest.approx(0.4)
    assert res.rule_share_volume == pytest.approx(150 / 500)


def test_trivial_policies_do_not_win():
    rng = np.random.default_rng(0)
    n = 20000
    value = rng.lognormal(5, 1, n)
    p_true = rng.beta(1, 30, n)
    bad = rng.random(n) < p_true
    buyer = rng.integers(0, 5000, n)
    rule = rng.random(n) < 0.05
    rankings = {"random": rng.random(n), "oracle": p_true, "small_first": value}
    res = compare_service("s", value, p_true, bad, buyer, rule, rankings, replicates=100)
    # a random ranking loses about what a random rule loses; the truth loses far less
    assert res.at_rule_volume["random"].loss_ratio.low < 1.0 < res.at_rule_volume["random"].loss_ratio.high
    assert res.at_rule_volume["oracle"].loss_ratio.high < 0.5
    # approving small orders first is no better on money: the volume constraint is money, not counts
    assert (
        res.at_rule_volume["small_first"].loss_ratio.low
        < 1.0
        < res.at_rule_volume["small_first"].loss_ratio.high
    )
    assert res.loss_ratio_to_oracle["random"].low > 2.0


def test_bootstrap_resamples_buyers_not_rows():
    value, p_true, bad, _, rule = _case()
    one_buyer = np.ones(5, dtype=int)
    res = compare_service("s", value, p_true, bad, one_buyer, rule, {"m": p_true}, replicates=50)
    # with one buyer every replicate is the sample scaled (or empty): the interval collapses
    assert res.at_rule_volume["m"].loss_ratio.low == pytest.approx(res.at_rule_volume["m"].loss_ratio.value)


def test_weighted_auc_matches_sklearn_and_has_an_interval():
    rng = np.random.default_rng(1)
    y = rng.random(4000) < 0.1
    s = np.round(rng.normal(size=4000) + y, 1)  # ties
    buyer = rng.integers(0, 800, 4000)
    reps = auc_comparison(y, buyer, {"s": s}, replicates=100)["s"]
    assert reps[0] == pytest.approx(roc_auc_score(y, s))
    est = Estimate.of(reps)
    assert est.low < est.value < est.high and est.high - est.low < 0.1


def test_split_refuses_windows_closer_than_the_horizon():
    d = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    with pytest.raises(ValueError, match="label horizon"):
        TimeSplit(
            train_last=d("2024-03-01"),
            valid_first=d("2024-05-01"),
            valid_last=d("2024-07-01"),
            test_first=d("2024-10-01"),
        )
    with pytest.raises(ValueError, match="label horizon"):
        TimeSplit(
            train_last=d("2024-01-01"),
            valid_first=d("2024-05-01"),
            valid_last=d("2024-08-01"),
            test_first=d("2024-10-01"),
        )
    split = TimeSplit(
        train_last=d("2024-02-01"),
        valid_first=d("2024-05-01"),
        valid_last=d("2024-07-01"),
        test_first=d("2024-10-01"),
    )
    when = pd.Series([d("2024-10-20T10:00"), d("2024-07-31T23:00"), d("2024-08-02"), d("2024-01-15")])
    assert split.assign_instant(when).tolist() == ["test", "valid", "gap", "train"]


def test_high_risk_share_is_the_approved_expected_loss_on_high_risk_rows():
    expected = np.array([1.0, 3.0, 6.0, 10.0])
    high = np.array([False, True, False, True])
    assert high_risk_loss_share(expected, np.array([0, 1, 2]), high) == pytest.approx(0.3)
    assert high_risk_loss_share(expected, np.array([True, False, True, False]), high) == 0.0
    assert np.isnan(high_risk_loss_share(expected, np.array([0]), None))
    result = compare_service(
        "fast_refund", np.ones(4), expected / 20, np.zeros(4), np.arange(4), np.array([1, 1, 0, 0], bool),
        {"model": np.array([0.1, 0.4, 0.2, 0.3])}, oracle=None, replicates=5, high_risk=high,
    )  # fmt: skip
    assert result.rule_high_risk_loss_share == pytest.approx(0.75)
    assert result.at_rule_volume["model"].high_risk_loss_share == pytest.approx(0.0)  # approves rows 0 and 2


def test_the_reason_only_baseline_ranks_by_the_reasons_past_loss_rate():
    history = pd.DataFrame(
        {"reason": ["damaged"] * 4 + ["changed_mind"] * 4, "bad": [1, 1, 0, 0, 0, 0, 0, 1]}
    )
    rows = pd.DataFrame({"reason": ["changed_mind", "damaged", "never_seen"]})
    np.testing.assert_allclose(reason_only_ranking(history, rows), [0.25, 0.5, 0.375])
