"""The true 90-day risk of each buyer at each month start, integrated from ``simulator.hazards``.

What ``p_bad_90d`` at month start ``T = month_start[m]`` is: the probability, under the
generative process, that at least one bad outcome is *triggered* in months ``m, m+1, m+2``
(the three calendar months, 89-92 days, starting at ``T``), given

* the buyer's latent traits and the stress state of month ``m`` (the stress of later months
  is integrated over the buyer's Markov chain);
* the buyer's expected activity in those months (activity level x season x active share);
* what is already fixed at ``T``: the presale orders placed in a deposit phase that ended
  by ``T`` and the pay-later bill issued at ``T``.

Triggers and the month whose stress governs them: a regular order (its refund turning bad,
its dispute lost) in the order's month; a presale in the month of its balance due date; a
pay-later bill in the month of its due date; a severe violation in its month. Within a
month, given the stress state, the triggers are independent thinnings of Poisson order
streams (plus Bernoulli bills and known presales), so

    P(no bad in month j | s) = exp(-E[orders_j] * q_order(s) - severe_rate_j
                                   - sum_f rate_f * E[p_default(s)])
                               * (1 - P(bill due in j) * p_bill(s))

and the three months chain through the stress transition matrix ``P``:
``survive = S_m(s_m) * sum_s' P[s_m, s'] S_{m+1}(s') * sum_s'' P[s', s''] S_{m+2}(s'')``.
``p_bad_90d = 1 - survive``, computed exactly (the price average of presale defaults by
9-node Gauss-Hermite quadrature).
"""

from __future__ import annotations

import numpy as np

from simulator import hazards
from simulator.calendar import Calendar
from simulator.config import Params
from simulator.population import Population

Columns = dict[str, np.ndarray]


def _log1m(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(1.0 - x, 1e-12))


def monthly_log_survival(
    pop: Population,
    cal: Calendar,
    expected: np.ndarray,
    presales: Columns,
    bills: Columns,
    params: Params,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of no bad trigger per buyer, month and stress state.

    Args:
        pop: The shard's buyers.
        cal: The calendar.
        expected: Expected regular orders (``hazards.expected_orders``).
        presales: Presale orders (``b``, ``festival``, ``amount``).
        bills: Issued bills (``b``, ``due_month``).
        params: Generative constants.

    Returns:
        ``(expected_only, known_first)``, both ``n x (months + 3) x 3``: the first uses expected
        presales and bills throughout; the second uses, for month ``j``, the presales and the bill
        already fixed at ``month_start[j]``.
    """
    n, horizon = expected.shape
    idx = np.arange(n)
    states = range(hazards.STATES)
    q_order = np.column_stack([hazards.order_bad_prob(pop, s, params) for s in states])
    p_bill = np.column_stack([hazards.bill_bad_prob(pop, idx, np.full(n, s), params) for s in states])
    p_presale = np.column_stack(
        [hazards.presale_expected_default(pop, s, params, params.presale_explore_share) for s in states]
    )
    severe = sum(rate * sev[2] for _, rate, sev in hazards.violation_rates(pop, cal, params))

    base = -expected[:, :, None] * q_order[:, None, :] - severe[:, :, None]
    pay_later = hazards.payment_weights(pop, params)[:, 3]
    prev = np.concatenate([np.zeros((n, 1)), expected[:, :-1]], axis=1)
    bill_prob = 1 - np.exp(-prev * pay_later[:, None] * (1 - params.cancel_rate))
    expected_only = base + _log1m(bill_prob[:, :, None] * p_bill[:, None, :])

    issued = np.zeros((n, horizon), dtype=bool)
    issued[bills["b"], bills["due_month"]] = True
    known_first = base + _log1m(issued[:, :, None] * p_bill[:, None, :])

    for f, fest in enumerate(cal.festivals):
        j = fest.due_month
        rate = hazards.presale_rate(pop, fest.weight, fest.deposit_start, j - 1, params)
        expected_only[:, j, :] -= rate[:, None] * p_presale
        sel = presales["festival"] == f
        b = presales["b"][sel]
        for s in states:
            p = hazards.presale_default_prob(
                pop, b, np.full(b.size, s), presales["amount"][sel], params, presales["shipped"][sel]
            )
            known_first[:, j, s] += np.bincount(b, weights=_log1m(p), minlength=n)
    return expected_only, known_first


def p_bad_90d(
    pop: Population,
    cal: Calendar,
    expected: np.ndarray,
    presales: Columns,
    bills: Columns,
    params: Params,
) -> np.ndarray:
    """True probability of a bad outcome in the 3 months from each month start (``n x months``).

    NaN where the buyer had not registered by the month start. See the module docstring.
    """
    expected_only, known_first = monthly_log_survival(pop, cal, expected, presales, bills, params)
    trans = hazards.stress_transitions(pop.fragility, params)
    rows = np.arange(pop.n)
    out = np.full((pop.n, cal.months), np.nan)
    for m in range(cal.months):
        v = np.exp(expected_only[:, m + 2, :])
        v = np.exp(expected_only[:, m + 1, :]) * np.einsum("nij,nj->ni", trans, v)
        v = np.exp(known_first[:, m, :]) * np.einsum("nij,nj->ni", trans, v)
        p = 1.0 - v[rows, pop.stress[:, m]]
        out[:, m] = np.where(pop.registered_at < cal.month_start[m], np.clip(p, 0.0, 1.0), np.nan)
    return out
