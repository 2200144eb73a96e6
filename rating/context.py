"""The context features of one opportunity, computed the same way in training and at decision time.

A service head reads the buyer's signals and these columns. Training computes them from the
raw tables (``training.opportunities``), the service from the request; both call the functions
below, so the head sees the same numbers in both paths. Categories and reasons are codes into
the contract's lists (unknown: -1, which LightGBM treats as missing for a categorical).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from features.contract import CATEGORIES, REFUND_KINDS, REFUND_REASONS

PRESALE_CONTEXT = (
    "ctx_amount_log",
    "ctx_balance_log",
    "ctx_deposit_ratio",
    "ctx_due_in_days",
    "ctx_category",
    "ctx_shipped_early",
)
REFUND_CONTEXT = (
    "ctx_amount_log",
    "ctx_amount_ratio",
    "ctx_is_return",
    "ctx_reason",
    "ctx_photos",
    "ctx_category",
    "ctx_order_age_days",
)
CATEGORICAL = ("ctx_category", "ctx_reason")
CONTEXT_TEXT = {
    "ctx_amount_log": "Order or refund amount",
    "ctx_balance_log": "Balance left to pay",
    "ctx_deposit_ratio": "Deposit share of the price",
    "ctx_due_in_days": "Time until the balance is due",
    "ctx_category": "Product category",
    "ctx_shipped_early": "Goods shipped before the balance",
    "ctx_amount_ratio": "Share of the order refunded",
    "ctx_is_return": "Return or refund only",
    "ctx_reason": "Stated refund reason",
    "ctx_photos": "Evidence photos",
    "ctx_order_age_days": "Time since the order",
}
"""Buyer-facing text of each context column, when it is among a decision's reasons."""
UPLIFT_TEXT = "Goods in hand before paying, for a buyer whose refunds have gone wrong"
TREATMENT = "ctx_shipped_early"  # set to 1 when a presale head prices shipping before the balance


def codes(values: ArrayLike, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``vocabulary`` as float (-1 where unknown)."""
    lookup = {v: float(i) for i, v in enumerate(vocabulary)}
    items = values if isinstance(values, list) else np.asarray(values, dtype=object)  # one request: a list
    return np.array([lookup.get(v, -1.0) for v in items], dtype=np.float64)


def presale_context(
    amount: ArrayLike,
    deposit: ArrayLike,
    category: ArrayLike,
    due_in_days: ArrayLike,
    shipped_early: ArrayLike,
) -> np.ndarray:
    """Context of presale opportunities (rows x ``PRESALE_CONTEXT``).

    Args:
        amount: Order price, currency units.
        deposit: Deposit paid, currency units.
        category: Category names (``features.contract.CATEGORIES``).
        due_in_days: Days from the decision (the deposit) to the balance due date.
        shipped_early: Whether the goods ship before the balance (1 when pricing that decision).
    """
    amount = np.asarray(amount, np.float64)
    deposit = np.asarray(deposit, np.float64)
    out = np.empty((amount.size, len(PRESALE_CONTEXT)))  # filled column by column: cheap for one row
    out[:, 0] = np.log1p(amount)
    out[:, 1] = np.log1p(np.maximum(amount - deposit, 0.0))  # the balance
    out[:, 2] = deposit / np.maximum(amount, 0.01)
    out[:, 3] = np.asarray(due_in_days, np.float64)
    out[:, 4] = codes(category, CATEGORIES)
    out[:, 5] = np.asarray(shipped_early, np.float64)
    return out


def refund_context(
    amount: ArrayLike,
    order_amount: ArrayLike,
    kind: ArrayLike,
    reason: ArrayLike,
    photos: ArrayLike,
    category: ArrayLike,
    order_age_days: ArrayLike,
) -> np.ndarray:
    """Context of refund requests (rows x ``REFUND_CONTEXT``).

    Args:
        amount: Refund asked, currency units.
        order_amount: The order's price, currency units.
        kind: ``refund_only`` or ``return_and_refund``.
        reason: Stated reason (``features.contract.REFUND_REASONS``).
        photos: Evidence photos attached.
        category: The order's category.
        order_age_days: Days from the order to the request.
    """
    amount = np.asarray(amount, np.float64)
    out = np.empty((amount.size, len(REFUND_CONTEXT)))  # filled column by column: cheap for one row
    out[:, 0] = np.log1p(amount)
    out[:, 1] = amount / np.maximum(np.asarray(order_amount, np.float64), 0.01)
    out[:, 2] = codes(kind, REFUND_KINDS) == REFUND_KINDS.index("return_and_refund")
    out[:, 3] = codes(reason, REFUND_REASONS)
    out[:, 4] = np.asarray(photos, np.float64)
    out[:, 5] = codes(category, CATEGORIES)
    out[:, 6] = np.asarray(order_age_days, np.float64)
    return out


def context_row(fields: Mapping[str, Any]) -> np.ndarray:
    """One opportunity's context (1 x the head's context columns) from its fields, one value each:
    ``presale_context``'s arguments for a presale (``deposit`` among them), else ``refund_context``'s."""
    build = presale_context if "deposit" in fields else refund_context
    return build(**{name: [value] for name, value in fields.items()})
