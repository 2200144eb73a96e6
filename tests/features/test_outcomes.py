"""The one definition of each bad outcome, the legacy rules and the hard facts."""

import numpy as np
import pandas as pd
import pytest

from features.hard_facts import HARD_FACTS, has_hard_fact
from features.legacy import legacy_fast_refund, legacy_presale
from features.outcomes import bad_events, presale_outcomes, refund_outcomes

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
NAT = pd.NaT


def _ts(values):
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


def tables():
    presales = pd.DataFrame(
        {
            "order_id": [1, 2, 3],
            "buyer_id": [10, 11, 12],
            "balance_due_at": _ts(["2024-06-18", "2024-06-18", "2024-06-18"]),
            # paid on day 7 exactly (good), day 8 (late: bad), never (bad)
            "balance_paid_at": _ts(["2024-06-25", "2024-06-26", None]),
        }
    )
    refunds = pd.DataFrame(
        {
            "refund_id": [1, 2, 3, 4],
            "buyer_id": [10, 11, 12, 13],
            "kind": ["return_and_refund", "return_and_refund", "refund_only", "return_and_refund"],
            "requested_at": _ts(["2024-01-01"] * 4),
            # shipped day 14 (good), day 20 (bad: late), refund only (no return expected), never (bad)
            "return_shipped_at": _ts(["2024-01-15", "2024-01-21", None, None]),
            "abuse_confirmed_at": _ts([None, None, "2024-02-01", "2024-01-05"]),
        }
    )
    disputes = pd.DataFrame(
        {"buyer_id": [10, 11], "closed_at": _ts(["2024-03-01", "2024-03-02"]), "ruling": ["seller", "buyer"]}
    )
    violations = pd.DataFrame(
        {
            "buyer_id": [10, 11, 12],
            "ts": _ts(["2024-04-01"] * 3),
            "kind": ["confirmed_fraud", "scalping", "scalping"],
            "severity": [1, 3, 2],
        }
    )
    bills = pd.DataFrame(
        {
            "buyer_id": [10, 11],
            "due_at": _ts(["2024-05-10", "2024-05-10"]),
            "paid_at": _ts(["2024-06-09", "2024-06-10"]),
        }
    )
    return {
        "presales": presales,
        "refunds": refunds,
        "disputes": disputes,
        "violations": violations,
        "credit_bills": bills,
    }


def test_each_outcome_and_the_instant_it_becomes_a_fact():
    t = tables()
    pre = presale_outcomes(t["presales"])
    assert pre["bad"].tolist() == [False, True, True]
    assert (pre["t"] == T("2024-06-25")).all()
    ref = refund_outcomes(t["refunds"])
    assert ref["bad"].tolist() == [False, True, True, True]
    # late return: fact at day 14; abuse only: at confirmation; both: whichever first
    assert ref["t"].tolist()[1:] == [T("2024-01-15"), T("2024-02-01"), T("2024-01-05")]
    events = bad_events(t)
    counts = events.groupby("kind").size().to_dict()
    assert counts == {
        "balance_default": 2,
        "refund_loss": 3,
        "dispute_lost": 1,
        "severe_violation": 2,
        "bill_delinquent": 1,
    }
    bill = events[events["kind"] == "bill_delinquent"]
    assert bill["buyer_id"].tolist() == [11] and bill["t"].tolist() == [T("2024-06-09")]


def test_legacy_rules():
    assert legacy_presale([1, 1, 0, 1], [700, 699, 900, np.nan]).tolist() == [True, False, False, False]
    got = legacy_fast_refund(
        vip=[1, 0, 0, 0, 1],
        is_return=[True, True, True, True, False],
        amount=[5000, 100, 100.01, 50, 10],
        photos=[0, 1, 1, 0, 3],
    )
    assert got.tolist() == [True, True, False, False, False]


def test_hard_facts():
    frame = pd.DataFrame({name: [0.0, np.nan, 0.0, 0.0] for name in HARD_FACTS})
    frame.iloc[2, 0] = 1.0
    frame.iloc[3, 2] = 2.0
    assert has_hard_fact(frame).tolist() == [False, False, True, True]
    with pytest.raises(KeyError, match="bills_30dpd_open"):
        has_hard_fact(frame.drop(columns=["bills_30dpd_open"]))
