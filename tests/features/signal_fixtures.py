"""Small random raw tables for signal tests (contract columns and enums, realistic timing)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract

START = pd.Timestamp("2023-01-01", tz="UTC")
DAYS = 540


def _ts(values) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


def _maybe(rng: np.random.Generator, base: pd.Series, p: float, lo: float, hi: float) -> pd.Series:
    """``base`` + uniform(lo, hi) days with probability p, else NaT."""
    offset = pd.to_timedelta(rng.uniform(lo, hi, len(base)) * 86400, unit="s").round("s")
    out = base + offset.to_numpy()
    return out.where(rng.random(len(base)) < p).astype("datetime64[us, UTC]")


def _times(rng: np.random.Generator, registered: pd.Series, buyer_idx: np.ndarray) -> pd.Series:
    reg = registered.to_numpy()[buyer_idx]
    end = START + pd.Timedelta(days=DAYS)
    span = (end - pd.Series(reg)).dt.total_seconds().to_numpy()
    seconds = np.floor(rng.random(len(buyer_idx)) * span)
    return _ts(pd.Series(reg) + pd.to_timedelta(seconds, unit="s"))


def _pick(rng: np.random.Generator, values: tuple, n: int) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.integers(0, len(values), n)].astype(str)


def random_tables(
    seed: int, n_buyers: int = 40, first_id: int = 1, rows_per_buyer: int = 12
) -> dict[str, pd.DataFrame]:
    """All eleven raw tables for ``n_buyers`` buyers with ids ``first_id..``.

    Ids of other rows are offset by ``first_id * 1000`` so that shards made with
    different ``first_id`` never collide. Devices are drawn from a small pool so some
    are shared between buyers.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n_buyers, dtype=np.int64)
    reg_days = rng.uniform(-400, DAYS - 60, n_buyers)
    registered = _ts(START + pd.to_timedelta(np.floor(reg_days * 86400), unit="s"))
    buyers = pd.DataFrame(
        {
            "buyer_id": ids,
            "registered_at": registered,
            "city_tier": rng.integers(1, 6, n_buyers),
            "real_name_verified_at": _maybe(rng, registered, 0.7, 0, 300),
            "phone_verified_at": _maybe(rng, registered, 0.9, 0, 30),
        }
    )
    base = first_id * 1000

    def rows(k: int) -> tuple[np.ndarray, pd.Series]:
        idx = rng.integers(0, n_buyers, k * n_buyers)
        return ids[idx], _times(rng, registered, idx)

    b, t = rows(rows_per_buyer)
    account_events = pd.DataFrame(
        {
            "buyer_id": b,
            "ts": t,
            "event_type": _pick(rng, contract.ACCOUNT_EVENT_TYPES, len(b)),
            "device_id": pd.array(np.where(rng.random(len(b)) < 0.8, rng.integers(1, 60, len(b)), -1)).astype(
                "Int64"
            ),
        }
    )
    account_events.loc[account_events["device_id"] == -1, "device_id"] = pd.NA
    b, t = rows(rows_per_buyer)
    n = len(b)
    order_ids = np.arange(base, base + n, dtype=np.int64)
    orders = pd.DataFrame(
        {
            "order_id": order_ids,
            "buyer_id": b,
            "seller_id": rng.integers(1, 30, n),
            "created_at": t,
            "category": _pick(rng, contract.CATEGORIES, n),
            "amount": np.round(rng.lognormal(5, 1.2, n), 2),
            "channel": _pick(rng, contract.CHANNELS, n),
            "device_id": pd.array(rng.integers(1, 60, n)).astype("Int64"),
            "payment_method": _pick(rng, contract.PAYMENT_METHODS, n),
            "paid_at": _maybe(rng, t, 0.95, 0, 2),
        }
    )
    orders["shipped_at"] = _maybe(rng, orders["paid_at"], 0.9, 0.5, 3)
    orders["delivered_at"] = _maybe(rng, orders["shipped_at"], 0.95, 1, 5)
    orders["confirmed_at"] = _maybe(rng, orders["delivered_at"], 0.8, 0, 10)
    orders["canceled_at"] = _maybe(rng, t, 0.08, 0, 3)

    sample = orders.sample(frac=0.25, random_state=seed)
    deposit_paid = sample["created_at"]
    presales = pd.DataFrame(
        {
            "order_id": sample["order_id"].to_numpy(),
            "buyer_id": sample["buyer_id"].to_numpy(),
            "deposit_amount": np.round(sample["amount"].to_numpy() * 0.1, 2),
            "deposit_paid_at": deposit_paid.to_numpy(),
            "balance_amount": np.round(sample["amount"].to_numpy() * 0.9, 2),
        }
    )
    due_in = pd.to_timedelta(rng.integers(10, 40, len(sample)), unit="D")
    presales["balance_due_at"] = _ts(deposit_paid.reset_index(drop=True) + due_in)
    presales["balance_paid_at"] = _maybe(rng, presales["balance_due_at"], 0.85, -8, 12)
    presales["shipped_before_balance"] = rng.random(len(sample)) < 0.3

    sample = orders.sample(frac=0.3, random_state=seed + 1)
    k = len(sample)
    requested = _maybe(rng, sample["created_at"].reset_index(drop=True), 1.0, 1, 20)
    decided = _maybe(rng, requested, 0.9, 0, 3)
    kind = _pick(rng, contract.REFUND_KINDS, k)
    refunds = pd.DataFrame(
        {
            "refund_id": np.arange(base, base + k, dtype=np.int64),
            "order_id": sample["order_id"].to_numpy(),
            "buyer_id": sample["buyer_id"].to_numpy(),
            "requested_at": requested,
            "amount": np.round(sample["amount"].to_numpy() * rng.uniform(0.2, 1, k), 2),
            "reason": _pick(rng, contract.REFUND_REASONS, k),
            "kind": kind,
            "evidence_photos": rng.integers(0, 4, k),
            "fast_refund": rng.random(k) < 0.4,
            "decided_at": decided,
            "outcome": pd.Series(_pick(rng, contract.REFUND_OUTCOMES, k))
            .where(decided.notna())
            .astype("str"),
            "refunded_at": _maybe(rng, requested, 0.7, 0, 4),
            "return_shipped_at": _maybe(rng, requested, 0.6, 0, 25).where(
                pd.Series(kind) == "return_and_refund"
            ),
            "abuse_confirmed_at": _maybe(rng, requested, 0.1, 5, 60),
        }
    )
    refunds["return_received_at"] = _maybe(rng, refunds["return_shipped_at"], 0.9, 1, 5)

    sample = orders.sample(frac=0.4, random_state=seed + 2)
    k = len(sample)
    created = _maybe(rng, sample["created_at"].reset_index(drop=True), 1.0, 2, 15)
    reviews = pd.DataFrame(
        {
            "review_id": np.arange(base, base + k, dtype=np.int64),
            "order_id": sample["order_id"].to_numpy(),
            "buyer_id": sample["buyer_id"].to_numpy(),
            "created_at": created,
            "rating": rng.integers(1, 6, k),
            "text_length": rng.integers(0, 400, k),
            "has_photos": rng.random(k) < 0.3,
            "reported_by_seller_at": _maybe(rng, created, 0.1, 0, 10),
            "removed_as_malicious_at": _maybe(rng, created, 0.05, 1, 30),
        }
    )

    sample = orders.sample(frac=0.08, random_state=seed + 3)
    k = len(sample)
    opened = _maybe(rng, sample["created_at"].reset_index(drop=True), 1.0, 3, 30)
    closed = _maybe(rng, opened, 0.8, 1, 40)
    disputes = pd.DataFrame(
        {
            "dispute_id": np.arange(base, base + k, dtype=np.int64),
            "order_id": sample["order_id"].to_numpy(),
            "buyer_id": sample["buyer_id"].to_numpy(),
            "opened_at": opened,
            "closed_at": closed,
            "reason": _pick(rng, contract.DISPUTE_REASONS, k),
            "ruling": pd.Series(_pick(rng, contract.DISPUTE_RULINGS, k)).where(closed.notna()).astype("str"),
        }
    )

    b, t = rows(3)
    cs_contacts = pd.DataFrame(
        {
            "contact_id": np.arange(base, base + len(b), dtype=np.int64),
            "buyer_id": b,
            "ts": t,
            "topic": _pick(rng, contract.CS_TOPICS, len(b)),
            "abusive": rng.random(len(b)) < 0.15,
        }
    )
    b, t = rows(1)
    violations = pd.DataFrame(
        {
            "violation_id": np.arange(base, base + len(b), dtype=np.int64),
            "buyer_id": b,
            "ts": t,
            "kind": _pick(rng, contract.VIOLATION_KINDS, len(b)),
            "severity": rng.integers(1, 4, len(b)),
        }
    )
    b, t = rows(6)
    credit_scores = (
        pd.DataFrame({"buyer_id": b, "ts": t, "score": rng.integers(350, 951, len(b))})
        .drop_duplicates(["buyer_id", "ts"])
        .reset_index(drop=True)
    )
    b, t = rows(4)
    paid = _maybe(rng, t, 0.85, -10, 50)
    credit_bills = pd.DataFrame(
        {
            "bill_id": np.arange(base, base + len(b), dtype=np.int64),
            "buyer_id": b,
            "due_at": t,
            "amount_due": np.round(rng.lognormal(5, 1, len(b)), 2),
            "paid_at": paid,
        }
    )
    credit_bills["amount_paid"] = (credit_bills["amount_due"] * rng.uniform(0.5, 1, len(b))).where(
        paid.notna()
    )
    return {
        "buyers": buyers,
        "account_events": account_events,
        "orders": orders,
        "presales": presales,
        "refunds": refunds,
        "reviews": reviews,
        "disputes": disputes,
        "cs_contacts": cs_contacts,
        "violations": violations,
        "credit_scores": credit_scores,
        "credit_bills": credit_bills,
    }


def concat_tables(*parts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Union of table dicts (e.g. shards) into one."""
    return {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in parts[0]}
