"""Simulate one buyer shard end to end and return its raw tables and truth as Arrow tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.legacy import legacy_presale
from simulator import activity, aftersales, compliance, hazards, payments, shifts, standing, truth
from simulator.calendar import NEVER, Calendar
from simulator.config import ID_STRIDE, RunConfig
from simulator.export import to_table
from simulator.population import Population, apply_shifts, draw_population

Columns = dict[str, np.ndarray]
ORDER_FIELDS = (
    "b", "month", "seller_id", "created_at", "category", "amount", "channel", "device_id",
    "payment_method", "paid_at", "shipped_at", "delivered_at", "confirmed_at", "canceled_at", "kind", "lost",
)  # fmt: skip


def _take(cols: Columns, order: np.ndarray) -> Columns:
    return {k: v[order] for k, v in cols.items()}


def _sorted(cols: Columns, time: str) -> Columns:
    """Rows ordered by buyer, then by the event instant (stable, so deterministic)."""
    return _take(cols, np.lexsort((cols[time], cols["b"])))


def _global(local: np.ndarray, part: int) -> np.ndarray:
    return np.where(local < 0, -1, part * ID_STRIDE + local + 1)


def _orders(
    rng: np.random.Generator,
    pop: Population,
    cal: Calendar,
    cfg: RunConfig,
    part: int,
    expected: np.ndarray,
    dev: activity.Devices,
) -> tuple[Columns, Columns, np.ndarray, Columns, Columns]:
    """All orders (sorted, local index = row), presales, VIP path, credit readings, presale orders."""
    p = cfg.params
    regular = activity.regular_orders(rng, pop, cal, dev, expected, p, cfg.declared_shifts)
    fake = activity.fake_orders(rng, pop, cal, dev, part, p)
    spent = {k: np.concatenate([regular[k], fake[k]]) for k in ("b", "created_at", "amount", "canceled_at")}
    live = spent["canceled_at"] == NEVER
    vip = standing.vip_path(pop, cal, spent["b"][live], spent["created_at"][live], spent["amount"][live], p)
    readings = standing.credit_readings(rng, pop, cal, p, cfg.declared_shifts)
    pre = activity.presale_orders(rng, pop, cal, dev, p)
    presales, fulfilment = payments.settle_presales(rng, pop, cal, pre, vip, readings, p)
    n_pre = pre["b"].size
    pre_orders = {
        **{
            k: pre[k]
            for k in (
                "b",
                "seller_id",
                "created_at",
                "category",
                "amount",
                "channel",
                "device_id",
                "payment_method",
            )
        },
        **fulfilment,
        "month": cal.month_index(pre["created_at"]),
        "kind": np.ones(n_pre, dtype=np.int8),
        "lost": np.zeros(n_pre, dtype=bool),
    }
    parts = (regular, fake, pre_orders)
    orders = {k: np.concatenate([d[k] for d in parts]) for k in ORDER_FIELDS}
    order = np.lexsort((orders["created_at"], orders["b"]))
    orders = _take(orders, order)
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)
    presales["o"] = position[regular["b"].size + fake["b"].size :]
    return orders, presales, vip, readings, pre


def simulate_shard(
    cfg: RunConfig, cal: Calendar, part: int
) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    """Generate shard ``part``: buyers ``cfg.shard_range(part)`` and everything they did.

    Args:
        cfg: The run configuration.
        cal: The calendar of the run.
        part: Shard number (0-based); the generator is ``default_rng((cfg.seed, part))``.

    Returns:
        ``(raw, truth)``: the eleven contract tables, and the truth tables ``traits``, ``risk``,
        ``presale_opportunities``, ``refund_opportunities`` and ``review_opportunities``.
    """
    p = cfg.params
    rng = np.random.default_rng((cfg.seed, part))
    lo, hi = cfg.shard_range(part)
    pop = draw_population(rng, lo, hi - lo + 1, cal, p)
    if cfg.shifts:
        pop = apply_shifts(shifts.generator(cfg.seed, part), pop, cal, p, cfg.declared_shifts)
    expected = hazards.expected_orders(pop, cal, p)
    dev = activity.draw_devices(rng, pop)
    orders, presales, vip, readings, pre = _orders(rng, pop, cal, cfg, part, expected, dev)
    refunds = aftersales.refunds(rng, pop, cal, orders, vip, p)
    orders["confirmed_at"] = aftersales.unconfirm_returned(orders, refunds)
    reviews = aftersales.reviews(rng, pop, orders, orders["confirmed_at"], p)
    disputes = aftersales.disputes(rng, pop, orders, p)
    bills = payments.credit_bills(rng, pop, cal, orders, p)
    events = activity.account_events(rng, pop, cal, dev, expected, p)
    vip_ev = standing.vip_events(rng, pop, cal, vip)
    facts = {
        "account_events": {k: np.concatenate([events[k], vip_ev[k]]) for k in events},
        "orders": orders,
        "presales": presales,
        "refunds": refunds,
        "reviews": reviews,
        "disputes": disputes,
        "cs_contacts": activity.cs_contacts(rng, pop, cal, expected, p),
        "violations": compliance.violations(rng, pop, cal, p),
        "credit_scores": readings,
        "credit_bills": bills,
    }
    known = {**pre, "shipped": presales["shipped_before_balance"]}
    legacy_now = _legacy_at_month_starts(pop, cal, vip, readings)
    risk = truth.p_bad_90d(pop, cal, expected, orders, refunds, disputes, known, bills, legacy_now, p)
    tables = _identified(pop, part, facts)
    raw = {name: to_table(name, cols, cal.export_at) for name, cols in tables.items()}
    return raw, {
        **_truth_tables(pop, cal, part, risk),
        **_opportunity_tables(tables, cal.export_at),
    }


def _legacy_at_month_starts(pop: Population, cal: Calendar, vip: np.ndarray, readings: Columns) -> np.ndarray:
    """Whether the legacy presale rule approves each buyer at each month start (``n x months``)."""
    b = np.arange(pop.n)
    out = np.zeros((pop.n, cal.months), dtype=bool)
    for m in range(cal.months):
        t = np.full(pop.n, cal.month_start[m])
        score = standing.latest_score(readings, b, t)
        out[:, m] = legacy_presale(standing.vip_at(cal, vip, b, t), np.where(score < 0, np.nan, score))
    return out


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype(np.int64) * 1_000_000, type=pa.timestamp("us", tz="UTC"))


def _opportunity_tables(tables: dict[str, Columns], export_at: int) -> dict[str, pa.Table]:
    """Per-opportunity truth: every exported presale at its deposit, refund request at its request and
    review at its posting."""
    pre = tables["presales"]
    keep = pre["deposit_paid_at"] <= export_at
    presales = pa.table(
        {
            "order_id": pre["order_id"][keep],
            "buyer_id": pre["buyer_id"][keep],
            "deposit_paid_at": _timestamps(pre["deposit_paid_at"][keep]),
            "amount": pre["amount"][keep].astype(np.float64),
            "balance_amount": pre["balance_amount"][keep].astype(np.float64),
            "p_default_if_shipped": pre["p_default_if_shipped"][keep],
            "p_default_if_held": pre["p_default_if_held"][keep],
            "legacy": pre["legacy"][keep],
            "shipped_early": pre["shipped_before_balance"][keep],
            "explored": pre["explored"][keep],
        }
    )
    ref = tables["refunds"]
    keep = ref["requested_at"] <= export_at
    refunds = pa.table(
        {
            "refund_id": ref["refund_id"][keep],
            "buyer_id": ref["buyer_id"][keep],
            "requested_at": _timestamps(ref["requested_at"][keep]),
            "amount": ref["amount"][keep].astype(np.float64),
            "p_loss_if_fast": ref["p_loss_if_fast"][keep],
            "p_loss_if_normal": ref["p_loss_if_normal"][keep],
            "legacy": ref["legacy"][keep],
            "fast": ref["fast_refund"][keep],
            "explored": ref["explored"][keep],
        }
    )
    return {
        "presale_opportunities": presales,
        "refund_opportunities": refunds,
        "review_opportunities": _review_table(tables["reviews"], export_at),
    }


def _review_table(rev: Columns, export_at: int) -> pa.Table:
    """Per-review truth: every exported review at its posting, with P(malicious) (``simulator.reviews``)."""
    keep = rev["created_at"] <= export_at
    return pa.table(
        {
            "review_id": rev["review_id"][keep],
            "buyer_id": rev["buyer_id"][keep],
            "created_at": _timestamps(rev["created_at"][keep]),
            "p_malicious": rev["p_malicious"][keep],
        }
    )


def _identified(pop: Population, part: int, facts: dict[str, Columns]) -> dict[str, Columns]:
    """Sort each table by buyer and time and give rows their global ids (``buyer_id``, ``order_id``...)."""
    bid = pop.buyer_id
    oid = _global(np.arange(facts["orders"]["b"].size), part)
    tables: dict[str, Columns] = {
        "buyers": {
            "b": np.arange(pop.n),
            "registered_at": pop.registered_at,
            "city_tier": pop.city_tier,
            "real_name_verified_at": pop.real_name_at,
            "phone_verified_at": pop.phone_at,
        },
        "account_events": _sorted(facts["account_events"], "ts"),
        "orders": {
            **facts["orders"],
            "order_id": oid,
            "device_id": _global(facts["orders"]["device_id"], part),
        },
        "presales": _sorted(facts["presales"], "deposit_paid_at"),
        "refunds": _sorted(facts["refunds"], "requested_at"),
        "reviews": _sorted(facts["reviews"], "created_at"),
        "disputes": _sorted(facts["disputes"], "opened_at"),
        "cs_contacts": _sorted(facts["cs_contacts"], "ts"),
        "violations": _sorted(facts["violations"], "ts"),
        "credit_scores": facts["credit_scores"],
        "credit_bills": _sorted(facts["credit_bills"], "due_at"),
    }
    tables["account_events"]["device_id"] = _global(tables["account_events"]["device_id"], part)
    for name, key in (("refunds", "refund_id"), ("reviews", "review_id"), ("disputes", "dispute_id"),
                      ("cs_contacts", "contact_id"), ("violations", "violation_id"), ("credit_bills", "bill_id")):  # fmt: skip
        cols = tables[name]
        cols[key] = _global(np.arange(cols["b"].size), part)
    for cols in tables.values():
        if "o" in cols:
            cols["order_id"] = oid[cols["o"]]
        cols["buyer_id"] = bid[cols["b"]]
    return tables


def _truth_tables(pop: Population, cal: Calendar, part: int, risk: np.ndarray) -> dict[str, pa.Table]:
    fraud_group = _global(pop.fraud_group, part)
    ring_id = _global(pop.ring_id, part)
    traits = pa.table(
        {
            "buyer_id": pop.buyer_id,
            "city_tier": pop.city_tier,
            "reliability": pop.reliability,
            "fragility": pop.fragility,
            "opportunism": pop.opportunism,
            "hostility": pop.hostility,
            "activity": pop.activity,
            "spend_level": pop.spend,
            "pay_later_line": pop.pay_later,
            "credit_file": pop.credit_file,
            "fraudster": pop.fraudster,
            "fraud_group": pa.array(fraud_group, mask=fraud_group < 0),
            "ring_member": pop.ring,
            "ring_id": pa.array(ring_id, mask=ring_id < 0),
        }
    )
    b, m = np.nonzero(~np.isnan(risk))
    risk_table = pa.table(
        {
            "buyer_id": pop.buyer_id[b],
            "as_of": _timestamps(cal.month_start[m]),
            "stress_state": pop.stress[b, m].astype(np.int64),
            "p_bad_90d": risk[b, m],
        }
    )
    return {"traits": traits, "risk": risk_table}
