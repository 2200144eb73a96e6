"""Generate what buyers do: orders (regular, presale, fake), account events, CS contacts.

Ids and device ids here are local to the shard (0-based); ``simulator.shard`` makes them
global. Instants are int64 seconds; ``NEVER`` means "does not happen".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import hazards, shifts
from simulator.calendar import DAY, HOUR, NEVER, Calendar, lag_days, sample_in_month, uniform_between
from simulator.config import Params
from simulator.population import Population

Columns = dict[str, np.ndarray]
FAKE_CATEGORIES = (0, 1)  # apparel, beauty: cheap, easy to fake
PAY_DELAY_S = (10, 30 * 60)  # seconds from order to payment, uniform
SHIP_LAG = (1.0, 0.6)  # lognormal (median days, sigma) from payment to shipping, regular orders
DELIVERY_LAG = (2.5, 0.5)  # from shipping to delivery, regular orders
CANCEL_AFTER_PAY_LAG = (0.3, 0.6)  # a paid order canceled (half of cancellations): lognormal after payment
CANCEL_UNPAID_S = (60, 12 * HOUR)  # an unpaid order canceled: uniform seconds after creation


@dataclass(frozen=True)
class Devices:
    """Local device ids: each buyer's own devices, then shared pools of fraud groups and rings."""

    own_start: np.ndarray
    own_count: np.ndarray
    fraud_start: np.ndarray
    ring_start: np.ndarray
    per_pool: int = 3


def draw_devices(rng: np.random.Generator, pop: Population) -> Devices:
    """Give each buyer 1+ own devices and each fraud group / ring a shared pool."""
    own_count = 1 + rng.poisson(0.5, pop.n)
    own_start = np.concatenate([[0], np.cumsum(own_count)[:-1]])
    total = int(own_count.sum())
    n_fraud = int(pop.fraud_group.max()) + 1 if pop.fraudster.any() else 0
    n_ring = int(pop.ring_id.max()) + 1 if pop.ring.any() else 0
    fraud_start = total + 3 * np.arange(n_fraud)
    ring_start = total + 3 * n_fraud + 3 * np.arange(n_ring)
    return Devices(own_start, own_count, fraud_start, ring_start)


def own_device(rng: np.random.Generator, dev: Devices, b: np.ndarray) -> np.ndarray:
    """A random own device of each buyer in ``b``."""
    return dev.own_start[b] + (rng.random(b.size) * dev.own_count[b]).astype(np.int64)


def expand_counts(rng: np.random.Generator, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts per (buyer, month) expanded to one (buyer, month) pair per event."""
    counts = rng.poisson(rate).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    return cell // rate.shape[1], cell % rate.shape[1]


def _choice_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a weight matrix."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cum[:, -1]
    return (u[:, None] > cum).sum(axis=1)


def _fulfil(rng: np.random.Generator, created: np.ndarray, params: Params, fast: bool = False) -> Columns:
    """Payment, shipping, delivery, confirmation and cancellation instants of orders."""
    n = created.size
    canceled = np.zeros(n, dtype=bool) if fast else rng.random(n) < params.cancel_rate
    paid = created + rng.integers(*PAY_DELAY_S, n)
    paid_first = rng.random(n) < 0.5
    shipped = paid + (lag_days(rng, n, 0.3) if fast else lag_days(rng, n, *SHIP_LAG))
    lost = np.zeros(n, dtype=bool) if fast else (~canceled & (rng.random(n) < params.lost_parcel_rate))
    delivered = np.where(
        lost, NEVER, shipped + (lag_days(rng, n, 1.0, 0.5) if fast else lag_days(rng, n, *DELIVERY_LAG))
    )
    confirm_lag = np.minimum(lag_days(rng, n, 0.2 if fast else 3.0, 0.8), 10 * DAY)
    confirmed = np.where(lost, NEVER, delivered + confirm_lag)
    cancel_at = np.where(
        paid_first,
        paid + lag_days(rng, n, *CANCEL_AFTER_PAY_LAG),
        created + rng.integers(*CANCEL_UNPAID_S, n),
    )
    return {
        "paid_at": np.where(canceled & ~paid_first, NEVER, paid),
        "shipped_at": np.where(canceled, NEVER, shipped),
        "delivered_at": np.where(canceled, NEVER, delivered),
        "confirmed_at": np.where(canceled, NEVER, confirmed),
        "canceled_at": np.where(canceled, cancel_at, NEVER),
        "lost": lost,
    }


def _device_for(
    rng: np.random.Generator, pop: Population, dev: Devices, b: np.ndarray, channel: np.ndarray
) -> np.ndarray:
    device = own_device(rng, dev, b)
    shared = pop.fraudster[b] & (rng.random(b.size) < 0.8)
    if shared.any():
        g = pop.fraud_group[b[shared]]
        device[shared] = dev.fraud_start[g] + rng.integers(0, dev.per_pool, shared.sum())
    unknown = (channel == 1) & (rng.random(b.size) < 0.5)  # web orders often carry no device id
    return np.where(unknown, -1, device)


def regular_orders(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    dev: Devices,
    expected: np.ndarray,
    params: Params,
    declared: tuple = (),
) -> Columns:
    """Everyday orders: Poisson per buyer-month with the expected counts of ``hazards.expected_orders``
    (categories moved by any declared mix shift, ``simulator.shifts``)."""
    p = params
    b, m = expand_counts(rng, expected[:, : cal.months])
    created = sample_in_month(cal, rng, m, pop.registered_at[b])
    category = _choice_rows(rng, shifts.category_weights(hazards.category_weights(pop, p)[b], m, declared))
    price = np.asarray(p.category_median_price)[category] * pop.spend[b]
    amount = np.round(
        price * np.exp(np.asarray(p.category_price_sigma)[category] * rng.standard_normal(b.size)), 2
    )
    channel = rng.choice(4, b.size, p=np.asarray(p.channel_weights) / sum(p.channel_weights))
    cols = {
        "b": b,
        "month": m,
        "seller_id": 1 + (p.sellers * rng.random(b.size) ** 2).astype(np.int64),
        "created_at": created,
        "category": category,
        "amount": np.maximum(amount, 1.0),
        "channel": channel,
        "device_id": _device_for(rng, pop, dev, b, channel),
        "payment_method": _choice_rows(rng, hazards.payment_weights(pop, p)[b]),
        "kind": np.zeros(b.size, dtype=np.int8),  # 0 regular, 1 presale, 2 fake
    }
    cols.update(_fulfil(rng, created, p))
    return cols


def fake_orders(
    rng: np.random.Generator, pop: Population, cal: Calendar, dev: Devices, part: int, params: Params
) -> Columns:
    """Ring members' fake orders with their ring's colluding seller: cheap, fast, confirmed at once."""
    p = params
    rate = p.ring_fake_orders * pop.ring[:, None] * hazards.alive_fraction(pop, cal)[:, : cal.months]
    b, m = expand_counts(rng, rate)
    created = sample_in_month(cal, rng, m, pop.registered_at[b])
    cols = {
        "b": b,
        "month": m,
        "seller_id": p.sellers + 1 + part * 10_000 + pop.ring_id[b],
        "created_at": created,
        "category": np.asarray(FAKE_CATEGORIES)[rng.integers(0, 2, b.size)],
        "amount": np.round(40 * np.exp(0.4 * rng.standard_normal(b.size)), 2),
        "channel": np.zeros(b.size, dtype=np.int64),
        "device_id": dev.ring_start[pop.ring_id[b]] + rng.integers(0, dev.per_pool, b.size),
        "payment_method": np.zeros(b.size, dtype=np.int64),
        "kind": np.full(b.size, 2, dtype=np.int8),
    }
    cols.update(_fulfil(rng, created, p, fast=True))
    return cols


def presale_orders(
    rng: np.random.Generator, pop: Population, cal: Calendar, dev: Devices, params: Params
) -> Columns:
    """Deposit-phase orders of each festival (fulfilment is settled in ``outcomes.settle_presales``)."""
    p = params
    parts = []
    weights = np.asarray(p.presale_category_weights) / sum(p.presale_category_weights)
    for f, fest in enumerate(cal.festivals):
        rate = hazards.presale_rate(pop, fest.weight, fest.deposit_start, fest.due_month - 1, p)
        counts = rng.poisson(rate)
        b = np.repeat(np.arange(pop.n), counts)
        category = rng.choice(weights.size, b.size, p=weights)
        price = np.asarray(p.category_median_price)[category] * pop.spend[b]
        amount = price * np.exp(np.asarray(p.category_price_sigma)[category] * rng.standard_normal(b.size))
        channel = rng.choice(4, b.size, p=np.asarray(p.channel_weights) / sum(p.channel_weights))
        parts.append(
            {
                "b": b,
                "festival": np.full(b.size, f),
                "created_at": uniform_between(
                    rng, np.full(b.size, fest.deposit_start), np.full(b.size, fest.deposit_end)
                ),
                "category": category,
                "amount": np.round(np.maximum(amount, 1.0), 2),
                "channel": channel,
                "device_id": _device_for(rng, pop, dev, b, channel),
                "payment_method": rng.choice(
                    3, b.size, p=np.asarray(p.payment_weights[:3]) / sum(p.payment_weights[:3])
                ),
                "seller_id": 1 + (p.sellers * rng.random(b.size) ** 2).astype(np.int64),
            }
        )
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return {
            k: empty
            for k in (
                "b",
                "festival",
                "created_at",
                "category",
                "amount",
                "channel",
                "device_id",
                "payment_method",
                "seller_id",
            )
        }
    return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}


def account_events(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    dev: Devices,
    expected: np.ndarray,
    params: Params,
) -> Columns:
    """Logins, new devices, address and phone changes, password resets (VIP events come from ``outcomes``)."""
    alive = hazards.alive_fraction(pop, cal)[:, : cal.months]
    fraud = pop.fraudster[:, None].astype(float)
    out_b, out_t, out_type, out_dev = [], [], [], []
    # type index follows contract.ACCOUNT_EVENT_TYPES
    for etype, rate in (
        (0, alive * 0.5 + params.logins_per_order * expected[:, : cal.months]),
        (2, alive * (0.04 + 0.5 * fraud)),
        (3, alive * (0.01 + 0.2 * fraud)),
        (4, alive * (0.02 + 0.1 * fraud)),
    ):
        b, m = expand_counts(rng, rate)
        out_b.append(b)
        out_t.append(sample_in_month(cal, rng, m, pop.registered_at[b]))
        out_type.append(np.full(b.size, etype))
        out_dev.append(np.where((etype == 0) | (rng.random(b.size) < 0.5), own_device(rng, dev, b), -1))
    # first device at registration (for accounts opened in the period), extra devices later
    new = np.flatnonzero(pop.reg_month >= 0)
    out_b.append(new)
    out_t.append(pop.registered_at[new])
    out_type.append(np.full(new.size, 1))
    out_dev.append(dev.own_start[new])
    extra_b = np.repeat(np.arange(pop.n), dev.own_count - 1)
    extra_n = dev.own_count - 1
    extra_k = np.arange(extra_b.size) - np.repeat(np.cumsum(extra_n) - extra_n, extra_n) + 1
    lo = np.maximum(pop.registered_at[extra_b], cal.month_start[0])
    out_b.append(extra_b)
    out_t.append(uniform_between(rng, lo, np.full(extra_b.size, cal.export_at)))
    out_type.append(np.full(extra_b.size, 1))
    out_dev.append(dev.own_start[extra_b] + extra_k)
    # shared devices appear as new devices on every member account
    for members, pool in (
        (np.flatnonzero(pop.fraudster), dev.fraud_start),
        (np.flatnonzero(pop.ring), dev.ring_start),
    ):
        group = np.where(pop.fraudster[members], pop.fraud_group[members], pop.ring_id[members])
        mb = np.repeat(members, dev.per_pool)
        k = np.tile(np.arange(dev.per_pool), members.size)
        lo = np.maximum(pop.registered_at[mb], cal.month_start[0])
        out_b.append(mb)
        out_t.append(np.minimum(lo + lag_days(rng, mb.size, 5.0, 1.0), cal.export_at - 1))
        out_type.append(np.full(mb.size, 1))
        out_dev.append(pool[np.repeat(group, dev.per_pool)] + k)
    return {
        "b": np.concatenate(out_b),
        "ts": np.concatenate(out_t),
        "event_type": np.concatenate(out_type),
        "device_id": np.concatenate(out_dev),
    }


def cs_contacts(
    rng: np.random.Generator, pop: Population, cal: Calendar, expected: np.ndarray, params: Params
) -> Columns:
    """Customer-service contacts; hostile buyers contact more and are abusive more often."""
    alive = hazards.alive_fraction(pop, cal)[:, : cal.months]
    rate = (
        alive * (params.cs_rate + 0.6 * pop.hostility[:, None])
        + params.cs_per_order * expected[:, : cal.months]
    )
    b, m = expand_counts(rng, rate)
    abusive = rng.random(b.size) < hazards.sigmoid(-6.0 + 10.0 * pop.hostility[b])
    topic = rng.choice(6, b.size, p=[0.3, 0.25, 0.12, 0.08, 0.15, 0.10])
    topic = np.where(abusive & (rng.random(b.size) < 0.6), 5, topic)
    return {
        "b": b,
        "ts": sample_in_month(cal, rng, m, pop.registered_at[b]),
        "topic": topic,
        "abusive": abusive,
    }
