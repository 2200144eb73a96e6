"""validate(): one test per error class, on in-memory frames; the generated contract doc."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import contract, contract_doc
from features.validate import ContractError, Problem, merge, validate

EXPORTED_AT = pd.Timestamp("2024-12-31T00:00:00Z")


def _set(table: str, column: str, key: int, value: object, key_col: str | None = None):
    """A corruption: set ``column`` of the row whose primary key is ``key``."""
    key_col = key_col or contract.table(table).primary_key[0]

    def corrupt(frames: dict[str, pd.DataFrame]) -> None:
        frame = frames[table]
        frame.loc[frame[key_col] == key, column] = value

    return corrupt


def _drop_table(name: str):
    return lambda frames: frames.pop(name)


def _drop_column(table: str, column: str):
    return lambda frames: frames.__setitem__(table, frames[table].drop(columns=column))


def _duplicate(table: str, key: int):
    def corrupt(frames: dict[str, pd.DataFrame]) -> None:
        frame = frames[table]
        pk = contract.table(table).primary_key[0]
        frames[table] = pd.concat([frame, frame[frame[pk] == key]], ignore_index=True)

    return corrupt


def _amount_as_text(frames: dict[str, pd.DataFrame]) -> None:
    frames["orders"]["amount"] = frames["orders"]["amount"].astype(str)


def _duplicate_score_reading(frames: dict[str, pd.DataFrame]) -> None:
    scores = frames["credit_scores"]
    copy = scores[scores["buyer_id"] == 4].assign(score=800)
    frames["credit_scores"] = pd.concat([scores, copy], ignore_index=True)


# (corruption, table, column, check, an example key that must be named)
CASES = {
    "missing table": (_drop_table("disputes"), "disputes", None, "missing_table", None),
    "missing column": (_drop_column("orders", "amount"), "orders", "amount", "missing_column", None),
    "wrong type": (_amount_as_text, "orders", "amount", "wrong_type", None),
    "null in required": (_set("orders", "category", 302, None), "orders", "category", "null", "order_id=302"),
    "duplicate key": (_duplicate("refunds", 7002), "refunds", "refund_id", "duplicate_key", "refund_id=7002"),
    "duplicate composite key": (
        _duplicate_score_reading,
        "credit_scores",
        "buyer_id,ts",
        "duplicate_key",
        "buyer_id=4,ts=2024-03-01T00:00:00Z",
    ),
    "orphan order": (
        _set("refunds", "order_id", 7005, 999),
        "refunds",
        "order_id",
        "orphan_reference",
        "refund_id=7005",
    ),
    "orphan buyer": (
        _set("orders", "buyer_id", 601, 77),
        "orders",
        "buyer_id",
        "orphan_reference",
        "order_id=601",
    ),
    "negative amount": (
        _set("refunds", "amount", 7001, -5.0),
        "refunds",
        "amount",
        "below_min",
        "refund_id=7001",
    ),
    "credit score too high": (
        _set("credit_scores", "score", 2, 960, key_col="buyer_id"),
        "credit_scores",
        "score",
        "above_max",
        "buyer_id=2,ts=2024-03-01T00:00:00Z",
    ),
    "rating 6": (_set("reviews", "rating", 8003, 6), "reviews", "rating", "above_max", "review_id=8003"),
    "value not allowed": (
        _set("orders", "channel", 203, "fax"),
        "orders",
        "channel",
        "not_allowed",
        "order_id=203",
    ),
    "timestamp after export": (
        _set("orders", "paid_at", 502, pd.Timestamp("2025-02-01", tz="UTC")),
        "orders",
        "paid_at",
        "after_export",
        "order_id=502",
    ),
    "event before registration": (
        _set("orders", "created_at", 401, pd.Timestamp("2022-12-01", tz="UTC")),
        "orders",
        "created_at",
        "before_registration",
        "order_id=401",
    ),
    "event before registration, no key": (
        _set("account_events", "ts", 3, pd.Timestamp("2022-12-01", tz="UTC"), key_col="buyer_id"),
        "account_events",
        "ts",
        "before_registration",
        "row 2",
    ),
    "buyer differs from order's": (
        _set("refunds", "buyer_id", 7002, 3),
        "refunds",
        "buyer_id",
        "buyer_mismatch",
        "refund_id=7002",
    ),
}


def test_valid_frames_have_no_problems(contract_frames):
    assert validate(contract_frames, EXPORTED_AT) == []


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_error_class_names_table_column_and_row(contract_frames, case):
    corrupt, table, column, check, example = case
    corrupt(contract_frames)
    problems = validate(contract_frames, EXPORTED_AT)
    hits = [p for p in problems if p.check == check]
    assert [(p.table, p.column) for p in hits] == [(table, column)], problems
    if example is not None:
        assert example in hits[0].examples
        assert hits[0].count >= 1


def test_scheduled_timestamps_may_follow_the_export(contract_frames):
    due = contract_frames["presales"]["balance_due_at"]
    assert (due > EXPORTED_AT).any()
    assert validate(contract_frames, EXPORTED_AT) == []
    problems = validate(contract_frames, "2024-01-25T00:00:00Z")  # before both due dates
    late = {(p.table, p.column) for p in problems if p.check == "after_export"}
    assert ("presales", "balance_paid_at") in late
    assert ("presales", "balance_due_at") not in late


def test_count_is_complete_and_examples_capped(contract_frames):
    contract_frames["orders"]["amount"] = -1.0
    (problem,) = validate(contract_frames, EXPORTED_AT)
    assert problem.count == 18
    assert problem.examples == (
        "order_id=101",
        "order_id=102",
        "order_id=103",
        "order_id=201",
        "order_id=202",
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.sets(st.integers(0, 17), min_size=1))
def test_count_is_exact_and_examples_are_the_first_offenders(contract_frames, bad):
    frames = dict(contract_frames, orders=contract_frames["orders"].copy())
    frames["orders"].loc[sorted(bad), "amount"] = -1.0
    (problem,) = validate(frames, EXPORTED_AT)
    assert problem.count == len(bad)
    first = frames["orders"]["order_id"].iloc[sorted(bad)[:5]]
    assert problem.examples == tuple(f"order_id={i}" for i in first)


def test_only_requested_tables_are_required(contract_frames):
    frames = {name: contract_frames[name] for name in ("buyers", "orders")}
    assert validate(frames, EXPORTED_AT, tables=["buyers", "orders"]) == []
    assert {p.table for p in validate(frames, EXPORTED_AT)} == set(contract.TABLE_NAMES) - {
        "buyers",
        "orders",
    }


def test_extra_columns_are_ignored(contract_frames):
    contract_frames["orders"]["note"] = "x"
    assert validate(contract_frames, EXPORTED_AT) == []


def test_contract_error_lists_every_problem():
    problems = [
        Problem("orders", "amount", "below_min", 2, ("order_id=1", "order_id=2"), "below 0"),
        Problem("disputes", None, "missing_table", 1, (), "table not found"),
    ]
    text = str(ContractError(problems))
    assert "2 problem(s)" in text
    assert "orders.amount: below_min: below 0 (2 rows); e.g. order_id=1, order_id=2" in text
    assert "disputes: missing_table" in text


def test_merge_adds_counts_and_caps_examples():
    a = Problem("orders", "amount", "below_min", 3, ("order_id=1", "order_id=2", "order_id=3"), "below 0")
    b = Problem("orders", "amount", "below_min", 4, tuple(f"order_id={i}" for i in range(4, 8)), "below 0")
    c = Problem("orders", "channel", "not_allowed", 1, ("order_id=9",), "x")
    merged = merge([a, c, b])
    assert [(p.column, p.count) for p in merged] == [("amount", 7), ("channel", 1)]
    assert merged[0].examples == tuple(f"order_id={i}" for i in range(1, 6))


def test_committed_contract_doc_is_up_to_date():
    assert contract_doc.DOC_PATH.read_text() == contract_doc.render(), "run: python -m features.contract_doc"


def test_contract_doc_covers_every_column():
    doc = contract_doc.render()
    for t in contract.TABLES:
        assert f"## `{t.name}`" in doc
        for col in t.columns:
            assert f"| `{col.name}` |" in doc
    assert "350-950" in doc or "350..950" in doc
