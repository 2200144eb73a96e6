"""``RatingModel.rate_row``: one call gives what ``score``, ``cap_reasons`` and ``reasons`` give apart."""

from __future__ import annotations

import numpy as np
import pytest

from bench.tiny import make_tiny_rating, synthetic_dataset
from features.hard_facts import HARD_FACTS

NAMES = [
    "logins_count_all",
    "orders_count_90d",
    "cs_contacts_count_365d",
    "credit_score_last",
    "bills_late_count_365d",
    "refunds_count_365d",
    "disputes_lost_count_365d",
    *HARD_FACTS,
]


@pytest.fixture(scope="module")
def model():
    return make_tiny_rating(NAMES, seed=0, n=8000)


@pytest.fixture(scope="module")
def rows():
    X = synthetic_dataset(NAMES, 200, seed=3).X
    X[:, [NAMES.index(n) for n in HARD_FACTS]] = 0.0
    X[:20, NAMES.index("bills_30dpd_open")] = 1.0  # a hard fact capping the star
    return X


@pytest.mark.parametrize("k", [0, 2, 4])
def test_rate_row_is_score_caps_and_reasons_together(model, rows, k):
    scored = model.score(rows)
    for i in range(len(rows)):
        got = model.rate_row(rows[i], k)
        assert (got.p_bad, got.score, got.star) == (scored.p_bad[i], scored.score[i], scored.star[i])
        assert list(got.caps) == model.cap_reasons(rows[i])
        assert list(got.reasons) == (model.reasons(rows[i], k=k) if k else [])
    assert any(model.rate_row(rows[i]).caps for i in range(20))


def test_rate_row_reads_precomputed_scores_and_stored_reasons(model, rows):
    x = rows[0]  # capped: its cap comes first, then the stored reasons in their order, -1 ends them
    index, value = np.array([1, 0, -1, -1], np.int16), np.array([0.5, 0.25, 0.0, 0.0], np.float32)
    got = model.rate_row(x, 4, scores=(0.125, 500, 2, True), stored=(index, value))
    assert (got.p_bad, got.score, got.star) == (0.125, 500, 2)
    codes = [r.code for r in got.reasons]
    assert codes[: len(got.caps)] == [c.code for c in got.caps] and len(got.caps) == 1
    assert codes[1:] == [model.reason_entry(1)[0], model.reason_entry(0)[0]]
    assert model.rate_row(x, 4, scores=(0.125, 500, 2, False), stored=(index, value)).caps == ()
