"""The rating buyers and merchants read: hard facts as a floor, reasons from a fixed catalogue in score
points against a typical buyer, activity never a reason, and the figures that check it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.tiny import make_tiny_rating, synthetic_dataset
from features import registry, specs
from features.hard_facts import CAPPED_MAX_STAR, FLOOR_FACTS, HARD_FACTS
from rating.reasons import MIN_REASON_POINTS
from rating.scale import SCORE_MIN
from serving.reasons import exact_reasons, lookup_reasons
from training.evaluation.trust import activity_fifths_ratio, reason_stability, star_rates_per_opportunity
from training.model import checked_monotone

ACTIVITY = ["logins_count_all", "orders_count_90d", "cs_contacts_count_365d"]
OTHERS = ["credit_score_last", "bills_late_count_365d", "refunds_count_365d", "disputes_lost_count_365d"]
NAMES = [*ACTIVITY, *OTHERS, *HARD_FACTS]  # the tiny model's risk rises with the first half of them


@pytest.fixture(scope="module")
def model():
    return make_tiny_rating(NAMES, seed=0, n=8000)


@pytest.fixture(scope="module")
def rows():
    X = synthetic_dataset(NAMES, 3000, seed=5).X
    facts = [NAMES.index(n) for n in HARD_FACTS]
    X[:, facts] = 0.0
    X[:100, NAMES.index(FLOOR_FACTS[0])] = 1.0  # confirmed fraud
    X[100:200, NAMES.index("bills_30dpd_open")] = 1.0  # another hard fact
    return X


def test_confirmed_fraud_is_one_star_below_every_buyer_without_a_hard_fact(model, rows):
    scored = model.score(rows)
    fraud, other_fact = np.arange(3000) < 100, (np.arange(3000) >= 100) & (np.arange(3000) < 200)
    assert (scored.star[fraud] == 1).all() and (scored.score[fraud] == SCORE_MIN).all()
    assert scored.score[~fraud].min() > SCORE_MIN
    assert (scored.star[other_fact] <= CAPPED_MAX_STAR).all()
    assert scored.star[~fraud & ~other_fact].max() > CAPPED_MAX_STAR  # the floor holds only where a fact does


def test_the_floor_holds_through_the_pyfunc_predict(model, rows):
    out = model.predict(None, pd.DataFrame(rows[:150], columns=NAMES))
    assert (out["star"].to_numpy()[:100] == 1).all() and (out["score"].to_numpy()[:100] == SCORE_MIN).all()


def test_reasons_come_from_the_catalogue_and_never_name_activity(model, rows):
    catalogue = registry.reason_catalogue()
    activity_codes = {registry.get(n).reason_code for n in ACTIVITY}
    assert activity_codes == {""}
    low = np.flatnonzero(model.score(rows).star <= 2)
    assert len(low) > 100
    cited = set()
    for i in low:
        found = model.reasons(rows[i], k=4)
        assert len(found) <= 4
        for reason in found:
            if reason.code in HARD_FACTS:
                continue
            assert catalogue[reason.code] == reason.text and reason.contribution >= MIN_REASON_POINTS
            cited.add(reason.code)
    assert cited and cited <= set(catalogue)
    assert {registry.get(n).reason_code for n in OTHERS} & cited  # the risky signals do speak


def test_the_typical_buyer_has_no_reason(model):
    typical = model.catalogue.typical
    assert np.allclose(model.reason_points(model.reason_table.contributions(typical[None, :])), 0.0)


def test_served_reasons_use_the_catalogue_in_both_attributions(model, rows):
    for index, value in (lookup_reasons(model, rows[:500]), exact_reasons(model, rows[:500], threads=1)):
        assert index.max() < len(model.catalogue.codes)
        assert (value[index >= 0] >= MIN_REASON_POINTS).all()
    index, _ = lookup_reasons(model, rows[200:201])
    direct = [r.code for r in model.reasons(rows[200], k=4)]
    assert [model.reason_entry(j)[0] for j in index[0] if j >= 0] == direct


def test_activity_signals_are_declared_safer_and_keep_their_constraint():
    for s in registry.signals():
        if s.activity:
            assert s.risk_direction == -1 and s.reason_code == ""
        else:
            assert s.reason_code in specs.CATALOGUE, s.name
    rng = np.random.default_rng(0)
    x = rng.random((4000, 2))
    y = (rng.random(4000) < x[:, 0] * 0.3).astype(int)  # risk rises with both columns' first
    X = np.column_stack([x[:, 0], x[:, 0]])
    kept, dropped = checked_monotone(X, y, [-1, -1], kept=[True, False])
    assert kept == [-1, 0] and dropped == [1]


def test_star_rates_per_opportunity_by_hand():
    star = np.array([1, 1, 2, 3, 4, 5, 5])
    events = np.array([2, 1, 1, 1, 0, 0, 1])
    exposure = np.array([3, 3, 4, 10, 10, 20, 20])
    out = star_rates_per_opportunity(star, events, exposure, np.arange(7), replicates=20)
    assert out["star1_bad_rate_per_opportunity"] == pytest.approx(3 / 6)
    assert out["star3_bad_rate_per_opportunity"] == pytest.approx(0.1)
    assert out["star5_bad_rate_per_opportunity"] == pytest.approx(1 / 40)
    assert out["stars_monotone_per_opportunity"] == 0.0  # star 4 (0) is below star 5
    events[4], exposure[4] = 1, 20  # star 4: 0.05, between star 3 (0.1) and star 5 (0.025)
    out = star_rates_per_opportunity(star, events, exposure, np.arange(7), replicates=20)
    assert out["stars_monotone_per_opportunity"] == 1.0


def test_reason_stability_by_hand():
    a = np.array([[1, 2, 3, 4], [1, -1, -1, -1], [-1, -1, -1, -1]])
    b = np.array([[4, 3, 2, 1], [2, -1, -1, -1], [-1, -1, -1, -1]])
    out = reason_stability(a, b)
    assert out["reason_stability"] == pytest.approx((1 + 0 + 1) / 3)
    assert out["reason_stability_identical"] == pytest.approx(2 / 3)


def test_activity_fifths_ratio_by_hand():
    n = 100
    traits = pd.DataFrame(
        {
            "buyer_id": np.arange(n),
            "reliability": np.ones(n),
            "opportunism": np.zeros(n),
            "activity": np.arange(n, dtype=float),
            "fraudster": np.arange(n) == 0,  # not honest: left out
            "ring_member": np.zeros(n, bool),
        }
    )
    p = np.where(np.arange(n) >= 80, 0.04, 0.01)
    out = activity_fifths_ratio(p, np.arange(n), traits, "ratio", replicates=10)
    assert out["ratio"] == pytest.approx(4.0)


def test_no_head_reason_of_a_decision_names_an_activity_signal(model, rows):
    """The heads read every signal; a decision's reasons still never cite the volume of activity."""
    from datetime import datetime, timedelta
    from pathlib import Path

    from bench.tiny import tiny_heads
    from rating.artifact import LoadedRating
    from rating.context import CONTEXT_TEXT
    from serving.decide import BuyerRating, DecisionRequest, Order
    from serving.live import Live, request_context
    from serving.policy import load_policy

    heads = tiny_heads(NAMES, seed=0, n=4000)
    # the activity signals decide the tiny heads' losses, so that an unmasked head would cite them
    model.set_heads(heads)
    policy = load_policy(Path(__file__).resolve().parents[2] / "serving" / "policy.yaml")
    live = Live(
        policy=policy,
        rating=LoadedRating(model, "memory", None, None, None),
        model_error=None,
        head_texts={**model.reason_text, **CONTEXT_TEXT},
    )
    now = datetime(2024, 6, 1)
    never = model.never_reasons()
    assert never == set(ACTIVITY)
    cited, unmasked = set(), set()
    for i in range(200, 400):
        request = DecisionRequest(
            "presale_ship_before_balance", f"r{i}", i,
            order=Order(i, 900_000, "CNY", "electronics", 90_000, now + timedelta(days=20)),
        )  # fmt: skip
        risk = live.head_risk(request, BuyerRating(star=3, score=600, p_bad=0.01, row=rows[i]), now)
        cited |= {r.code for r in risk.reasons}
        context = request_context(request, now, policy.decimals)
        _, contrib, names = heads[request.service].explain(np.asarray(rows[i], np.float64), context)
        unmasked |= {names[j] for j in np.argsort(-contrib)[:4] if contrib[j] > 0}
    assert unmasked & never  # the heads would cite them
    assert cited and not cited & never
    model.set_heads({})


def test_opportunity_auc_by_hand():
    from training.evaluation.trust import opportunity_auc

    # one bad opportunity scored 0.2; good ones: two at 0.1 (below it), two at 0.2 (ties count one half)
    out = opportunity_auc(np.array([0, 1]), np.array([2, 3]), np.arange(2), {"r": np.array([0.1, 0.2])}, 10)
    assert out["r"][0] == pytest.approx((2 + 0.5 * 2) / 4)
