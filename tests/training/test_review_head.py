"""The review head's rows, queues and yardsticks, and its place in the rating artifact."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from bench.tiny import make_tiny_rating, tiny_review_head
from rating.review import REVIEW_CONTEXT, reference_context, review_context
from training.review_head import Queues, flagged, hold_threshold, queues, top, yardsticks
from training.review_rows import review_rows

T0 = pd.Timestamp("2024-03-05 17:30", tz="UTC")


def _tables() -> dict[str, pd.DataFrame]:
    reviews = pd.DataFrame(
        {
            "review_id": [1, 2, 3, 4],
            "order_id": [10, 11, 12, 13],
            "buyer_id": [100, 100, 101, 102],
            "created_at": [T0, T0 + pd.Timedelta(hours=8), T0, T0],
            "rating": [1, 5, 2, 4],
            "text_length": [120, 3, 0, 40],
            "has_photos": [True, False, False, False],
            "reported_by_seller_at": [T0 + pd.Timedelta(days=1), pd.NaT, pd.NaT, pd.NaT],
            "removed_as_malicious_at": [T0 + pd.Timedelta(days=8), pd.NaT, pd.NaT, pd.NaT],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": [10, 11, 12, 13],
            "amount": [99.0, 10.0, 250.0, 5.0],
            "category": ["beauty", "apparel", "grocery", "apparel"],
            "delivered_at": [T0 - pd.Timedelta(days=2)] * 4,
        }
    )
    return {"reviews": reviews, "orders": orders}


def test_rows_are_negative_or_reported_reviews_at_the_previous_midnight() -> None:
    rows = review_rows(_tables())
    assert rows["review_id"].tolist() == [1, 3]  # 5 and 4 stars, unreported: not screened
    assert (rows["as_of"] == pd.Timestamp("2024-03-05", tz="UTC")).all()
    assert rows["reported"].tolist() == [True, False] and rows["bad"].tolist() == [True, False]
    assert rows["days_after_delivery"].tolist() == [2.0, 2.0]
    assert rows["order_amount"].tolist() == [99.0, 250.0] and rows["category"].tolist() == [
        "beauty",
        "grocery",
    ]


def test_context_columns_and_reference() -> None:
    ctx = review_context([1], [0], [True], [1.5], [99.0], ["beauty"])
    assert ctx.shape == (1, len(REVIEW_CONTEXT))
    assert ctx[0, REVIEW_CONTEXT.index("ctx_review_has_text")] == 0.0
    assert ctx[0, REVIEW_CONTEXT.index("ctx_review_photos")] == 1.0
    assert reference_context()[0, REVIEW_CONTEXT.index("ctx_category")] == -1.0  # no category: missing


def test_hold_threshold_holds_the_capacity() -> None:
    p = np.linspace(0, 1, 101)
    threshold = hold_threshold(p, 0.10)
    assert (p >= threshold).sum() == 10
    with pytest.raises(ValueError, match="capacity"):
        hold_threshold(p, 0.0)


def test_queues_and_yardsticks_count_truth_expected_catches() -> None:
    rows = pd.DataFrame({"buyer_id": np.arange(20) % 7, "flag_signal": [2.0] * 2 + [0.0] * 17 + [np.nan]})
    p_true = np.r_[0.9, 0.1, 0.8, 0.7, np.zeros(16)]
    p_head = np.r_[0.2, 0.1, 0.9, 0.8, np.full(16, 0.05)]
    flag = flagged(rows, ("flag_signal", ">=", 2.0))
    assert flag.tolist() == [True, True] + [False] * 18  # NaN never fires
    q = queues(rows, p_head, p_true, flag, flag_size=3, hold_above=0.5)  # the flag also holds a 5-star review
    assert isinstance(q, Queues) and q.queues["head_at_flag_neg"].tolist()[:4] == [False, False, True, True]
    assert q.queues["head_at_flag"].tolist()[:4] == [True, False, True, True]
    m = yardsticks(q, seed=0, replicates=50)
    total = p_true.sum()
    assert m["review_flag_caught"] == pytest.approx(1.0 / total)
    assert m["review_head_at_flag_neg_caught"] == pytest.approx(1.5 / total)
    assert m["review_truth_at_flag_neg_caught"] == pytest.approx(1.7 / total)
    assert m["review_head_vs_flag_at_flag_neg"] == pytest.approx(1.5)
    assert m["review_head_at_flag_caught"] == pytest.approx(2.4 / total)
    assert m["review_head_vs_truth_at_flag"] == pytest.approx(1.0)
    assert m["review_flag_size"] == 3 and m["review_flag_screened_size"] == 2
    assert m["review_flag_honest_held"] == pytest.approx(1.0 / (20 - total))
    assert m["review_policy_size"] == 2 and m["review_head_at_q10_size"] == 2
    assert m["review_head_at_flag_caught_ci_low"] <= m["review_head_at_flag_caught_ci_high"]
    assert top(np.array([0.1, 0.3, 0.3]), 1).tolist() == [False, True, False]


def test_review_head_travels_in_the_artifact() -> None:
    names = [f"s{i}" for i in range(6)]
    model = make_tiny_rating(names)
    head = tiny_review_head(names, n=2000)
    model.set_review_head(head)
    with pytest.raises(ValueError, match="review_head"):
        model.set_review_head(tiny_review_head(names[:5], n=500))
    again = pickle.loads(pickle.dumps(model))
    x, ctx = np.ones((1, 6)), reference_context()
    assert again.review_head.probability(x, ctx) == pytest.approx(head.probability(x, ctx))
    state = again.__getstate__()
    state.pop("review_head")
    older = type(model).__new__(type(model))
    older.__setstate__(state)  # an artifact logged before the review head loads without one
    assert older.review_head is None
