"""The hazard functions: the one place that says how likely each event is.

The event generators (``activity``, ``outcomes``) draw from these functions and the
truth (``truth``) integrates the very same functions, so the true risk is the risk
of the process that wrote the raw tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.config import Params

if TYPE_CHECKING:
    from simulator.calendar import Calendar
    from simulator.population import Population

STATES = 3  # stress: 0 normal, 1 strained, 2 distressed
GAUSS_HERMITE_NODES = 9


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _stress_shift(state: np.ndarray, shifts: tuple[float, float]) -> np.ndarray:
    return np.asarray((0.0, *shifts))[state]


def stress_transitions(fragility: np.ndarray, params: Params) -> np.ndarray:
    """Per-buyer monthly transition matrices of the stress chain (``n x 3 x 3``, rows sum to 1)."""
    p = params
    n = fragility.size
    t = np.zeros((n, STATES, STATES))
    t[:, 0, 1] = np.minimum(0.5, p.stress_shock[0] * fragility)
    t[:, 0, 2] = np.minimum(0.2, p.stress_shock[1] * fragility)
    t[:, 1, 0] = p.stress_recover[0]
    t[:, 1, 2] = np.minimum(0.5, p.stress_worsen * fragility)
    t[:, 2, 1] = p.stress_recover[1]
    t[:, 2, 0] = p.stress_recover[2]
    for s in range(STATES):
        t[:, s, s] = 1.0 - t[:, s, :].sum(axis=1)
    return t


def alive_fraction(pop: Population, cal: Calendar) -> np.ndarray:
    """Share of each month (``n x (months + 3)``) the buyer is registered and active."""
    ms = cal.month_start[:-1]
    me = cal.month_start[1:]
    reg = pop.registered_at[:, None]
    frac = np.clip((me[None, :] - reg) / (me - ms)[None, :], 0.0, 1.0)
    months = np.arange(ms.size)[None, :]
    return np.where(months < pop.active_until[:, None], frac, 0.0)


def expected_orders(pop: Population, cal: Calendar, params: Params) -> np.ndarray:
    """Expected regular orders per month (``n x (months + 3)``): activity x season x alive share."""
    season = np.asarray(params.month_season)[cal.month_of_year[:-1] - 1]
    return pop.activity[:, None] * season[None, :] * alive_fraction(pop, cal)


def category_weights(pop: Population, params: Params) -> np.ndarray:
    """Category mix per buyer (``n x categories``): fraudsters favour resaleable high-value goods."""
    normal = np.asarray(params.category_weights) / sum(params.category_weights)
    fraud = np.asarray(params.fraud_category_weights) / sum(params.fraud_category_weights)
    return np.where(pop.fraudster[:, None], fraud[None, :], normal[None, :])


def payment_weights(pop: Population, params: Params) -> np.ndarray:
    """Payment-method mix per buyer (``n x 4``); only credit-line holders pay later."""
    base = np.asarray(params.payment_weights[:3])
    base = base / base.sum()
    heavy = np.where(pop.fraudster, 0.8, params.pay_later_heavy)
    has = pop.pay_later.astype(float)
    later = has * heavy
    return np.column_stack([base[None, :] * (1 - later)[:, None], later])


def refund_prob(category: np.ndarray, opportunism: np.ndarray, params: Params) -> np.ndarray:
    """Probability that an order (of a category) gets a refund request."""
    ret = np.asarray(params.category_return_rate)[category]
    return np.minimum(0.9, ret * (1 + params.refund_opportunism * opportunism))


def refund_bad_prob(pop: Population, idx: np.ndarray, state: np.ndarray, params: Params) -> np.ndarray:
    """Probability that a refund ends badly (return never shipped in 14 days, or found abusive)."""
    p = params
    logit = (
        p.refund_bad_base
        + p.refund_bad_opportunism * pop.opportunism[idx]
        - p.refund_bad_rel * pop.rel_z[idx]
        + _stress_shift(state, p.refund_bad_stress)
    )
    return sigmoid(logit)


def dispute_prob(pop: Population, idx: np.ndarray, params: Params) -> np.ndarray:
    """Probability that an order turns into a platform dispute."""
    p = params
    return np.minimum(
        0.5,
        p.dispute_base
        * (1 + p.dispute_hostility * pop.hostility[idx] + p.dispute_opportunism * pop.opportunism[idx]),
    )


def dispute_lost_prob(pop: Population, idx: np.ndarray, params: Params) -> np.ndarray:
    """Probability that a dispute is ruled for the seller (lost by the buyer)."""
    p = params
    return sigmoid(p.dispute_lost_base + p.dispute_lost_traits * (pop.hostility[idx] + pop.opportunism[idx]))


def presale_default_prob(
    pop: Population, idx: np.ndarray, state: np.ndarray, amount: np.ndarray, params: Params
) -> np.ndarray:
    """Probability that a presale balance is still unpaid 7 days after its due date."""
    p = params
    logit = (
        p.presale_default_base
        - p.presale_default_rel * pop.rel_z[idx]
        + _stress_shift(state, p.presale_default_stress)
        + p.presale_default_amount * np.log(np.maximum(amount, 1.0) / 1000.0)
    )
    return np.where(pop.fraudster[idx], p.fraud_default, sigmoid(logit))


def bill_bad_prob(pop: Population, idx: np.ndarray, state: np.ndarray, params: Params) -> np.ndarray:
    """Probability that a pay-later bill becomes 30+ days past due."""
    p = params
    logit = p.bill_bad_base - p.bill_bad_rel * pop.rel_z[idx] + _stress_shift(state, p.bill_bad_stress)
    return np.where(pop.fraudster[idx], p.fraud_default, sigmoid(logit))


def presale_rate(
    pop: Population, festival_weight: float, deposit_start: int, deposit_month: int, params: Params
) -> np.ndarray:
    """Expected presale orders of each buyer in one festival (0 if not registered/active by then)."""
    eligible = (pop.registered_at < deposit_start) & (deposit_month < pop.active_until)
    level = np.sqrt(pop.activity / params.orders_median)
    return params.presales_per_festival * festival_weight * level * eligible


def violation_rates(
    pop: Population, cal: Calendar, params: Params
) -> list[tuple[str, np.ndarray, tuple[float, float, float]]]:
    """Compliance findings per month: ``(kind, rate n x (months + 3), P(severity 1, 2, 3))``."""
    p = params
    alive = alive_fraction(pop, cal)
    months = np.arange(alive.shape[1])[None, :]
    reg = np.maximum(pop.reg_month, 0)[:, None]
    hostile = (p.violation_hostile_rate * pop.hostility**2)[:, None] * alive
    sev_h = p.severe_share_hostile
    ring = (p.ring_violation_rate * pop.ring)[:, None] * alive
    sev_r = p.ring_severe_share
    fraud_window = (months >= reg) & (months < pop.active_until[:, None] + 2)
    fraud = p.fraud_confirm_rate * (pop.fraudster[:, None] & fraud_window)
    sharing = 0.001 * alive
    return [
        ("abusive_language", hostile, (0.6, 0.4 - sev_h, sev_h)),
        ("fake_order", 0.6 * ring, (0.2, 0.8 - sev_r, sev_r)),
        ("scalping", 0.4 * ring, (0.2, 0.8 - sev_r, sev_r)),
        ("confirmed_fraud", fraud, (0.0, 0.0, 1.0)),
        ("account_sharing", sharing, (0.9, 0.1, 0.0)),
    ]


def order_bad_prob(pop: Population, state: int, params: Params) -> np.ndarray:
    """Probability that one regular order of each buyer leads to a bad outcome, in stress ``state``.

    A bad refund (refund probability averaged over the buyer's category mix) or a lost
    dispute; canceled orders and lost parcels have neither.
    """
    idx = np.arange(pop.n)
    weights = category_weights(pop, params)
    cats = np.arange(weights.shape[1])
    mean_refund = (weights * refund_prob(cats[None, :], pop.opportunism[:, None], params)).sum(axis=1)
    q = refund_bad_prob(pop, idx, np.full(pop.n, state), params)
    lost = dispute_prob(pop, idx, params) * dispute_lost_prob(pop, idx, params)
    survive = (1 - params.cancel_rate) * (1 - params.lost_parcel_rate)
    return survive * (1 - (1 - mean_refund * q) * (1 - lost))


def presale_expected_default(pop: Population, state: int, params: Params) -> np.ndarray:
    """Default probability of a presale order not yet placed, averaged over category and price."""
    idx = np.arange(pop.n)
    weights = np.asarray(params.presale_category_weights) / sum(params.presale_category_weights)
    nodes, node_weights = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)
    node_weights = node_weights / node_weights.sum()
    out = np.zeros(pop.n)
    states = np.full(pop.n, state)
    for c in np.flatnonzero(weights):
        median = params.category_median_price[c] * pop.spend
        sigma = params.category_price_sigma[c]
        for x, w in zip(nodes, node_weights, strict=True):
            amount = median * np.exp(sigma * x)
            out += weights[c] * w * presale_default_prob(pop, idx, states, amount, params)
    return out
