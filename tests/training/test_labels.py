"""Labels read outcomes in (as_of, as_of + 90 days] at the time each became a fact."""

import numpy as np
import pandas as pd
import pytest

from training.labels import count_in_window, make_labels, usable_as_of

T0 = pd.Timestamp("2025-03-01", tz="UTC")
NAT = pd.NaT


def ts(days: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=days)


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=columns)
    for c in columns:
        if c.endswith("_at") or c == "ts":
            out[c] = pd.to_datetime(out[c], utc=True)
    return out


def empty_tables() -> dict[str, pd.DataFrame]:
    return {
        "presales": frame([], ["order_id", "buyer_id", "balance_due_at", "balance_paid_at"]),
        "refunds": frame(
            [],
            [
                "refund_id",
                "buyer_id",
                "requested_at",
                "kind",
                "refunded_at",
                "return_shipped_at",
                "abuse_confirmed_at",
            ],
        ),
        "disputes": frame([], ["buyer_id", "closed_at", "ruling"]),
        "violations": frame([], ["buyer_id", "ts", "kind", "severity"]),
        "credit_bills": frame([], ["buyer_id", "due_at", "paid_at"]),
        "orders": frame([], ["buyer_id", "created_at"]),
    }


SPINE = pd.DataFrame({"buyer_id": [1, 1, 2], "as_of": [T0, T0 + pd.Timedelta(days=60), T0]})


def labels_with(table: str, rows: list[dict]) -> pd.DataFrame:
    tables = empty_tables()
    tables[table] = frame(rows, list(tables[table].columns))
    return make_labels(tables, SPINE)


def test_balance_default_counts_from_seven_days_after_due():
    # due on day 80: the default becomes a fact on day 87, inside (T0, T0+90] but before the second snapshot
    out = labels_with("presales", [{"buyer_id": 1, "balance_due_at": ts(80), "balance_paid_at": NAT}])
    assert out["balance_default"].tolist() == [1, 1, 0]
    paid_late_but_within_grace = labels_with(
        "presales", [{"buyer_id": 1, "balance_due_at": ts(80), "balance_paid_at": ts(86)}]
    )
    assert paid_late_but_within_grace["bad_90d"].sum() == 0


def test_default_after_the_window_is_not_a_label_yet():
    out = labels_with("presales", [{"buyer_id": 1, "balance_due_at": ts(85), "balance_paid_at": NAT}])
    assert out["balance_default"].tolist() == [0, 1, 0]


def test_event_exactly_at_as_of_belongs_to_the_past_and_at_the_end_to_the_window():
    tables = empty_tables()
    tables["violations"] = frame(
        [{"buyer_id": 2, "ts": ts(0), "kind": "confirmed_fraud", "severity": 3}],
        list(tables["violations"].columns),
    )
    assert make_labels(tables, SPINE)["severe_violation"].tolist() == [0, 0, 0]
    tables["violations"]["ts"] = [ts(90)]
    assert make_labels(tables, SPINE)["severe_violation"].tolist() == [0, 0, 1]


def test_refund_loss_from_unreturned_goods_or_confirmed_abuse():
    rows = [
        {
            "buyer_id": 1,
            "requested_at": ts(10),
            "kind": "return_and_refund",
            "refunded_at": ts(10),
            "return_shipped_at": NAT,
            "abuse_confirmed_at": NAT,
        },
        {
            "buyer_id": 2,
            "requested_at": ts(10),
            "kind": "return_and_refund",
            "refunded_at": ts(10),
            "return_shipped_at": ts(12),
            "abuse_confirmed_at": NAT,
        },
    ]
    assert labels_with("refunds", rows)["refund_loss"].tolist() == [1, 0, 0]
    rows[1]["abuse_confirmed_at"] = ts(40)
    out = labels_with("refunds", rows)
    assert out["refund_loss"].tolist() == [1, 0, 1]
    assert out["has_refund"].tolist() == [1, 0, 1]


def test_dispute_lost_only_when_ruled_for_the_seller():
    rows = [
        {"buyer_id": 1, "closed_at": ts(5), "ruling": "seller"},
        {"buyer_id": 2, "closed_at": ts(5), "ruling": "buyer"},
    ]
    assert labels_with("disputes", rows)["dispute_lost"].tolist() == [1, 0, 0]


def test_bill_thirty_days_past_due():
    rows = [
        {"buyer_id": 2, "due_at": ts(30), "paid_at": ts(61)},
        {"buyer_id": 1, "due_at": ts(30), "paid_at": ts(59)},
    ]
    out = labels_with("credit_bills", rows)
    assert out["bill_delinquent"].tolist() == [0, 0, 1]
    assert out["bad_90d"].tolist() == [0, 0, 1]


def test_count_in_window_is_per_buyer():
    events = pd.DataFrame({"buyer_id": [1, 1, 2], "t": [ts(1), ts(2), ts(3)]})
    got = count_in_window(events, SPINE, pd.Timedelta(0), pd.Timedelta(days=90))
    assert got.tolist() == [2, 0, 1]


def test_usable_as_of_requires_a_fully_observed_window():
    exported = ts(100)
    assert usable_as_of(pd.Series([ts(10), ts(11)]), exported).tolist() == [True, False]


@pytest.mark.parametrize("seed", [0, 1])
def test_outcome_labels_are_binary_and_the_rate_a_share(seed):
    rng = np.random.default_rng(seed)
    rows = [
        {"buyer_id": int(b), "due_at": ts(int(d)), "paid_at": NAT}
        for b, d in zip(rng.integers(1, 3, 20), rng.integers(-50, 120, 20), strict=True)
    ]
    out = labels_with("credit_bills", rows)
    counts = ["bad_events_90d", "exposure_90d", "bad_per_opportunity"]
    assert set(np.unique(out.drop(columns=counts).to_numpy())) <= {0, 1}
    assert ((out["bad_per_opportunity"] >= 0) & (out["bad_per_opportunity"] <= 1)).all()
    assert (out["bad_events_90d"] > 0).eq(out["bad_90d"] > 0).all()


def test_per_opportunity_target_counts_bad_outcomes_over_exposure():
    tables = empty_tables()
    tables["orders"] = frame(
        [{"buyer_id": 1, "created_at": ts(d)} for d in (-5, 0, 10, 20, 90, 91)]
        + [{"buyer_id": 2, "created_at": ts(3)}],
        ["buyer_id", "created_at"],
    )
    tables["credit_bills"] = frame(
        [
            {"buyer_id": 1, "due_at": ts(30), "paid_at": NAT},
            {"buyer_id": 1, "due_at": ts(100), "paid_at": NAT},
        ],
        ["buyer_id", "due_at", "paid_at"],
    )
    tables["presales"] = frame(
        [{"buyer_id": 1, "balance_due_at": ts(40), "balance_paid_at": ts(41)}],
        ["order_id", "buyer_id", "balance_due_at", "balance_paid_at"],
    )
    out = make_labels(tables, SPINE)
    # buyer 1 at T0: orders on days 10, 20, 90 (day 0 is the as-of instant, excluded), the bill due on
    # day 30, the balance due on day 40, and the account itself; one bad outcome (the bill, day 60)
    assert out["exposure_90d"].tolist()[0] == 1 + 3 + 1 + 1
    assert out["bad_events_90d"].tolist() == [1, 1, 0]
    assert out["bad_per_opportunity"].tolist()[0] == pytest.approx(1 / 6)
    assert out["exposure_90d"].tolist()[2] == 2  # buyer 2: the account and one order
    assert out["bad_per_opportunity"].tolist()[2] == 0
