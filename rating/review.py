"""The review head's context: what a review shows when it is posted, computed the same way in training
and at the moment the service assesses it.

The review head is a ``rating.heads.ServiceHead`` (service ``REVIEW``) over the buyer's signals and
these columns; its probability is that the review is removed as malicious (a seller reports it and
moderation confirms: the label history has; ``training.review_head`` and ``docs/decisions.md`` say
why that and not malice itself is the target). Training
computes the columns from the raw tables (``training.review_head``), the service from the request;
both call ``review_context``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from features.contract import CATEGORIES
from rating.context import codes

REVIEW = "review_screening"
REVIEW_CONTEXT = (
    "ctx_review_rating",
    "ctx_review_text_log",
    "ctx_review_has_text",
    "ctx_review_photos",
    "ctx_review_days_after_delivery",
    "ctx_amount_log",
    "ctx_category",
)
REVIEW_CONTEXT_TEXT = {
    "ctx_review_rating": "Star rating given",
    "ctx_review_text_log": "Length of the review text",
    "ctx_review_has_text": "Review written without text",
    "ctx_review_photos": "Photos attached to the review",
    "ctx_review_days_after_delivery": "Time between delivery and review",
    "ctx_amount_log": "Order amount",
    "ctx_category": "Product category",
}
"""Merchant-facing text of each review context column, when it is among an assessment's reasons."""
REFERENCE_REVIEW = {
    "rating": 1,
    "text_length": 40,
    "has_photos": False,
    "days_after_delivery": 2.0,
    "order_amount": 100.0,
    "category": "",  # unknown: missing for the head
}
"""The plain one-star review priced for a buyer's reviewer-risk figure (``reviewer_risk``): one star,
a few sentences, no photos, two days after delivery, an ordinary order of no particular category."""


def review_context(
    rating: ArrayLike,
    text_length: ArrayLike,
    has_photos: ArrayLike,
    days_after_delivery: ArrayLike,
    order_amount: ArrayLike,
    category: ArrayLike,
) -> np.ndarray:
    """Context of reviews (rows x ``REVIEW_CONTEXT``).

    Args:
        rating: Stars given, 1-5.
        text_length: Characters of review text (0: none).
        has_photos: Whether photos are attached.
        days_after_delivery: Days from the order's delivery to the review (NaN: unknown).
        order_amount: The reviewed order's amount, currency units.
        category: The reviewed order's category (``features.contract.CATEGORIES``; unknown: -1).
    """
    text = np.asarray(text_length, np.float64)
    return np.column_stack(
        [
            np.asarray(rating, np.float64),
            np.log1p(text),
            (text > 0).astype(np.float64),
            np.asarray(has_photos, np.float64),
            np.asarray(days_after_delivery, np.float64),
            np.log1p(np.asarray(order_amount, np.float64)),
            codes(category, CATEGORIES),
        ]
    ).astype(np.float64)


def reference_context() -> np.ndarray:
    """``review_context`` of ``REFERENCE_REVIEW`` (one row)."""
    r = REFERENCE_REVIEW
    return review_context(
        [r["rating"]], [r["text_length"]], [r["has_photos"]], [r["days_after_delivery"]], [r["order_amount"]],
        [r["category"]],
    )  # fmt: skip
