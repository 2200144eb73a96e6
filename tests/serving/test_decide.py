"""The decision logic as plain functions: each star, cap boundaries, deposit, exposure, quotas, rules."""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal

import pytest

from serving.decide import (
    AMOUNT_ABOVE_CAP,
    APPROVE,
    DECLINE,
    DEPOSIT_BELOW_MINIMUM,
    EVIDENCE_MISSING,
    EXPOSURE_LIMIT_EXCEEDED,
    QUOTA_AMOUNT_EXCEEDED,
    QUOTA_COUNT_EXCEEDED,
    REFUND_KIND_NOT_ELIGIBLE,
    STARS_BELOW_MINIMUM,
    BuyerRating,
    Finding,
    Usage,
    decide,
    policy_read,
    star_eligible,
)
from serving.money import to_minor
from serving.policy import FAST_REFUND, PRESALE, parse_policy
from serving.schema import DecisionRequest, Order, Refund

POLICY = {
    "version": "test-1",
    "currency": "CNY",
    "quota_window_days": 30,
    "max_reasons": 2,
    "services": {
        PRESALE: {
            "min_stars": 3,
            "amount_cap": {3: 1000, 4: 5000, 5: 20000},
            "min_deposit_ratio": 0.1,
            "exposure_limit": {3: 1500, 4: 8000, 5: 30000},
        },
        FAST_REFUND: {
            "min_stars": 4,
            "amount_cap": {4: 2000, 5: 10000},
            "quota_count": {4: 3, 5: 10},
            "quota_amount": {4: 3000, 5: 20000},
            "evidence": {"photos_required_above": 100, "min_photos": 1},
            "kinds": ["return_and_refund"],
        },
    },
    "hard_declines": [
        {"code": "unpaid_balance_365d", "signal": "unpaid", "op": ">", "value": 0, "text": "Unpaid balance."},
        {
            "code": "overdue_now",
            "signal": "overdue",
            "op": ">",
            "value": 0,
            "text": "Overdue.",
            "services": [PRESALE],
        },
    ],
    "flags": [
        {"code": "suspected_malicious_reviewer", "signal": "malicious", "op": ">=", "value": 2, "text": "x"}
    ],
}

DUE = datetime(2030, 11, 11)
ORDERED = datetime(2025, 6, 1)


@pytest.fixture
def policy():
    return parse_policy(copy.deepcopy(POLICY), ["unpaid", "overdue", "malicious", "other"])


def rated(star: int, **signals: float) -> BuyerRating:
    reasons = (Finding("a", "A", 0.5), Finding("b", "B", 0.3), Finding("c", "C", 0.1))
    values = {"unpaid": 0.0, "overdue": 0.0, "malicious": 0.0} | signals
    return BuyerRating(star=star, score=300 + 100 * star, p_bad=0.01, reasons=reasons, signals=values)


def minor(amount: float) -> int:
    """Currency units (as written in the tests) -> minor units, exactly."""
    return to_minor(Decimal(str(amount)), 2)


def usage(exposure: float = 0, refund_count: int = 0, refund_amount: float = 0) -> Usage:
    return Usage(minor(exposure), refund_count, minor(refund_amount))


def presale(amount: float, deposit: float | None = None) -> DecisionRequest:
    deposit = minor(amount) // 10 if deposit is None else minor(deposit)
    return DecisionRequest(PRESALE, "r", 7, order=Order(1, minor(amount), "CNY", "beauty", deposit, DUE))


def refund(amount: float, photos: int = 1, kind: str = "return_and_refund") -> DecisionRequest:
    return DecisionRequest(
        FAST_REFUND,
        "r",
        7,
        refund=Refund(
            1, 1, minor(amount), "CNY", "damaged", kind, photos, minor(max(amount, 100)), "apparel", ORDERED
        ),
    )


def codes(decision) -> list[str]:
    return [f.code for f in decision.declines]


@pytest.mark.parametrize(
    ("star", "expected"), [(1, DECLINE), (2, DECLINE), (3, APPROVE), (4, APPROVE), (5, APPROVE)]
)
def test_presale_by_star(policy, star, expected):
    decision = decide(presale(500), rated(star), policy, usage())
    assert decision.decision == expected
    if expected == DECLINE:
        assert codes(decision) == [STARS_BELOW_MINIMUM]
        assert decision.reserve == 0
    else:
        assert decision.declines == ()
        assert decision.reserve == 450_00  # minor units


@pytest.mark.parametrize(
    ("star", "expected"), [(1, DECLINE), (2, DECLINE), (3, DECLINE), (4, APPROVE), (5, APPROVE)]
)
def test_fast_refund_by_star(policy, star, expected):
    decision = decide(refund(50), rated(star), policy, usage())
    assert decision.decision == expected
    assert decision.reserve == (50_00 if expected == APPROVE else 0)


def test_star_eligible():
    assert star_eligible(3, 3) and star_eligible(5, 3) and not star_eligible(2, 3)


@pytest.mark.parametrize(
    ("star", "amount", "ok"),
    [
        (3, 1000, True),
        (3, 1000.01, False),
        (4, 5000, True),
        (4, 5000.01, False),
        (5, 20000, True),
        (5, 20001, False),
    ],
)
def test_presale_amount_cap_boundary(policy, star, amount, ok):
    decision = decide(presale(amount, deposit=round(amount * 0.5, 2)), rated(star), policy, usage())
    assert (decision.decision == APPROVE) is ok
    assert (AMOUNT_ABOVE_CAP in codes(decision)) is not ok
    assert decision.limits["amount_cap"] == POLICY["services"][PRESALE]["amount_cap"][star]


@pytest.mark.parametrize(("deposit", "ok"), [(100, True), (99.99, False), (0, False), (1000, True)])
def test_presale_deposit_ratio_boundary(policy, deposit, ok):
    decision = decide(presale(1000, deposit), rated(3), policy, usage())
    assert (DEPOSIT_BELOW_MINIMUM not in codes(decision)) is ok


def test_presale_exposure_limit_boundary(policy):
    # star 3: limit 1500. The order's balance is 900; 600 outstanding fits exactly, 600.01 does not.
    fits = decide(presale(1000), rated(3), policy, usage(exposure=600))
    assert fits.decision == APPROVE
    assert fits.limits["exposure_used"] == 600
    assert fits.limits["exposure_requested"] == pytest.approx(900)
    assert fits.limits["exposure_remaining"] == pytest.approx(0)
    over = decide(presale(1000), rated(3), policy, usage(exposure=600.01))
    assert codes(over) == [EXPOSURE_LIMIT_EXCEEDED]
    assert over.limits["exposure_remaining"] == pytest.approx(899.99)


def test_exposure_limit_rises_with_stars(policy):
    used = usage(exposure=7000)
    assert decide(presale(1000), rated(4), policy, used).decision == APPROVE  # 7000 + 900 <= 8000
    assert codes(decide(presale(1000), rated(3), policy, used)) == [EXPOSURE_LIMIT_EXCEEDED]


def test_refund_count_quota_boundary(policy):
    assert decide(refund(50), rated(4), policy, usage(refund_count=2)).decision == APPROVE
    over = decide(refund(50), rated(4), policy, usage(refund_count=3))
    assert codes(over) == [QUOTA_COUNT_EXCEEDED]
    assert over.limits["quota_count_used"] == 3 and over.limits["quota_count_remaining"] == 0


def test_refund_amount_quota_boundary(policy):
    fits = decide(refund(500), rated(4), policy, usage(refund_count=1, refund_amount=2500))
    assert fits.decision == APPROVE
    assert fits.limits["quota_amount_remaining"] == pytest.approx(0)
    over = decide(refund(500.01), rated(4), policy, usage(refund_count=1, refund_amount=2500))
    assert codes(over) == [QUOTA_AMOUNT_EXCEEDED]


def test_refund_cap_boundary(policy):
    assert decide(refund(2000, photos=2), rated(4), policy, usage()).decision == APPROVE
    assert AMOUNT_ABOVE_CAP in codes(decide(refund(2000.5, photos=2), rated(4), policy, usage()))


def test_refund_evidence_rule(policy):
    assert decide(refund(100, photos=0), rated(5), policy, usage()).decision == APPROVE  # at the threshold
    assert codes(decide(refund(100.5, photos=0), rated(5), policy, usage())) == [EVIDENCE_MISSING]
    assert decide(refund(100.5, photos=1), rated(5), policy, usage()).decision == APPROVE


def test_refund_kind_rule(policy):
    assert codes(decide(refund(50, kind="refund_only"), rated(5), policy, usage())) == [
        REFUND_KIND_NOT_ELIGIBLE
    ]


def test_hard_decline_beats_five_stars(policy):
    decision = decide(presale(100), rated(5, unpaid=1), policy, usage())
    assert decision.decision == DECLINE
    assert codes(decision) == ["unpaid_balance_365d"]
    assert decision.reserve == 0


def test_hard_decline_scoped_to_its_services(policy):
    assert codes(decide(presale(100), rated(5, overdue=1), policy, usage())) == ["overdue_now"]
    assert decide(refund(50), rated(5, overdue=1), policy, usage()).decision == APPROVE


def test_missing_signal_never_fires(policy):
    assert decide(presale(100), rated(5, unpaid=float("nan")), policy, usage()).decision == APPROVE


def test_every_failed_check_is_reported(policy):
    decision = decide(presale(30000, deposit=0), rated(4, unpaid=2), policy, usage(exposure=8000))
    assert codes(decision) == [
        "unpaid_balance_365d",
        AMOUNT_ABOVE_CAP,
        DEPOSIT_BELOW_MINIMUM,
        EXPOSURE_LIMIT_EXCEEDED,
    ]


def test_flags_do_not_decline(policy):
    decision = decide(presale(100), rated(5, malicious=2), policy, usage())
    assert decision.decision == APPROVE
    assert [f.code for f in decision.flags] == ["suspected_malicious_reviewer"]
    assert decide(presale(100), rated(5, malicious=1), policy, usage()).flags == ()


def test_reasons_truncated_to_policy(policy):
    decision = decide(presale(100), rated(5), policy, usage())
    assert [r.code for r in decision.reasons] == ["a", "b"]


def test_what_a_decision_reads_of_the_policy_changes_only_at_the_stars_it_reads():
    """``policy_read`` (what a search's reuse of a group's decisions rests on): a per-star table moved at
    star 4 reads the same at stars 3 and 5 and differently at 4; ``min_stars`` lowered from 3 to 2 reads
    the same where eligibility does not change; a service-wide value reads differently at every star."""
    base = parse_policy(POLICY)
    moved = copy.deepcopy(POLICY)
    moved["services"][PRESALE]["amount_cap"][4] = 4000
    moved = parse_policy(moved)
    assert policy_read(moved, {PRESALE: (3, 5)}) == policy_read(base, {PRESALE: (3, 5)})
    assert policy_read(moved, {PRESALE: (4,)}) != policy_read(base, {PRESALE: (4,)})
    assert policy_read(moved, {FAST_REFUND: (4,)}) == policy_read(base, {FAST_REFUND: (4,)})
    lowered = copy.deepcopy(POLICY)
    lowered["services"][PRESALE] |= {"min_stars": 2, "amount_cap": {2: 1000, 3: 1000, 4: 5000, 5: 20000}}
    lowered["services"][PRESALE]["exposure_limit"] |= {2: lowered["services"][PRESALE]["exposure_limit"][3]}
    lowered = parse_policy(lowered)
    assert policy_read(lowered, {PRESALE: (1, 3, 4, 5)}) == policy_read(base, {PRESALE: (1, 3, 4, 5)})
    assert policy_read(lowered, {PRESALE: (2,)}) != policy_read(base, {PRESALE: (2,)})
    deposit = copy.deepcopy(POLICY)
    deposit["services"][PRESALE]["min_deposit_ratio"] = 0.2
    deposit = parse_policy(deposit)
    assert policy_read(deposit, {PRESALE: (5,)}) != policy_read(base, {PRESALE: (5,)})
    assert policy_read(deposit, {FAST_REFUND: (5,)}) == policy_read(base, {FAST_REFUND: (5,)})


def test_the_evidence_rule_is_read_through_each_refunds_evidence():
    """Given the refunds to decide, a moved evidence threshold reads differently only when it moves
    one of them across it without its photos."""
    base = parse_policy(POLICY)
    moved = copy.deepcopy(POLICY)
    moved["services"][FAST_REFUND]["evidence"]["photos_required_above"] = 500
    moved = parse_policy(moved)

    def refund(amount: float, photos: int) -> Refund:
        return Refund(
            1, 1, minor(amount), "CNY", "damaged", "return_and_refund", photos, minor(900), "beauty", ORDERED
        )

    clear = [refund(50, 0), refund(800, 0), refund(300, 2)]  # below both; above both; with photos
    assert policy_read(moved, {FAST_REFUND: (5,)}, clear) == policy_read(base, {FAST_REFUND: (5,)}, clear)
    crossed = [*clear, refund(300, 0)]
    assert policy_read(moved, {FAST_REFUND: (5,)}, crossed) != policy_read(base, {FAST_REFUND: (5,)}, crossed)
    assert policy_read(moved, {FAST_REFUND: (5,)}) != policy_read(base, {FAST_REFUND: (5,)})
