"""The true 90-day risk of each buyer at each month start, integrated from ``simulator.hazards``.

``p_bad_90d`` at ``T = month_start[m]`` is the probability that at least one bad outcome of
``features.outcomes`` *becomes a fact* in ``(T, T + 90 days]`` (the label's event and timing),
given the information set

* the buyer's latent traits and stress path up to and including month ``m`` (the stress of
  later months is integrated over the buyer's Markov chain);
* what is observable about triggers placed before ``T``: regular orders (instant, category,
  cancellation, delivery (not the payment and shipping instants of an order not yet
  delivered), the refund request with its reason, photos and kind, the
  return's shipping and receipt, an abuse finding, a dispute's opening and closing), presales
  (amount, ship-before-balance decision) and pay-later bills (due date, payment); what has not
  happened yet is integrated over its distribution given that it has not happened
  (``pending``);
* the legacy presale rule's answer at ``T`` (VIP and latest score), which with the declared
  exploration share stands in for the ship decision of presales not yet placed;
* future activity at its expected rates (activity x season x active share).

Given the stress path, every trigger's outcome is independent of the others, so the
probability of no fact in the window is a product: over known items of ``1 - p``, and over
Poisson streams of ``exp(-expected count of items with a fact in the window)``. Items are
grouped by the month whose stress governs them (an order's month, a presale's or bill's due
month) and the months ``m .. m + 3`` are chained through the transition matrix. The timing of
each fact (a regular order's lags from ``timing``; the deterministic due + 7 / due + 30 days of
balances and bills; the instant of a violation in its month) decides whether it falls in the
window. See docs/simulator.md for the derivation and the error bound.
"""

from __future__ import annotations

import numpy as np

from features.outcomes import BALANCE_GRACE, BILL_PAST_DUE
from simulator import hazards, pending, stress, timing
from simulator.aftersales import LARGE_APPLIANCE
from simulator.calendar import Calendar, month_density
from simulator.config import Params
from simulator.payments import BILL_DUE_AFTER_STATEMENT, BILL_LATE_PAY_S
from simulator.population import Population

Columns = dict[str, np.ndarray]
WINDOW = timing.WINDOW
BALANCE_FACT = int(BALANCE_GRACE.total_seconds())
BILL_FACT = int(BILL_PAST_DUE.total_seconds())
AHEAD = 4  # months m .. m + 3 can hold a fact of the window (m + 3 for 89-day triplets)


def _log1m(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(1.0 - x, 1e-300))


def _in_window(t: np.ndarray | int, start: int) -> np.ndarray:
    return (np.asarray(t) > start) & (np.asarray(t) <= start + WINDOW)


def _refund_mix(pop: Population, f: pending.OrderFactors, params: Params) -> np.ndarray:
    """Refund probability of an order averaged over the buyer's category mix, by return window (n x 2)."""
    weights = hazards.category_weights(pop, params) * f.refund
    large = np.arange(weights.shape[1]) == LARGE_APPLIANCE
    return np.column_stack([weights[:, ~large].sum(axis=1), weights[:, large].sum(axis=1)])


def _future_orders(
    f: pending.OrderFactors,
    mix: np.ndarray,
    k: timing.OrderKernels,
    offset: int,
    density: np.ndarray,
) -> np.ndarray:
    """Probability that one order of a future month has a fact in the window, per stress state (n x 3).

    Args:
        f: Per-buyer factors.
        mix: ``_refund_mix``.
        k: Timing kernels.
        offset: Seconds from ``T`` to the month's start (>= 0).
        density: The month's ``month_density``.
    """
    t = offset + np.arange(density.size) * k.step + k.step // 2  # bin centres, seconds after T
    idx = k.index(-t)
    refund = k.refund[:, idx] @ density  # by return window
    both = k.both[:, idx] @ density
    dispute = k.dispute[idx] @ density
    bad_dispute = f.opened * f.ruled_lost
    per_bad_refund = mix @ refund - bad_dispute * (mix @ both)  # n
    survive = (1 - f.cancel) * (1 - f.lost_parcel)
    return survive * (f.q * per_bad_refund[:, None] + (bad_dispute * dispute)[:, None])


def _bill_still_bad(
    bad: np.ndarray, late: np.ndarray, due: np.ndarray, paid: np.ndarray, t0: int
) -> np.ndarray:
    """P(a known bill turns 30+ days past due | paid or not by ``t0``), ``t0`` before due + 30 days.

    A bad bill is paid 31+ days late or never; a good one on time (before the due date) or, with
    probability ``late``, uniformly within ``BILL_LATE_PAY_S`` after it.
    """
    lo, hi = BILL_LATE_PAY_S
    still_late = late * np.clip((hi - np.clip(t0 - due, lo, hi)) / (hi - lo), 0.0, 1.0)
    unpaid = bad + (1 - bad) * np.where(t0 > due, still_late, 1.0)
    return np.where(paid <= t0, 0.0, bad / np.maximum(unpaid, 1e-300))


def p_bad_90d(
    pop: Population,
    cal: Calendar,
    expected: np.ndarray,
    orders: Columns,
    refunds: Columns,
    disputes: Columns,
    presales: Columns,
    bills: Columns,
    legacy_now: np.ndarray,
    params: Params,
    step: int = timing.STEP,
) -> np.ndarray:
    """True probability that a bad outcome becomes a fact in ``(T, T + 90 days]`` (``n x months``).

    Args:
        pop: The shard's buyers.
        cal: The calendar.
        expected: Expected regular orders per month (``hazards.expected_orders``).
        orders: All orders (``b``, ``month``, ``created_at``, ``category``, ``kind`` (0 is regular),
            ``canceled_at``, ``delivered_at``).
        refunds: Refund requests (see ``pending.KnownOrders``).
        disputes: Disputes (``o``, ``opened_at``, ``closed_at``).
        presales: Presale orders (``b``, ``festival``, ``amount``, ``shipped``).
        bills: Issued pay-later bills (``b``, ``due_month``, ``due_at``, ``paid_at``).
        legacy_now: Whether the legacy presale rule approves each buyer at each month start
            (``n x months``).
        params: Generative constants.
        step: Time grid of the lag distributions (seconds).

    Returns:
        NaN where the buyer had not registered by the month start. See the module docstring.
    """
    n = pop.n
    states = range(stress.STATES)
    rows = np.arange(n)
    kern = timing.order_kernels(step)
    f = pending.OrderFactors.of(pop, params)
    mix = _refund_mix(pop, f, params)
    horizon = expected.shape[1]
    density = {j: month_density(cal, j, step, params) for j in range(horizon)}
    p_bill = np.column_stack([hazards.bill_bad_prob(pop, rows, np.full(n, s), params) for s in states])
    pairs = [hazards.presale_expected_defaults(pop, s, params) for s in states]
    held = np.column_stack([held for held, _ in pairs])
    early = np.column_stack([early for _, early in pairs])
    severe = sum(rate * sev[2] for _, rate, sev in hazards.violation_rates(pop, cal, params))
    pay_later = hazards.payment_weights(pop, params)[:, 3]
    bill_issued = 1 - np.exp(-expected * pay_later[:, None] * (1 - params.cancel_rate))  # by spend month
    bill_fact = cal.month_start[:-1] + BILL_DUE_AFTER_STATEMENT + BILL_FACT  # by due month
    past = pending.KnownOrders(f, pop, orders, refunds, disputes)
    tables = timing.pending_tables(step)
    bill_state = pop.stress[bills["b"], bills["due_month"]]
    late = hazards.late_but_paid_prob(pop, bills["b"], bill_state)
    bill_bad = p_bill[bills["b"], bill_state]
    trans = stress.stress_transitions(pop.fragility, params)
    explore = params.presale_explore_share

    out = np.full((n, cal.months), np.nan)
    for m in range(cal.months):
        t0 = int(cal.month_start[m])
        known = past.log_survival(tables, t0)
        for fest_i, fest in enumerate(cal.festivals):
            if fest.deposit_end <= t0 and _in_window(fest.due_at + BALANCE_FACT, t0):
                pick = presales["festival"] == fest_i
                b = presales["b"][pick]
                s = pop.stress[b, fest.due_month]
                p = hazards.presale_default_prob(
                    pop, b, s, presales["amount"][pick], params, presales["shipped"][pick]
                )
                known += np.bincount(b, weights=_log1m(p), minlength=n)
        pick = (bills["due_month"] <= m) & _in_window(bill_fact[bills["due_month"]], t0)
        p = _bill_still_bad(bill_bad[pick], late[pick], bills["due_at"][pick], bills["paid_at"][pick], t0)
        known += np.bincount(bills["b"][pick], weights=_log1m(p), minlength=n)

        ship = explore + (1 - explore) * legacy_now[:, m]
        v = np.ones((n, stress.STATES))
        for j in range(min(m + AHEAD, horizon) - 1, m - 1, -1):
            centres = int(cal.month_start[j]) + np.arange(density[j].size) * step + step // 2
            share = density[j] @ _in_window(centres, t0)
            offset = int(cal.month_start[j]) - t0
            log_s = -expected[:, j, None] * _future_orders(f, mix, kern, offset, density[j])
            log_s -= (severe[:, j] * share)[:, None]
            if j > m and _in_window(bill_fact[j], t0):
                log_s += _log1m(bill_issued[:, j - 1, None] * p_bill)
            for fest in cal.festivals:
                if (
                    fest.due_month == j
                    and fest.deposit_start >= t0
                    and _in_window(fest.due_at + BALANCE_FACT, t0)
                ):
                    rate = hazards.presale_rate(pop, fest.weight, fest.deposit_start, j - 1, params)
                    log_s -= rate[:, None] * (held + ship[:, None] * (early - held))
            v = np.exp(log_s) * v
            if j > m:
                v = np.einsum("nij,nj->ni", trans, v)
        p = 1.0 - np.exp(known) * v[rows, pop.stress[:, m]]
        out[:, m] = np.where(pop.registered_at < t0, np.clip(p, 0.0, 1.0), np.nan)
    return out
