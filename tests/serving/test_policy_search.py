"""The whole-policy search sets exploration aside and declares it again (``serving.offline.policy_search``)."""

from __future__ import annotations

import yaml

from serving.offline.policy_search import Tried, _climb, with_settings, without_exploration
from serving.policy import parse_policy
from tests.serving.conftest import TEST_POLICY


def test_exploration_is_set_aside_while_searching_and_kept_in_the_proposal():
    raw = yaml.safe_load(TEST_POLICY.read_text())
    raw["services"]["presale_ship_before_balance"]["exploration"] = {
        "share": 0.03, "monthly_loss_budget": 2000, "seed": 1,
    }  # fmt: skip
    own, taken = without_exploration(raw)
    assert parse_policy(own).presale.exploration is None  # what each candidate is judged without
    assert taken == {
        "presale_ship_before_balance": raw["services"]["presale_ship_before_balance"]["exploration"]
    }
    assert "exploration" in raw["services"]["presale_ship_before_balance"], (
        "the reviewed document is untouched"
    )
    limits = {
        "expected_loss_allowance": {3: 0.02, 4: 0.03, 5: 0.04},
        "amount_cap": {3: 900, 4: 4000, 5: 9000},
    }
    doc = with_settings(own, "presale_ship_before_balance", limits)
    for service, declared in taken.items():
        doc["services"][service]["exploration"] = declared
    policy = parse_policy(doc)
    assert policy.presale.exploration.share == 0.03
    assert policy.presale.expected_loss_allowance[2:] == (0.02, 0.03, 0.04)


def _synthetic(target: float, photos_loss: float = 0.005):
    """An ``evaluate`` for ``_climb`` over one star band (5): a refund is approved up to the cap and the
    quota amount (one refund per buyer here, so the quota bounds each refund like the cap), and above
    the evidence threshold only with photos. Small refunds lose 0.5%, 300 ones without photos
    ``photos_loss``, with photos 1.5%, large ones 5%: relaxing the evidence rule adds safe money, raising the cap and
    the quota to 900 adds enough risky money to pass a 2% target, and the 400 refunds need both."""
    # (amount, photos, loss rate)
    requests = [(80.0, False, 0.005)] * 10 + [(300.0, False, photos_loss)] * 10
    requests += [(300.0, True, 0.015)] * 10 + [(400.0, True, 0.015)] * 10 + [(900.0, True, 0.05)] * 5

    def evaluate(limits: dict, evidence: float | None) -> Tried:
        bound = min(limits["amount_cap"][5], limits["quota_amount"][5])
        approved = [
            (amount, loss)
            for amount, photos, loss in requests
            if amount <= bound and (photos or evidence is None or amount <= evidence)
        ]
        money = sum(a for a, _ in approved)
        rate = sum(a * r for a, r in approved) / money if money else 0.0
        return Tried("fast_refund", limits, evidence, len(approved), money, rate, rate, rate <= target)

    return evaluate


RULES = {
    "amount_cap": {5: 500.0},
    "quota_amount": {5: 350.0},
    "expected_loss_allowance": {5: 0.05},
    "evidence": {"photos_required_above": 100},
}


def test_the_search_relaxes_evidence_and_quota_that_decline_safe_refunds():
    best = _climb(RULES, _synthetic(target=0.02), "fast_refund", 0.02, lambda _m: None)
    assert best is not None and best.evidence >= 300.0, "the 300 refunds without photos are approved"
    assert best.limits["quota_amount"][5] >= 400.0, "the quota moved for the 400 refunds under the cap"
    bound = min(best.limits["amount_cap"][5], best.limits["quota_amount"][5])
    assert bound < 900.0, "the risky 900 refunds, which would pass the target, stay declined"
    assert best.loss_per_unit <= 0.02


def test_the_search_keeps_the_evidence_rule_when_relaxing_it_passes_the_target():
    best = _climb(RULES, _synthetic(target=0.02, photos_loss=0.1), "fast_refund", 0.02, lambda _m: None)
    assert best is not None and best.evidence <= 100.0
    assert best.loss_per_unit <= 0.02


def test_the_searched_limits_reach_the_parsed_policy():
    limits = {
        "expected_loss_allowance": {3: 0.02, 4: 0.03, 5: 0.04},
        "amount_cap": {3: 500, 4: 1000, 5: 2000},
        "quota_amount": {3: 700, 4: 1500, 5: 3000},
    }
    raw = yaml.safe_load(TEST_POLICY.read_text())
    rules = parse_policy(with_settings(raw, "fast_refund", limits, evidence=250.0)).fast_refund
    assert rules.photos_required_above == 25000  # minor units
    assert rules.quota_amount[2:] == (70000, 150000, 300000)
    assert rules.expected_loss_allowance[2:] == (0.02, 0.03, 0.04)


def test_the_search_climbs_until_a_pass_changes_nothing():
    """Safe refunds from 400 to 3,000 under a quota of 350: reaching the largest takes the quota up
    x8.6, more than two passes (x1.25 then x2 each: x6.25) can, so the search goes on while a pass
    still finds money; the 10,000 refunds, which would pass the target, stay out."""
    requests = [(a, 0.005) for a in (400.0, 500.0, 700.0, 1000.0, 1500.0, 2200.0, 3000.0)] * 3
    requests += [(10000.0, 0.5)]

    def evaluate(limits: dict, evidence: float | None) -> Tried:
        bound = min(limits["amount_cap"][5], limits["quota_amount"][5])
        approved = [(a, r) for a, r in requests if a <= bound]
        money = sum(a for a, _ in approved)
        rate = sum(a * r for a, r in approved) / money if money else 0.0
        return Tried("fast_refund", limits, evidence, len(approved), money, rate, rate, rate <= 0.02)

    rules = {"amount_cap": {5: 3000.0}, "quota_amount": {5: 350.0}, "expected_loss_allowance": {5: 0.05}}
    best = _climb(rules, evaluate, "fast_refund", 0.02, lambda _m: None)
    assert best is not None and best.limits["quota_amount"][5] >= 3000.0, best.limits
    assert min(best.limits["amount_cap"][5], best.limits["quota_amount"][5]) < 10000.0


def _by_star(losses: dict[int, float], target: float):
    """An ``evaluate`` for ``_climb``: ten refunds of 100 per star band, approved from ``min_stars`` up
    (the lowest star the limits list), each band losing ``losses[star]`` per unit."""

    def evaluate(limits: dict, evidence: float | None) -> Tried:
        eligible = [s for s in losses if s >= min(limits["expected_loss_allowance"])]
        money = 1000.0 * len(eligible)
        rate = sum(1000.0 * losses[s] for s in eligible) / money
        return Tried("fast_refund", limits, evidence, 10 * len(eligible), money, rate, rate, rate <= target)

    return evaluate


STARRED = {
    "amount_cap": {3: 500.0, 4: 500.0, 5: 500.0},
    "quota_amount": {3: 500.0, 4: 500.0, 5: 500.0},
    "expected_loss_allowance": {3: 0.05, 4: 0.05, 5: 0.05},
}


def test_the_search_lowers_min_stars_while_the_lower_bands_keep_the_target():
    """Stars 2 lose 1% (below the 2% target with the others), star 1 loses 20%: the search opens star 2,
    with star 3's limits as its start, and keeps star 1 out."""
    losses = {1: 0.20, 2: 0.01, 3: 0.01, 4: 0.01, 5: 0.01}
    best = _climb(STARRED, _by_star(losses, 0.02), "fast_refund", 0.02, lambda _m: None)
    assert best is not None and best.min_stars == 2, best.limits
    assert best.limits["expected_loss_allowance"][2] <= best.limits["expected_loss_allowance"][3]
    assert best.loss_per_unit <= 0.02


def test_lowering_min_stars_extends_every_per_star_table_the_service_reads():
    raw = yaml.safe_load(TEST_POLICY.read_text())
    limits = {
        "expected_loss_allowance": {1: 0.01, 2: 0.02, 3: 0.02, 4: 0.03, 5: 0.04},
        "amount_cap": {1: 100, 2: 500, 3: 500, 4: 1000, 5: 2000},
        "quota_amount": {1: 100, 2: 700, 3: 700, 4: 1500, 5: 3000},
    }
    doc = with_settings(raw, "fast_refund", limits)
    rules = parse_policy(doc).fast_refund
    assert rules.min_stars == 1
    three = raw["services"]["fast_refund"]["quota_count"][3]
    assert doc["services"]["fast_refund"]["quota_count"] == {
        1: three,
        2: three,
        **raw["services"]["fast_refund"]["quota_count"],
    }  # the count per window not searched: the lowest star's, extended down
    assert rules.amount_cap[:2] == (10000, 50000)  # minor units
    back = with_settings(
        doc, "fast_refund", {k: {s: v for s, v in t.items() if s >= 3} for k, t in limits.items()}
    )
    assert parse_policy(back).fast_refund.min_stars == 3
    assert min(back["services"]["fast_refund"]["quota_count"]) == 3  # cut to min_stars again


def test_a_star_opened_below_min_stars_may_start_with_a_stricter_allowance():
    """Star 2's refunds: 500 priced at 1% that lose 1%, 500 priced at 4% that lose 10%. At star 3's
    allowance (5%) both halves come in and the 2% target breaks; at half of it only the safe half
    does, and the search opens star 2 with it."""

    def evaluate(limits: dict, evidence: float | None) -> Tried:
        allowance = limits["expected_loss_allowance"]
        money, loss = 3000.0, 30.0  # stars 3-5: 3,000 at 1%
        if 2 in allowance:
            money, loss = money + 500.0, loss + 5.0
            if allowance[2] >= 0.04:
                money, loss = money + 500.0, loss + 50.0
        rate = loss / money
        return Tried("fast_refund", limits, evidence, int(money // 100), money, rate, rate, rate <= 0.02)

    best = _climb(STARRED, evaluate, "fast_refund", 0.02, lambda _m: None)
    assert best is not None and best.min_stars == 2, best.limits
    assert best.limits["expected_loss_allowance"][2] < 0.04
    assert best.money == 3500.0
