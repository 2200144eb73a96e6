"""Exploration: a budgeted share of would-be declines approved at random, reproducibly."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from serving.decide import BuyerRating, HeadRisk, decide, exploration_draw
from serving.ledger.positions import Usage
from serving.policy import PolicyError, parse_policy
from serving.schema import DecisionRequest, Order
from tests.serving.test_ledger_machine import POLICY

SHARE, BUDGET = 0.2, 1_000  # currency units


def policy(share: float = SHARE, budget: float = BUDGET):
    raw = {**POLICY, "services": {**POLICY["services"]}}
    presale = dict(raw["services"]["presale_ship_before_balance"])
    presale["expected_loss_allowance"] = {3: 0.01, 4: 0.01, 5: 0.01}
    presale["exploration"] = {"share": share, "monthly_loss_budget": budget, "seed": 7}
    raw["services"]["presale_ship_before_balance"] = presale
    return parse_policy(raw)


def request(order_id: int, amount: int = 50_000) -> DecisionRequest:  # 500.00 CNY, deposit 10%
    order = Order(order_id, amount, "CNY", "beauty", amount // 10, datetime(2030, 1, 1))
    return DecisionRequest("presale_ship_before_balance", f"r{order_id}", 1, order=order)


RATED = BuyerRating(star=5, score=800, p_bad=0.01)
RISKY = HeadRisk(p_loss=0.05, expected_loss=2_250)  # 22.50 > the 1% allowance of 500.00


def test_an_eligible_decline_is_approved_with_the_share_and_its_propensity_logged():
    p = policy()
    made = [decide(request(i), RATED, p, Usage(), RISKY) for i in range(4000)]
    explored = [d for d in made if d.decision == "approve"]
    assert abs(len(explored) / len(made) - SHARE) < 0.03
    assert all(d.propensity == SHARE and d.explored and not d.declines for d in explored)
    assert all(d.explored_loss == RISKY.expected_loss and d.reserve == 45_000 for d in explored)
    declined = [d for d in made if d.decision == "decline"]
    assert all(d.propensity == pytest.approx(1 - SHARE) and d.explored_loss == 0 for d in declined)
    assert [d.declines[0].code for d in declined[:1]] == ["expected_loss_above_allowance"]


def test_the_draw_is_fixed_by_the_seed_and_the_order_not_the_request_id():
    p = policy()
    first = decide(request(12), RATED, p, Usage(), RISKY)
    retry = DecisionRequest("presale_ship_before_balance", "another-id", 1, order=request(12).order)
    assert decide(retry, RATED, p, Usage(), RISKY).decision == first.decision
    draws = np.array([exploration_draw(7, "presale_ship_before_balance", i) for i in range(20_000)])
    assert draws.min() >= 0 and draws.max() < 1 and abs(draws.mean() - 0.5) < 0.01


def test_a_hard_limit_is_never_explored():
    p = policy(share=0.5)
    over = Usage(exposure=10**9)  # exposure limit exceeded too
    made = [decide(request(i), RATED, p, over, RISKY) for i in range(200)]
    assert {d.decision for d in made} == {"decline"}
    assert {d.propensity for d in made} == {1.0}


def test_nothing_is_explored_past_the_monthly_budget():
    p = policy(share=0.5)
    spent = Usage(explored_loss=BUDGET * 100 - RISKY.expected_loss + 1)
    made = [decide(request(i), RATED, p, spent, RISKY) for i in range(200)]
    assert {d.decision for d in made} == {"decline"} and {d.propensity for d in made} == {1.0}
    room = Usage(explored_loss=BUDGET * 100 - RISKY.expected_loss)
    assert "approve" in {decide(request(i), RATED, p, room, RISKY).decision for i in range(200)}


def test_an_approval_is_not_explored_and_has_propensity_one():
    cheap = HeadRisk(p_loss=0.001, expected_loss=45)
    d = decide(request(1), RATED, policy(), Usage(), cheap)
    assert (d.decision, d.propensity, d.explored) == ("approve", 1.0, ())


def test_exploration_settings_are_checked():
    with pytest.raises(PolicyError, match=r"exploration\.share"):
        policy(share=0.9)
    raw = {**POLICY, "services": {**POLICY["services"]}}
    raw["services"]["fast_refund"] = dict(raw["services"]["fast_refund"], exploration={"share": 0.1})
    with pytest.raises(PolicyError, match=r"exploration\.monthly_loss_budget: required key missing"):
        parse_policy(raw)
