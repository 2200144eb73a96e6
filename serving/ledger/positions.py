"""What the ledger holds for one order or refund, and how decisions and outcomes move it.

A *position* is the ledger's state of one buyer's presale order (ship before balance) or
refund (fast refund). Every ledger (the service's SQL ledger, ``serving.ledger``, and the
backtest's in-memory one, ``serving.ledger.in_memory``) changes positions only through the pure
functions here, so the same sequence of decisions and outcomes gives the same sums in all of
them. ``docs/serving.md`` ("What a repeated decision means") states the same rules for people:

- An approved presale holds the balance *still unpaid* (its balance less what was paid on the
  order so far). Deciding the same order again (a retry with a new request id, a re-price)
  replaces the hold when approved and leaves an earlier approval's hold when declined (the
  goods may have shipped on it). An order paid in full, canceled or defaulted is never
  approved again.
- ``balance_paid`` releases what was paid, up to the hold; paying the balance in full releases
  everything and closes the order; ``order_canceled`` releases everything and closes it;
  ``balance_defaulted`` releases nothing and the hold stays counted against the buyer.
- An approved fast refund holds the refund amount and counts against the quota from its first
  approval; ``goods_returned`` releases it; ``goods_not_returned`` and ``refund_abuse`` release
  nothing. A refund with any of these outcomes is never approved again.

Amounts are integer minor units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from serving.ledger.idempotency import Refusal
from serving.policy import FAST_REFUND, PRESALE
from serving.schema import OUTCOME_KINDS

OPEN = "open"
PAID = "paid"  # the balance is paid in full
RELEASED_STATES = frozenset({PAID, "canceled", "returned"})  # nothing stays held
CLOSED_STATES = frozenset({PAID, "canceled", "defaulted", "returned", "not_returned", "abuse"})

ORDER_UNKNOWN = "outcome_order_unknown"
REFUND_UNKNOWN = "outcome_refund_unknown"
OTHER_BUYER = "outcome_buyer_mismatch"
ORDER_CLOSED = "outcome_order_closed"
EXCEEDS_BALANCE = "outcome_exceeds_balance"
EXCEEDS_REFUND = "outcome_exceeds_refund"


@dataclass(frozen=True)
class Position:
    """One order's or refund's state in the ledger (minor units).

    Attributes:
        amount: Held at the latest approval (the unpaid balance, or the refund amount); 0 when
            never approved.
        released: Released by outcomes since the latest approval.
        paid: Presale: the balance paid on the order so far.
        state: ``open`` or the state an outcome closed it in (``CLOSED_STATES``).
        opened_at: When the ledger first recorded it (its first approval, or the outcome on an
            order or refund never held); an approved fast refund counts in the quota window
            from then.
    """

    amount: int = 0
    released: int = 0
    paid: int = 0
    state: str = OPEN
    opened_at: datetime | None = None

    @property
    def held(self) -> int:
        """What the position counts against the buyer now."""
        return self.amount - self.released


@dataclass(frozen=True)
class Usage:
    """The buyer's live state from the ledger.

    Attributes:
        exposure: Outstanding ship-before-balance balances of the buyer's other orders (minor units).
        refund_count: The buyer's other fast refunds granted in the quota window.
        refund_amount: Their amount (minor units).
        position: The ledger's position of the order or refund being decided (None: none yet):
            a repeat decision holds only the balance still unpaid, and a settled one declines.
        explored_loss: Expected loss of the service's explored approvals this calendar month
            (minor units), against the exploration budget.
    """

    exposure: int = 0
    refund_count: int = 0
    refund_amount: int = 0
    position: Position | None = None
    explored_loss: int = 0


def decided_at_risk(service: str, buyer_id: int, latest: Mapping[int, int]) -> int:
    """The amount at risk an outcome is checked against: the buyer's latest decision on the ref.

    Args:
        service: ``PRESALE`` or ``FAST_REFUND``.
        buyer_id: The buyer the outcome names.
        latest: Buyer -> the amount at risk of that buyer's latest decision on the order or refund.

    Raises:
        Refusal: 404 when nobody's decision is on record, 409 when only another buyer's is.
    """
    if buyer_id in latest:
        return latest[buyer_id]
    what = "order" if service == PRESALE else "refund"
    if latest:
        raise Refusal(409, OTHER_BUYER, f"this {what} was decided for another buyer")
    raise Refusal(404, ORDER_UNKNOWN if service == PRESALE else REFUND_UNKNOWN, f"no decision on this {what}")


def closed_text(service: str, position: Position | None, at_risk: int) -> str | None:
    """Why the order or refund can no longer be approved (None: it can be).

    Args:
        service: ``PRESALE`` or ``FAST_REFUND``.
        position: Its position (None: the ledger has none).
        at_risk: The balance or refund amount the request names.
    """
    if position is None:
        return None
    if position.state in CLOSED_STATES:
        what = "order" if service == PRESALE else "refund"
        return f"This {what} is already settled ({position.state}); it cannot be approved again."
    if service == PRESALE and at_risk - position.paid <= 0:
        return "This order's balance is already paid."
    return None


def to_hold(service: str, position: Position | None, at_risk: int) -> int:
    """What an approval holds: the balance still unpaid, or the refund amount."""
    paid = position.paid if position is not None and service == PRESALE else 0
    return max(at_risk - paid, 0)


def counts_in_quota(position: Position, since: datetime) -> bool:
    """Whether a fast refund's position counts against the quota window starting at ``since``."""
    return position.amount > 0 and position.opened_at is not None and position.opened_at >= since


def approve(position: Position | None, hold: int, now: datetime) -> Position:
    """The position after an approval holding ``hold`` (replacing any earlier hold)."""
    if position is None:
        return Position(amount=hold, opened_at=now)
    return replace(position, amount=hold, released=0)


def apply_outcome(
    position: Position | None, kind: str, amount: int | None, at_risk: int, now: datetime
) -> tuple[Position, int | None, int]:
    """Apply one outcome to a position.

    Args:
        position: The order's or refund's position (None: decided but never held).
        kind: One of ``OUTCOME_KINDS``.
        amount: The amount the outcome names (``balance_paid``: what was paid; None: not given,
            for a payment the balance left).
        at_risk: The balance or refund amount of the latest decision on it.
        now: When the outcome is recorded (opens a position the ledger did not have).

    Returns:
        ``(position after, amount recorded, amount released)``.

    Raises:
        Refusal: 409 when the outcome cannot apply: a balance outcome on an order paid in full
            or canceled, a payment beyond the balance left, a refund outcome above the refund.
    """
    service, state = OUTCOME_KINDS[kind]
    position = position or Position(opened_at=now)
    if service == FAST_REFUND:
        if amount is not None and amount > at_risk:
            raise Refusal(409, EXCEEDS_REFUND, "amount is more than the fast refund's amount")
        release = position.held if state in RELEASED_STATES else 0
        return replace(position, released=position.released + release, state=state), amount, release
    left = at_risk - position.paid
    if position.state == "canceled":
        raise Refusal(409, ORDER_CLOSED, "the order was canceled")
    if kind == "balance_paid":
        paid = left if amount is None else amount
        if left <= 0 or paid > left:
            raise Refusal(409, EXCEEDS_BALANCE, "payment is more than the balance left to pay")
        in_full = paid == left
        release = position.held if in_full else min(paid, position.held)
        after = replace(
            position,
            paid=position.paid + paid,
            released=position.released + release,
            state=PAID if in_full else position.state,
        )
        return after, paid, release
    if position.state == PAID or left <= 0:
        raise Refusal(409, ORDER_CLOSED, "the balance is paid in full")
    release = position.held if state in RELEASED_STATES else 0
    return replace(position, released=position.released + release, state=state), amount, release
