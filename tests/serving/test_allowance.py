"""The expected-loss allowance (``serving.decide.allowance_check``) at its boundary, in exact integers:
an expected loss of at most ``floor(share x money at risk)`` minor units passes, one more is declined."""

from __future__ import annotations

import copy
from decimal import ROUND_FLOOR, Decimal

import pytest

from serving.decide import (
    EXPECTED_LOSS_ABOVE_ALLOWANCE,
    STARS_BELOW_MINIMUM,
    HeadRisk,
    allowance_check,
    decide,
)
from serving.policy import FAST_REFUND, PRESALE, parse_policy
from tests.serving.test_decide import POLICY, presale, rated, refund, usage


def exact_allowed(share: float, value_minor: int) -> int:
    """``floor(share x value)`` in minor units, with the share exactly as the policy file writes it."""
    return int((Decimal(repr(share)) * value_minor).to_integral_value(rounding=ROUND_FLOOR))


def check(request, star: int, shares: tuple[float, ...], expected_loss: int):
    return allowance_check(request, star, shares, HeadRisk(0.1, expected_loss), 2)


@pytest.mark.parametrize(
    ("share", "amount", "allowed"),
    [
        (0.05, 1000, 45_00),  # 5% of the 900.00 balance
        (0.05, 1000.10, 45_00),  # 5% of 900.09 = 4500.45 minor units: rounded down to a whole minor unit
        (0.123456, 1111.10, 123_45),  # 0.123456 x 99,999 minor (the balance) = 12,345.48 -> 12,345
        (0.713782, 20000, 12848_07),  # six decimals, 18,000.00 balance: 1,284,807.6 -> 1,284,807
        (1.0, 20000, 18000_00),  # the whole balance
        (0.0, 500, 0),  # no expected loss at all is accepted
    ],
)
def test_the_boundary_is_exact_in_minor_units(share, amount, allowed):
    request = presale(amount)
    assert exact_allowed(share, request.at_risk) == allowed
    shares = (0.0, 0.0, share, share, share)
    failed, limits = check(request, 4, shares, allowed)
    assert failed == [], "an expected loss equal to the allowance is accepted"
    assert Decimal(repr(limits["expected_loss_allowance"])) == Decimal(allowed) / 100
    assert limits["expected_loss_allowance_share"] == share
    failed, _ = check(request, 4, shares, allowed + 1)
    assert [f.code for f in failed] == [EXPECTED_LOSS_ABOVE_ALLOWANCE], "one minor unit more is declined"


def test_the_share_is_the_stars_and_of_the_money_at_risk_not_the_order_value():
    shares = (0.0, 0.0, 0.01, 0.02, 0.04)
    request = presale(1000)  # balance 900: the allowance is a share of the balance, not of the order
    for star, allowed in ((3, 9_00), (4, 18_00), (5, 36_00)):
        assert check(request, star, shares, allowed)[0] == []
        assert check(request, star, shares, allowed + 1)[0] != []
    claim = refund(50)  # on an order of 100: the refund's allowance is a share of the 50 claimed
    assert claim.at_risk == 50_00
    assert check(claim, 5, shares, 2_00)[0] == [] and check(claim, 5, shares, 2_01)[0] != []


def test_a_small_claim_on_a_large_order_is_priced_on_the_claim():
    """A near-certain loss on a small refund of a large order passed an order-value allowance."""
    claim = refund(50)
    p = 0.99
    expected = int(p * claim.at_risk)
    shares = (0.0, 0.0, 0.3, 0.3, 0.3)
    assert [f.code for f in check(claim, 5, shares, expected)[0]] == [EXPECTED_LOSS_ABOVE_ALLOWANCE]


def test_no_head_or_no_allowance_checks_nothing():
    request = presale(1000)
    assert allowance_check(request, 5, (0.0, 0.0, 0.0, 0.0, 0.0), None, 2) == ([], {})
    failed, limits = allowance_check(request, 5, None, HeadRisk(0.123456789, 10**9), 2)
    assert failed == [] and limits == {"p_loss": 0.123457, "expected_loss": 10_000_000.0}


def test_below_min_stars_only_the_stars_decline():
    raw = copy.deepcopy(POLICY)
    raw["services"][PRESALE]["expected_loss_allowance"] = {3: 0.01, 4: 0.01, 5: 0.01}
    raw["services"][FAST_REFUND]["expected_loss_allowance"] = {4: 0.01, 5: 0.01}
    policy = parse_policy(raw, ["unpaid", "overdue", "malicious", "other"])
    head = HeadRisk(0.9, 900_00)
    low = decide(presale(1000), rated(2), policy, usage(), head)
    assert [f.code for f in low.declines] == [STARS_BELOW_MINIMUM]
    assert "expected_loss_allowance" not in low.limits and low.limits["expected_loss"] == 900.0
    high = decide(presale(1000), rated(3), policy, usage(), head)
    assert [f.code for f in high.declines] == [EXPECTED_LOSS_ABOVE_ALLOWANCE] and high.reserve == 0


@pytest.mark.parametrize(
    ("share", "amount"),
    [
        (
            0.0113143,
            111111.11,
        ),  # balance 10,000,000 minor; 6 significant digits, 7 decimals: 113143, not 113140
        (0.0000019, 11111.11),  # balance 1,000,000 minor: 1.9 minor units, 1 allowed, not 2
    ],
)
def test_shares_with_the_precision_training_writes_are_applied_exactly(share, amount):
    request = presale(amount)
    allowed = exact_allowed(share, request.at_risk)
    shares = (0.0, 0.0, share, share, share)
    assert check(request, 5, shares, allowed)[0] == []
    assert check(request, 5, shares, allowed + 1)[0] != []
