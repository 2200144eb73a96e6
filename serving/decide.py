"""The decision as pure functions: rating + request + policy + live usage -> approve or decline.

Nothing here touches HTTP, the database or the model. The caller supplies the buyer's
rating (or None when the buyer has no signals), the signal values the policy's rules read,
and the buyer's live usage read from the ledger inside the decision's transaction; it gets
back the decision, every reason it declined, the limits that applied, the flags and the
amount to reserve in the ledger. Amounts are integer minor units of the policy currency
(``serving.money``); the limits reported back are exact JSON numbers in currency units.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from serving.ledger.positions import Usage, closed_text, to_hold
from serving.money import fmt, from_minor
from serving.policy import FAST_REFUND, PER_STAR, PRESALE, FastRefundPolicy, Policy, SignalRule
from serving.schema import DecisionRequest, Order, Refund

APPROVE = "approve"
DECLINE = "decline"
RATIO_SCALE = 10**6  # deposit ratios compare exactly in millionths (the policy's ratio rounded to 1e-6)

THIN_FILE = "thin_file"
DEGRADED = "risk_service_degraded"
STARS_BELOW_MINIMUM = "stars_below_minimum"
AMOUNT_ABOVE_CAP = "amount_above_cap"
DEPOSIT_BELOW_MINIMUM = "deposit_below_minimum"
EXPOSURE_LIMIT_EXCEEDED = "exposure_limit_exceeded"
REFUND_KIND_NOT_ELIGIBLE = "refund_kind_not_eligible"
EVIDENCE_MISSING = "evidence_missing"
QUOTA_COUNT_EXCEEDED = "quota_count_exceeded"
QUOTA_AMOUNT_EXCEEDED = "quota_amount_exceeded"
EXPECTED_LOSS_ABOVE_ALLOWANCE = "expected_loss_above_allowance"
ALREADY_SETTLED = "already_settled"
# Declines an exploration may override: the model's judgement, never a hard fact, a cap, a limit or a quota.
EXPLORABLE = frozenset({EXPECTED_LOSS_ABOVE_ALLOWANCE, STARS_BELOW_MINIMUM})


@dataclass(frozen=True)
class Finding:
    """A decline reason, a flag or a model reason: a stable code and its text.

    ``contribution`` is the model reason's raised log-odds (None for policy findings).
    """

    code: str
    text: str
    contribution: float | None = None


@dataclass(frozen=True)
class BuyerRating:
    """What the model says about a buyer.

    Attributes:
        star: 1-5.
        score: 350-950.
        p_bad: Calibrated probability of a bad outcome in 90 days.
        reasons: The model's risk-raising reasons, largest first.
        signals: Values of the signals the policy's rules read (NaN when missing).
        as_of: When the signals were computed (ISO 8601), if known.
        row: Every signal of the buyer in the model's order (numpy array), for the service head.
        caps: The hard facts capping the star (first among ``reasons`` too), for the head's reasons.
    """

    star: int
    score: int
    p_bad: float
    reasons: tuple[Finding, ...] = ()
    signals: Mapping[str, float] = field(default_factory=dict)
    as_of: str | None = None
    row: Any = field(default=None, compare=False, repr=False)
    caps: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class HeadRisk:
    """What the service head says about this opportunity.

    Attributes:
        p_loss: Probability that the opportunity becomes a loss if approved.
        expected_loss: ``p_loss`` x the money at risk, minor units (rounded half up).
        reasons: The signals and context that raised this opportunity's risk most, largest first.
    """

    p_loss: float
    expected_loss: int
    reasons: tuple[Finding, ...] = ()

    @classmethod
    def priced(cls, p_loss: float, at_risk: int, reasons: tuple[Finding, ...] = ()) -> HeadRisk:
        """The head's probability on ``at_risk`` minor units: the expected loss rounded half up."""
        expected = int(Decimal(repr(p_loss * at_risk)).to_integral_value(rounding=ROUND_HALF_UP))
        return cls(p_loss=p_loss, expected_loss=expected, reasons=reasons)


@dataclass(frozen=True)
class Decision:
    """The outcome of ``decide``.

    Attributes:
        decision: ``approve`` or ``decline``.
        declines: Every reason it declined (empty when approved).
        limits: The limits that applied and how much of each is used (JSON-ready).
        reasons: The model's top risk-raising reasons (at most ``policy.max_reasons``).
        flags: Policy flags that hold for this buyer.
        reserve: Amount to reserve in the ledger, minor units (the balance or refund amount
            when approved, else 0).
        propensity: Probability that this decision was the one made (1 unless exploration drew).
        explored: The declines an exploration approved over (empty: not explored).
        explored_loss: The expected loss an explored approval charges to the budget (minor units).
    """

    decision: str
    declines: tuple[Finding, ...]
    limits: dict
    reasons: tuple[Finding, ...] = ()
    flags: tuple[Finding, ...] = ()
    reserve: int = 0
    propensity: float = 1.0
    explored: tuple[Finding, ...] = ()
    explored_loss: int = 0


def star_eligible(star: int, min_stars: int) -> bool:
    """Whether ``star`` meets the service's minimum."""
    return star >= min_stars


def fired(rules: Sequence[SignalRule], service: str, signals: Mapping[str, float]) -> tuple[Finding, ...]:
    """The rules for ``service`` that hold over ``signals`` (a missing signal never fires)."""
    return tuple(
        Finding(rule.code, rule.text)
        for rule in rules
        if service in rule.services and rule.fires(float(signals.get(rule.signal, float("nan"))))
    )


def presale_checks(order: Order, star: int, policy: Policy, usage: Usage) -> tuple[list[Finding], dict]:
    """Caps, deposit ratio and exposure for a ship-before-balance order.

    Returns:
        The failed checks and the limits (``exposure_requested`` is the balance still unpaid,
        ``exposure_remaining`` is what is left after this order if it is approved, otherwise
        what is left now).
    """
    rules = policy.presale
    hold = to_hold(PRESALE, usage.position, order.balance)
    d = policy.decimals
    cap = rules.amount_cap[star - 1]
    limit = rules.exposure_limit[star - 1]
    min_ratio = round(rules.min_deposit_ratio * RATIO_SCALE)
    failed = []
    if not star_eligible(star, rules.min_stars):
        failed.append(
            Finding(STARS_BELOW_MINIMUM, f"Ship-before-balance needs {rules.min_stars} stars or more.")
        )
    elif order.amount > cap:
        failed.append(
            Finding(AMOUNT_ABOVE_CAP, f"Order amount is above the {fmt(cap, d)} cap for {star} stars.")
        )
    if order.deposit_amount * RATIO_SCALE < min_ratio * order.amount:  # integers: exact
        failed.append(
            Finding(
                DEPOSIT_BELOW_MINIMUM, f"Deposit is below {rules.min_deposit_ratio:.0%} of the order amount."
            )
        )
    if star_eligible(star, rules.min_stars) and usage.exposure + hold > limit:
        failed.append(
            Finding(
                EXPOSURE_LIMIT_EXCEEDED,
                f"Outstanding balances would exceed the {fmt(limit, d)} limit for {star} stars.",
            )
        )
    after = usage.exposure + (hold if not failed else 0)
    limits = {
        "min_stars": rules.min_stars,
        "amount_cap": from_minor(cap, d),
        "min_deposit_ratio": rules.min_deposit_ratio,
        "deposit_ratio": round(order.deposit_amount / order.amount, 6) if order.amount > 0 else 0.0,
        "exposure_limit": from_minor(limit, d),
        "exposure_used": from_minor(usage.exposure, d),
        "exposure_requested": from_minor(hold, d),
        "exposure_remaining": from_minor(max(limit - after, 0), d),
    }
    return failed, limits


EVIDENCE = (
    "photos_required_above",
    "min_photos",
)  # the fast-refund rules read through ``evidence_missing`` only


def evidence_missing(refund: Refund, rules: FastRefundPolicy) -> bool:
    """Whether ``refund`` is above the evidence threshold without the photos it needs."""
    return refund.amount > rules.photos_required_above and refund.evidence_photos < rules.min_photos


def refund_checks(refund: Refund, star: int, policy: Policy, usage: Usage) -> tuple[list[Finding], dict]:
    """Cap, refund kind, evidence and the count and amount quotas for a fast refund.

    Returns:
        The failed checks and the limits (``*_remaining`` as after this refund if approved).
    """
    rules = policy.fast_refund
    d = policy.decimals
    cap = rules.amount_cap[star - 1]
    max_count = rules.quota_count[star - 1]
    max_amount = rules.quota_amount[star - 1]
    failed = []
    if not star_eligible(star, rules.min_stars):
        failed.append(Finding(STARS_BELOW_MINIMUM, f"Fast refund needs {rules.min_stars} stars or more."))
    else:
        if refund.amount > cap:
            failed.append(
                Finding(AMOUNT_ABOVE_CAP, f"Refund amount is above the {fmt(cap, d)} cap for {star} stars.")
            )
        if usage.refund_count + 1 > max_count:
            failed.append(
                Finding(
                    QUOTA_COUNT_EXCEEDED,
                    f"Already {usage.refund_count} fast refunds in {policy.quota_window_days} days.",
                )
            )
        if usage.refund_amount + refund.amount > max_amount:
            failed.append(
                Finding(
                    QUOTA_AMOUNT_EXCEEDED,
                    f"Fast refunds would exceed {fmt(max_amount, d)} in {policy.quota_window_days} days.",
                )
            )
    if refund.kind not in rules.kinds:
        failed.append(
            Finding(REFUND_KIND_NOT_ELIGIBLE, f"Refund kind {refund.kind} is not eligible for fast refund.")
        )
    if evidence_missing(refund, rules):
        failed.append(
            Finding(
                EVIDENCE_MISSING,
                f"Refunds above {fmt(rules.photos_required_above, d)} need {rules.min_photos} photo(s) "
                "of evidence.",
            )
        )
    approved = not failed
    count_after = usage.refund_count + (1 if approved else 0)
    amount_after = usage.refund_amount + (refund.amount if approved else 0)
    limits = {
        "min_stars": rules.min_stars,
        "amount_cap": from_minor(cap, d),
        "quota_window_days": policy.quota_window_days,
        "quota_count": max_count,
        "quota_count_used": usage.refund_count,
        "quota_count_remaining": max(max_count - count_after, 0),
        "quota_amount": from_minor(max_amount, d),
        "quota_amount_used": from_minor(usage.refund_amount, d),
        "quota_amount_remaining": from_minor(max(max_amount - amount_after, 0), d),
    }
    return failed, limits


def allowance_check(
    request: DecisionRequest,
    star: int,
    allowance: tuple[float, ...] | None,
    head: HeadRisk | None,
    decimals: int,
) -> tuple[list[Finding], dict]:
    """The expected-loss check: the head's expected loss at most ``allowance[star] x money at risk``.

    The allowance is a share of what the approval puts at risk (the balance; the refund amount),
    so it bounds the head's probability of a loss per star: a share of the order's value let a
    small claim on a large order through at any probability.

    Returns:
        The failed check (if any) and the figures (``p_loss``, ``expected_loss`` and the allowance).
    """
    if head is None:
        return [], {}
    limits = {"p_loss": round(head.p_loss, 6), "expected_loss": from_minor(head.expected_loss, decimals)}
    if allowance is None:
        return [], limits
    share = allowance[star - 1]
    # exact: the share as written in the policy (its shortest decimal text) x the value, rounded down
    allowed = int((Decimal(repr(share)) * request.at_risk).to_integral_value(rounding=ROUND_FLOOR))
    limits |= {
        "expected_loss_allowance": from_minor(allowed, decimals),
        "expected_loss_allowance_share": share,
    }
    if head.expected_loss > allowed:
        return [
            Finding(
                EXPECTED_LOSS_ABOVE_ALLOWANCE,
                f"Expected loss {fmt(head.expected_loss, decimals)} is above the {fmt(allowed, decimals)} "
                f"allowed for {star} stars.",
            )
        ], limits
    return [], limits


def exploration_draw(seed: int, service: str, ref_id: int) -> float:
    """A uniform draw in [0, 1) fixed by the seed and the opportunity.

    Drawn from the order or refund, not the request id, so a retry under a new request id cannot
    draw again; a replay with the same seed draws the same.
    """
    digest = hashlib.blake2b(f"{seed}:{service}:{ref_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def explore(
    request: DecisionRequest, declines: Sequence[Finding], policy: Policy, usage: Usage, head: HeadRisk | None
) -> tuple[bool, float]:
    """Whether an exploration approves this would-be decline, and the propensity of what is decided.

    Only declines that are all ``EXPLORABLE`` and priced by the head are eligible, within the
    service's monthly loss budget; an eligible one is approved with probability ``share``.

    Returns:
        ``(explored, propensity)``: propensity is ``share`` when explored, ``1 - share`` when an
        eligible decline stands, 1 otherwise.
    """
    rules = policy.presale if request.service == PRESALE else policy.fast_refund
    exploration = rules.exploration
    if (
        not declines
        or exploration is None
        or head is None
        or any(f.code not in EXPLORABLE for f in declines)
        or usage.explored_loss + head.expected_loss > exploration.monthly_loss_budget
    ):
        return False, 1.0
    if exploration_draw(exploration.seed, request.service, request.ref_id) < exploration.share:
        return True, exploration.share
    return False, 1.0 - exploration.share


def decide(
    request: DecisionRequest, rating: BuyerRating, policy: Policy, usage: Usage, head: HeadRisk | None = None
) -> Decision:
    """Decide one request for a rated buyer.

    Args:
        request: The validated request.
        rating: The buyer's star, score, reasons and rule signals.
        policy: The live policy.
        usage: The buyer's live usage, read in the decision's transaction.
        head: The service head's view of this opportunity (None: the artifact has no head).

    Returns:
        The decision; ``reserve`` is the amount the ledger must hold when approved (the balance
        still unpaid, or the refund amount). Its reasons are the head's (this opportunity's)
        when there is a head, else the rating's.
    """
    rules = policy.hard_declines
    settled = closed_text(request.service, usage.position, request.at_risk)
    if request.service == PRESALE:
        failed, limits = presale_checks(request.order, rating.star, policy, usage)
        allowance = policy.presale.expected_loss_allowance
    elif request.service == FAST_REFUND:
        failed, limits = refund_checks(request.refund, rating.star, policy, usage)
        allowance = policy.fast_refund.expected_loss_allowance
    else:
        raise ValueError(f"service: unknown service {request.service!r}")
    if star_eligible(rating.star, limits["min_stars"]):
        loss_failed, loss_limits = allowance_check(request, rating.star, allowance, head, policy.decimals)
    else:
        loss_failed, loss_limits = allowance_check(request, rating.star, None, head, policy.decimals)
    declines = (
        *((Finding(ALREADY_SETTLED, settled),) if settled else ()),
        *fired(rules, request.service, rating.signals),
        *failed,
        *loss_failed,
    )
    explored, propensity = explore(request, declines, policy, usage, head)
    approved = explored or not declines
    reasons = head.reasons if head is not None and head.reasons else rating.reasons
    return Decision(
        decision=APPROVE if approved else DECLINE,
        declines=() if explored else declines,
        limits=limits | loss_limits,
        reasons=reasons[: policy.max_reasons],
        flags=fired(policy.flags, request.service, rating.signals),
        reserve=to_hold(request.service, usage.position, request.at_risk) if approved else 0,
        propensity=propensity,
        explored=declines if explored else (),
        explored_loss=head.expected_loss if explored else 0,
    )


def policy_read(
    policy: Policy, stars: Mapping[str, Collection[int]], refunds: Sequence[Refund] | None = None
) -> tuple:
    """What deciding requests reads of ``policy`` when each service's requests come from buyers rated
    at ``stars[service]``: a hashable value equal for two policies that decide such requests alike.

    ``decide`` reads a service's per-star tables (``serving.policy.PER_STAR``) at the buyer's star
    only, ``min_stars`` through ``star_eligible`` of that star only (the decline texts name
    ``min_stars``; the decision and its codes do not) and the evidence rule (``EVIDENCE``) through
    ``evidence_missing`` of the refund only; everything else it reads whole. Given the fast refunds
    to decide (``refunds``, all of them), the evidence rule is read as their ``evidence_missing``;
    without, whole. A policy search deciding a window under many candidates decides a group of
    buyers again only when this changes for the group's decisions (``serving.offline.backtest.Banded``).
    """
    services = {PRESALE: policy.presale, FAST_REFUND: policy.fast_refund}
    read = []
    for service in sorted(stars):
        rules, seen = services[service], sorted(stars[service])
        values = []
        if service == FAST_REFUND and refunds is not None:
            values.append(tuple(evidence_missing(refund, rules) for refund in refunds))
        for spec in fields(rules):
            value = getattr(rules, spec.name)
            if service == FAST_REFUND and refunds is not None and spec.name in EVIDENCE:
                continue
            if spec.metadata.get(PER_STAR) and value is not None:
                value = tuple(value[star - 1] for star in seen)
            elif spec.name == "min_stars":
                value = tuple(star_eligible(star, value) for star in seen)
            values.append(value)
        read.append((service, tuple(values)))
    return replace(policy, presale=None, fast_refund=None), tuple(read)


def decline_unrated(code: str, text: str) -> Decision:
    """A decline for a buyer who could not be rated (``thin_file`` or ``risk_service_degraded``)."""
    return Decision(decision=DECLINE, declines=(Finding(code, text),), limits={})
