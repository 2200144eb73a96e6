"""One row per review the review head learns from or is judged on, at the moment it is posted.

Screened reviews (at most ``SCREENED_RATING`` stars: the negative reviews a merchant asks about) and
every review a seller reported, at ``as_of`` = the posting floored to UTC midnight: the service
scores the daily snapshot published as of the previous midnight, so the buyer's signals are built
at that as_of (``training.dataset``). ``training.review_head`` fits and judges the head on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pit import published_as_of

SCREENED_RATING = 2  # reviews with at most this many stars are screened (and the yardsticks' population)


def _utc_us(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[us, UTC]")


def review_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Screened and reported reviews with their context and what happened to them.

    Returns:
        review_id, order_id, buyer_id, created_at, as_of and signals_as_of (the snapshot the
        service scores the posting on: ``features.pit.published_as_of``),
        rating, text_length, has_photos, days_after_delivery, order_amount, category,
        reported (by a seller, ever) and bad (removed as malicious, ever).
    """
    rev, orders = tables["reviews"], tables["orders"]
    keep = (rev["rating"] <= SCREENED_RATING) | rev["reported_by_seller_at"].notna()
    rev = rev[keep.to_numpy()]
    merged = rev[["order_id"]].merge(
        orders[["order_id", "amount", "category", "delivered_at"]], on="order_id", how="left", validate="m:1"
    )
    created = _utc_us(rev["created_at"])
    delivered = _utc_us(merged["delivered_at"]).set_axis(rev.index)
    return pd.DataFrame(
        {
            "review_id": rev["review_id"].to_numpy(np.int64),
            "order_id": rev["order_id"].to_numpy(np.int64),
            "buyer_id": rev["buyer_id"].to_numpy(np.int64),
            "created_at": created.to_numpy(),
            "as_of": published_as_of(created).to_numpy(),
            "signals_as_of": published_as_of(created).to_numpy(),
            "rating": rev["rating"].to_numpy(np.int64),
            "text_length": rev["text_length"].to_numpy(np.float64),
            "has_photos": rev["has_photos"].to_numpy(bool),
            "days_after_delivery": ((created - delivered).dt.total_seconds() / 86400).to_numpy(),
            "order_amount": merged["amount"].to_numpy(np.float64),
            "category": merged["category"].to_numpy(),
            "reported": rev["reported_by_seller_at"].notna().to_numpy(),
            "bad": rev["removed_as_malicious_at"].notna().to_numpy(),
        }
    )
