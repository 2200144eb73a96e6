"""The hazard functions: the one place that says how likely each event is.

The event generators (``activity``, ``outcomes``) draw from these functions and the
truth (``truth``) integrates the very same functions, so the true risk is the risk
of the process that wrote the raw tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.config import Params
from simulator.stress import STATES, stress_transitions

if TYPE_CHECKING:
    from simulator.calendar import Calendar
    from simulator.population import Population

GAUSS_HERMITE_NODES = 9
# Refund requests: the stated reason (contract.REFUND_REASONS 0..5) and the evidence photos are
# drawn after, and depending on, whether the refund is bad; refund_loss_posterior inverts that.
REASONS_GOOD = np.array([0.15, 0.08, 0.07, 0.2, 0.3, 0.2])
REASONS_BAD = np.array([0.35, 0.3, 0.1, 0.2, 0.03, 0.02])
PHOTO_REASONS = np.array([True, True, True, True, False, False, False])  # reasons that invite photos
PHOTOS_WITH_REASON = 1.5  # mean photos when the reason invites them
PHOTOS_OTHERWISE = 0.3
PHOTOS_BAD_EXTRA = 0.5  # a bad claim brings more photos on average


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _stress_shift(state: np.ndarray, shifts: tuple[float, float]) -> np.ndarray:
    return np.asarray((0.0, *shifts))[state]


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


def refund_reason_probs(bad: bool) -> np.ndarray:
    """Distribution of the stated reason (``contract.REFUND_REASONS`` 0..5) of a good or a bad refund.

    The last reason, ``not_received`` (6), belongs to lost parcels only and is never bad.
    """
    return REASONS_BAD if bad else REASONS_GOOD


def refund_photo_rate(reason: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Poisson mean of the evidence photos of a refund request (photos per request)."""
    return np.where(PHOTO_REASONS[reason], PHOTOS_WITH_REASON, PHOTOS_OTHERWISE) + PHOTOS_BAD_EXTRA * bad


def refund_loss_posterior(prior: np.ndarray, reason: np.ndarray, photos: np.ndarray) -> np.ndarray:
    """Probability that a refund is bad given its prior and what the request states (Bayes' rule).

    Args:
        prior: ``refund_bad_prob`` of the request (traits and the stress of the order's month).
        reason: Reason index (``contract.REFUND_REASONS``); 6 (``not_received``, lost parcels) is never bad.
        photos: Evidence photos attached.

    Returns:
        ``P(bad | prior, reason, photos)``: reason and photo count are drawn from the bad or the
        good distribution (``refund_reason_probs``, ``refund_photo_rate``), independently of
        everything else, so the likelihood ratio is exact.
    """
    lost = reason >= REASONS_GOOD.size
    r = np.minimum(reason, REASONS_GOOD.size - 1)
    lam_good = refund_photo_rate(r, np.zeros(r.size))
    lam_bad = refund_photo_rate(r, np.ones(r.size))
    # Poisson likelihood ratio: exp(-(lam_bad - lam_good)) * (lam_bad / lam_good) ** photos
    log_lr = (
        np.log(REASONS_BAD[r] / REASONS_GOOD[r]) - (lam_bad - lam_good) + photos * np.log(lam_bad / lam_good)
    )
    prior = np.clip(prior, 1e-300, 1.0 - 1e-16)
    logit = np.log(prior) - np.log1p(-prior) + log_lr
    return np.where(lost, 0.0, sigmoid(logit))


def presale_default_prob(
    pop: Population,
    idx: np.ndarray,
    state: np.ndarray,
    amount: np.ndarray,
    params: Params,
    shipped: np.ndarray | bool,
) -> np.ndarray:
    """Probability that a presale balance is still unpaid 7 days after its due date.

    Args:
        pop: The shard's buyers.
        idx: Buyer index of each presale.
        state: Stress state of the buyer in the month of the balance due date.
        amount: Order amount (currency units).
        params: Generative constants.
        shipped: Whether the goods were shipped before the balance (the buyer already holds
            them). Moral hazard: the logit rises by ``presale_moral_hazard x opportunism``, so an
            honest buyer (opportunism near 0) is unchanged; fraudsters default at
            ``fraud_default`` either way.

    Returns:
        Probability per presale.
    """
    p = params
    logit = (
        p.presale_default_base
        - p.presale_default_rel * pop.rel_z[idx]
        + _stress_shift(state, p.presale_default_stress)
        + p.presale_default_amount * np.log(np.maximum(amount, 1.0) / 1000.0)
        + p.presale_moral_hazard * pop.opportunism[idx] * np.asarray(shipped, dtype=np.float64)
    )
    return np.where(pop.fraudster[idx], p.fraud_default, sigmoid(logit))


def presale_default_at_deposit(
    pop: Population,
    idx: np.ndarray,
    deposit_state: np.ndarray,
    amount: np.ndarray,
    params: Params,
    shipped: np.ndarray | bool,
) -> np.ndarray:
    """Default probability of a presale as known at its deposit: the due month's stress integrated.

    The deposit is paid in the month before the balance due month, so the due month's stress
    is one step of the buyer's chain from ``deposit_state``:
    ``sum_s' P[deposit_state, s'] presale_default_prob(s')``. Exact.
    """
    trans = stress_transitions(pop.fragility[idx], params)
    rows = np.arange(idx.size)
    out = np.zeros(idx.size)
    for s in range(STATES):
        out += trans[rows, deposit_state, s] * presale_default_prob(
            pop, idx, np.full(idx.size, s), amount, params, shipped
        )
    return out


def late_but_paid_prob(pop: Population, b: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Probability that a non-defaulting payer still pays after the due date (a visible warning sign)."""
    return sigmoid(-2.8 - 0.7 * pop.rel_z[b] + 1.3 * (state > 0))


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


def presale_expected_defaults(pop: Population, state: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Default probability of a presale not yet placed if held and if shipped early (per buyer).

    Averaged over the presale category mix and the lognormal price (9-node Gauss-Hermite).
    """
    idx = np.arange(pop.n)
    weights = np.asarray(params.presale_category_weights) / sum(params.presale_category_weights)
    nodes, node_weights = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)
    node_weights = node_weights / node_weights.sum()
    held, early = np.zeros(pop.n), np.zeros(pop.n)
    states = np.full(pop.n, state)
    for c in np.flatnonzero(weights):
        median = params.category_median_price[c] * pop.spend
        sigma = params.category_price_sigma[c]
        for x, w in zip(nodes, node_weights, strict=True):
            amount = median * np.exp(sigma * x)
            held += weights[c] * w * presale_default_prob(pop, idx, states, amount, params, False)
            early += weights[c] * w * presale_default_prob(pop, idx, states, amount, params, True)
    return held, early


def presale_expected_default(
    pop: Population, state: int, params: Params, shipped: np.ndarray | float = 0.0
) -> np.ndarray:
    """Default probability of a presale not yet placed, shipped early with probability ``shipped``."""
    held, early = presale_expected_defaults(pop, state, params)
    return held + shipped * (early - held)
