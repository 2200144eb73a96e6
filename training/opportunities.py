"""One row per service opportunity at the instant it was decided, with its context and outcome.

A presale is decided at its deposit (``deposit_paid_at``); a refund at its request
(``requested_at``). The row's ``as_of`` is that instant (its window, its context: days to the
due date, the order's age); the buyer's point-in-time signals are built at ``signals_as_of``,
the as-of instant of the snapshot the service would have scored it with
(``features.pit.published_as_of``: the last daily publish, UTC midnight), so a head is trained
on what the service sees and never on the same day's events (the presale's own order). The
outcome comes from ``features.outcomes``. The legacy rules (``features.legacy``) are evaluated
on those same snapshot signals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.legacy import CREDIT_SIGNAL, VIP_SIGNAL, legacy_fast_refund, legacy_presale
from features.outcomes import RETURN_KIND, presale_outcomes, refund_outcomes, refund_paid
from features.pit import published_as_of

PRESALE = "presale_ship_before_balance"
FAST_REFUND = "fast_refund"
SERVICES = (PRESALE, FAST_REFUND)
KEYS = {PRESALE: "order_id", FAST_REFUND: "refund_id"}


def _utc_us(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[us, UTC]")


def presale_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Presale opportunities: ids, ``as_of`` (the deposit), context, history's decision and outcome.

    Returns:
        order_id, buyer_id, as_of, signals_as_of (the snapshot scored), amount (order price), deposit, balance (the amount at risk),
        deposit_ratio, category, due_in_days, shipped (history's decision), bad (balance default)
        and outcome_at (the instant the default became a fact).
    """
    pre, orders = tables["presales"], tables["orders"]
    merged = pre.merge(orders[["order_id", "amount", "category"]], on="order_id", how="left", validate="1:1")
    outcome = presale_outcomes(pre)
    amount = merged["amount"].to_numpy(np.float64)
    return pd.DataFrame(
        {
            "order_id": pre["order_id"].to_numpy(np.int64),
            "buyer_id": pre["buyer_id"].to_numpy(np.int64),
            "as_of": _utc_us(pre["deposit_paid_at"]).to_numpy(),
            "signals_as_of": published_as_of(pre["deposit_paid_at"]).to_numpy(),
            "amount": amount,
            "deposit": pre["deposit_amount"].to_numpy(np.float64),
            "balance": pre["balance_amount"].to_numpy(np.float64),
            "deposit_ratio": pre["deposit_amount"].to_numpy(np.float64) / np.maximum(amount, 0.01),
            "category": merged["category"].to_numpy(),
            "due_in_days": (
                (pre["balance_due_at"] - pre["deposit_paid_at"]).dt.total_seconds() / 86400
            ).to_numpy(),
            "shipped": pre["shipped_before_balance"].to_numpy(bool),
            "bad": outcome["bad"].to_numpy(bool),
            "outcome_at": _utc_us(outcome["t"]).to_numpy(),
        }
    )


def refund_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Refund opportunities: ids, ``as_of`` (the request), context, history's decision and outcome.

    Returns:
        refund_id, order_id, buyer_id, as_of, signals_as_of, amount (the refund, the amount at risk), kind,
        is_return, reason, photos, order_amount, amount_ratio, category, order_age_days,
        fast (history's decision), bad (a refund loss: the buyer's behaviour, whatever the decision),
        paid (the money went out: always when fast, when normal handling approved it otherwise)
        and outcome_at (NaT when good).
    """
    ref, orders = tables["refunds"], tables["orders"]
    merged = ref.merge(
        orders[["order_id", "amount", "category", "created_at"]].rename(
            columns={"amount": "order_amount", "created_at": "ordered_at"}
        ),
        on="order_id",
        how="left",
        validate="m:1",
    )
    outcome = refund_outcomes(ref)
    amount = ref["amount"].to_numpy(np.float64)
    order_amount = merged["order_amount"].to_numpy(np.float64)
    return pd.DataFrame(
        {
            "refund_id": ref["refund_id"].to_numpy(np.int64),
            "order_id": ref["order_id"].to_numpy(np.int64),
            "buyer_id": ref["buyer_id"].to_numpy(np.int64),
            "as_of": _utc_us(ref["requested_at"]).to_numpy(),
            "signals_as_of": published_as_of(ref["requested_at"]).to_numpy(),
            "amount": amount,
            "kind": ref["kind"].to_numpy(),
            "is_return": ref["kind"].eq(RETURN_KIND).to_numpy(),
            "reason": ref["reason"].to_numpy(),
            "photos": ref["evidence_photos"].to_numpy(np.float64),
            "order_amount": order_amount,
            "amount_ratio": amount / np.maximum(order_amount, 0.01),
            "category": merged["category"].to_numpy(),
            "order_age_days": (
                (merged["requested_at"] - merged["ordered_at"]).dt.total_seconds() / 86400
            ).to_numpy(),
            "fast": ref["fast_refund"].to_numpy(bool),
            "bad": outcome["bad"].to_numpy(bool),
            "paid": refund_paid(ref).to_numpy(bool),
            "outcome_at": _utc_us(outcome["t"]).to_numpy(),
        }
    )


def legacy_decisions(service: str, rows: pd.DataFrame) -> np.ndarray:
    """The legacy rule's decision for each opportunity row (its signals at the decision included)."""
    if service == PRESALE:
        return legacy_presale(rows[VIP_SIGNAL].fillna(0.0), rows[CREDIT_SIGNAL])
    if service == FAST_REFUND:
        return legacy_fast_refund(
            rows[VIP_SIGNAL].fillna(0.0), rows["is_return"], rows["amount"], rows["photos"]
        )
    raise ValueError(f"service: unknown {service!r}; expected one of {SERVICES}")


def at_risk(service: str, rows: pd.DataFrame) -> np.ndarray:
    """The money at risk of each opportunity: the balance of a presale, the amount of a refund."""
    return rows["balance" if service == PRESALE else "amount"].to_numpy(np.float64)
