"""Settle what buyers owe: presale balances (with the legacy ship-before-balance rule) and pay-later bills."""

from __future__ import annotations

import numpy as np

from features.legacy import legacy_presale
from features.outcomes import BALANCE_GRACE
from simulator import hazards, standing
from simulator.calendar import DAY, HOUR, NEVER, Calendar, lag_days, uniform_between
from simulator.config import Params
from simulator.population import Population

Columns = dict[str, np.ndarray]
GRACE_DAYS = BALANCE_GRACE.days  # a balance unpaid this long after its due date is a default
BILL_LATE_PAY_S = (HOUR, 25 * DAY)  # a late but good bill is paid this long after its due date (uniform)
BILL_DUE_AFTER_STATEMENT = 9 * DAY - 8 * HOUR  # due the 10th, local midnight (UTC+8), of the statement month


def settle_presales(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    pre: Columns,
    vip: np.ndarray,
    readings: Columns,
    params: Params,
) -> tuple[Columns, Columns]:
    """Decide ship-before-balance at the deposit, then draw payment and fulfilment of each presale.

    The decision is the legacy rule (``features.legacy.legacy_presale``: VIP at the deposit and
    latest score before it) or, for a presale the rule declines, exploration with probability
    ``params.presale_explore_share``. The default is drawn from ``hazards.presale_default_prob``
    under that decision (moral hazard), with the stress of the due month.

    Args:
        rng: The shard's generator.
        pop: The shard's buyers.
        cal: The calendar.
        pre: Presale orders from ``activity.presale_orders``.
        vip: VIP path from ``standing.vip_path``.
        readings: Credit readings from ``standing.credit_readings``.
        params: Generative constants.

    Returns:
        ``(presales, fulfilment)``: presale-table columns (plus ``legacy``, ``explored`` and the
        truth ``p_default_if_shipped`` / ``p_default_if_held``) and the orders' fulfilment instants.
    """
    b = pre["b"]
    n = b.size
    fest = cal.festivals
    due = (
        np.asarray([f.due_at for f in fest], dtype=np.int64)[pre["festival"]] if n else np.zeros(0, np.int64)
    )
    opens = np.asarray([f.deposit_end for f in fest], dtype=np.int64)[pre["festival"]] if n else due
    due_month = np.asarray([f.due_month for f in fest], dtype=np.int64)[pre["festival"]] if n else due
    share = rng.choice(np.asarray([0.10, 0.15, 0.20]), n)
    deposit = np.round(pre["amount"] * share, 2)
    created = pre["created_at"]
    deposit_at = np.minimum(created + rng.integers(10, 600, n), np.maximum(created, opens - 1))
    score = standing.latest_score(readings, b, deposit_at)
    legacy = legacy_presale(standing.vip_at(cal, vip, b, deposit_at), np.where(score < 0, np.nan, score))
    explored = ~legacy & (rng.random(n) < params.presale_explore_share)
    sbb = legacy | explored
    state = pop.stress[b, due_month]
    default = rng.random(n) < hazards.presale_default_prob(pop, b, state, pre["amount"], params, sbb)
    deposit_state = pop.stress[b, cal.month_index(deposit_at)]
    late = rng.random(n) < hazards.late_but_paid_prob(pop, b, state)
    paid, fulfilment = fulfil_presales(rng, sbb, default, late, opens, due)
    presales = {
        "b": b,
        "deposit_amount": deposit,
        "deposit_paid_at": deposit_at,
        "balance_amount": np.round(pre["amount"] - deposit, 2),
        "balance_due_at": due,
        "balance_paid_at": paid,
        "shipped_before_balance": sbb,
        "legacy": legacy,
        "explored": explored,
        "amount": pre["amount"],
        "p_default_if_shipped": hazards.presale_default_at_deposit(
            pop, b, deposit_state, pre["amount"], params, True
        ),
        "p_default_if_held": hazards.presale_default_at_deposit(
            pop, b, deposit_state, pre["amount"], params, False
        ),
    }
    return presales, fulfilment


def fulfil_presales(
    rng: np.random.Generator,
    sbb: np.ndarray,
    default: np.ndarray,
    late: np.ndarray,
    opens: np.ndarray,
    due: np.ndarray,
) -> tuple[np.ndarray, Columns]:
    """Payment, shipping, delivery and cancellation of presales, given the decision and the default.

    Args:
        rng: Generator.
        sbb: Shipped before the balance (the decision at the deposit).
        default: The balance is still unpaid 7 days after its due date.
        late: A payer pays after the due date (within the grace period).
        opens: Balance phase opening instants (seconds).
        due: Balance due instants (seconds).

    Returns:
        ``(balance_paid_at, order fulfilment columns)``; instants in seconds, ``NEVER`` if none.
    """
    n = sbb.size
    # ordinary buyers pay early to get their goods; trusted buyers already have them
    on_time = opens + ((due - opens) * rng.random(n) ** np.where(sbb, 0.7, 2.0)).astype(np.int64)
    late_paid = due + rng.integers(HOUR, GRACE_DAYS * DAY - HOUR, n)
    very_late = due + rng.integers(GRACE_DAYS * DAY + HOUR, 60 * DAY, n)
    paid = np.where(late, late_paid, on_time)
    paid = np.where(default, np.where(sbb & (rng.random(n) < 0.25), very_late, NEVER), paid)
    shipped = np.where(
        sbb,
        uniform_between(rng, opens, opens + 12 * HOUR),
        np.where(paid < NEVER, np.maximum(paid, opens) + lag_days(rng, n, 1.0), NEVER),
    )
    delivered = np.where(shipped < NEVER, shipped + lag_days(rng, n, 2.5, 0.5), NEVER)
    confirmed = np.where(
        delivered < NEVER, delivered + np.minimum(lag_days(rng, n, 3.0, 0.8), 10 * DAY), NEVER
    )
    canceled = np.where(default & ~sbb, due + GRACE_DAYS * DAY + rng.integers(0, 6 * HOUR, n), NEVER)
    return paid, {
        "paid_at": paid,
        "shipped_at": shipped,
        "delivered_at": delivered,
        "confirmed_at": confirmed,
        "canceled_at": canceled,
    }


def credit_bills(
    rng: np.random.Generator, pop: Population, cal: Calendar, orders: Columns, params: Params
) -> Columns:
    """Monthly pay-later bills: the month's pay-later spend, due on the 10th (local) of the next month.

    Returns:
        Columns ``b``, ``due_month``, ``due_at``, ``amount_due``, ``paid_at``, ``amount_paid``.
    """
    months = cal.months
    use = (orders["payment_method"] == 3) & (orders["canceled_at"] == NEVER) & (orders["kind"] == 0)
    key = orders["b"][use] * months + orders["month"][use]
    total = np.bincount(key, weights=orders["amount"][use], minlength=pop.n * months)
    cell = np.flatnonzero(total > 0)
    b, m = cell // months, cell % months
    due_month = m + 1
    statement = cal.month_start[due_month]
    due = statement + BILL_DUE_AFTER_STATEMENT
    state = pop.stress[b, due_month]
    bad = rng.random(b.size) < hazards.bill_bad_prob(pop, b, state, params)
    late = rng.random(b.size) < hazards.late_but_paid_prob(pop, b, state)
    on_time = due - ((due - statement) * rng.random(b.size)).astype(np.int64)
    paid = np.where(late, due + rng.integers(*BILL_LATE_PAY_S, b.size), on_time)
    very_late = due + rng.integers(31 * DAY, 120 * DAY, b.size)
    paid = np.where(bad, np.where(rng.random(b.size) < 0.4, very_late, NEVER), paid)
    amount = np.round(total[cell], 2)
    return {
        "b": b,
        "due_month": due_month,
        "due_at": due,
        "amount_due": amount,
        "paid_at": paid,
        "amount_paid": np.where(paid < NEVER, amount, np.nan),
    }
