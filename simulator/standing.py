"""How the platform and the bureau see a buyer: VIP status and external credit-score readings."""

from __future__ import annotations

import numpy as np

from simulator import hazards, shifts
from simulator.calendar import DAY, HOUR, Calendar, uniform_between
from simulator.config import Params
from simulator.population import Population

Columns = dict[str, np.ndarray]
VIP_REVIEW_OFFSET = HOUR  # VIP status is recomputed at 01:00 UTC on the first of each month
_KEY = np.int64(10**10)  # buyer-major sort key: b * _KEY + instant


def vip_path(
    pop: Population, cal: Calendar, b: np.ndarray, created: np.ndarray, amount: np.ndarray, params: Params
) -> np.ndarray:
    """VIP status per buyer and month (``n x months``): trailing 12-month spend over the threshold.

    Spend before the period is the buyer's expected spend (the export does not hold it);
    spend inside the period is the realised spend of the orders given (not canceled).

    Args:
        pop: The shard's buyers.
        cal: The calendar.
        b: Buyer index of each order.
        created: Order instants.
        amount: Order amounts.
        params: Generative constants.

    Returns:
        Boolean ``n x months``; column ``m`` is the status from ``month_start[m] + 1h``.
    """
    months = cal.months
    realised = np.bincount(b * months + cal.month_index(created), weights=amount, minlength=pop.n * months)
    realised = realised.reshape(pop.n, months)
    weights = hazards.category_weights(pop, params)
    mean_price = (
        weights
        * np.asarray(params.category_median_price)
        * np.exp(np.asarray(params.category_price_sigma) ** 2 / 2)
    ).sum(axis=1)
    monthly = pop.activity * np.mean(params.month_season) * mean_price * pop.spend
    starts = cal.month_start[0] - (np.arange(12, 0, -1) * 30.44 * DAY).astype(np.int64)
    pre = monthly[:, None] * (pop.registered_at[:, None] < starts[None, :])
    spend = np.concatenate([pre, realised], axis=1)
    cum = np.concatenate([np.zeros((pop.n, 1)), np.cumsum(spend, axis=1)], axis=1)
    trailing = cum[:, 12 : 12 + months] - cum[:, :months]
    return trailing >= params.vip_spend_12m


def vip_events(rng: np.random.Generator, pop: Population, cal: Calendar, vip: np.ndarray) -> Columns:
    """vip_join / vip_leave account events implied by the VIP path (type indices 5 / 6)."""
    first = np.flatnonzero(vip[:, 0])
    t_first = uniform_between(rng, pop.registered_at[first], np.full(first.size, cal.month_start[0]))
    change = vip[:, 1:] != vip[:, :-1]
    b, m = np.nonzero(change)
    m = m + 1
    return {
        "b": np.concatenate([first, b]),
        "ts": np.concatenate([t_first, cal.month_start[m] + VIP_REVIEW_OFFSET]),
        "event_type": np.concatenate([np.full(first.size, 5), np.where(vip[b, m], 5, 6)]),
        "device_id": np.full(first.size + b.size, -1),
    }


def vip_at(cal: Calendar, vip: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Whether each buyer was VIP at instant ``t`` (as the account events say)."""
    m = np.clip(cal.month_index(t), 0, cal.months - 1)
    before_review = t < cal.month_start[m] + VIP_REVIEW_OFFSET
    return np.where(before_review, vip[b, np.maximum(m - 1, 0)], vip[b, m])


def credit_readings(
    rng: np.random.Generator, pop: Population, cal: Calendar, params: Params, declared: tuple = ()
) -> Columns:
    """Monthly-ish bureau readings: a noisy view of reliability, lagged one month on stress (rescaled
    from a declared bureau shift's month on, ``simulator.shifts``).

    Returns:
        Columns ``b``, ``ts``, ``score``, sorted by buyer then instant.
    """
    months = cal.months
    ms, me = cal.month_start[:months], cal.month_start[1 : months + 1]
    take = pop.credit_file[:, None] & (rng.random((pop.n, months)) < params.credit_reading_rate)
    take &= pop.registered_at[:, None] < me[None, :]
    b, m = np.nonzero(take)
    ts = uniform_between(rng, np.maximum(ms[m], pop.registered_at[b]), me[m])
    prev_stress = pop.stress[b, np.maximum(m - 1, 0)]
    raw = (
        620.0
        + 75.0 * pop.rel_z[b]
        - np.asarray((0.0, 45.0, 90.0))[prev_stress]
        + pop.bureau_bias[b]
        + 20.0 * rng.standard_normal(b.size)
    )
    raw = shifts.bureau_scores(raw, m, declared)
    order = np.lexsort((ts, b))
    return {"b": b[order], "ts": ts[order], "score": np.clip(np.round(raw), 350, 950).astype(np.int64)[order]}


def latest_score(readings: Columns, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The latest score of each buyer strictly before ``t``; -1 where there is none."""
    keys = readings["b"] * _KEY + readings["ts"]
    idx = np.searchsorted(keys, b * _KEY + t, side="left") - 1
    ok = idx >= 0
    ok[ok] = readings["b"][idx[ok]] == b[ok]
    return np.where(ok, readings["score"][np.maximum(idx, 0)], -1)
