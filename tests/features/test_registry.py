"""Registry integrity: names, texts, directions, definitions, coverage of every raw table."""

from __future__ import annotations

import re

import pytest

from features import contract, pit, registry
from features.signal_types import AGGREGATIONS, Cond, Signal, Source


def test_signal_count_is_in_range():
    assert 280 <= len(registry.signals()) <= 400  # "about 300" (DESIGN.md), with the hidden-state families


def test_names_are_unique_identifiers():
    names = registry.signal_names()
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)


def test_no_two_signals_share_a_definition():
    definitions = [s.definition for s in registry.signals()]
    assert len(definitions) == len(set(definitions))


def test_every_signal_is_described_directed_and_explained():
    for s in registry.signals():
        assert s.description.strip() and s.description.endswith("."), s.name
        assert s.reason.strip() and "{" not in s.reason, s.name
        assert s.risk_direction in (-1, 0, 1), s.name
        assert s.group, s.name


def test_sources_read_existing_columns_and_enum_values():
    for s in registry.signals():
        for source in filter(None, (s.source, s.per)):
            columns = registry.table_columns(source.table)
            assert set(source.columns) <= set(columns), s.name
            for cond in source.filter:
                if cond.op in ("==", "in") and source.table in contract.TABLE_NAMES:
                    allowed = contract.table(source.table).column(cond.column).allowed
                    values = cond.value if cond.op == "in" else (cond.value,)
                    assert allowed is None or set(values) <= set(allowed), s.name
        if s.end is not None:
            assert s.end in registry.table_columns(s.table), s.name


def test_state_filters_are_timed_by_the_point_in_time_rule():
    """A filter on a state column (outcome, ruling, canceled_at ...) must be a positive test
    (known from its own timestamp) or a deadline test ('missed'); never 'is null'."""
    for s in registry.signals():
        for cond in s.filter:
            if pit.state_time(s.table, cond.column) and cond.op not in ("missed", "first"):
                assert cond.op in ("==", "in", ">=", "<", "notna", "by"), s.name


def test_every_raw_table_is_covered():
    covered = {s.table for s in registry.signals()}
    assert set(contract.TABLE_NAMES) <= covered
    assert "shared_devices" in covered


def test_windows_and_aggregations_span_the_design():
    windows = {s.window_days for s in registry.signals()}
    assert {7, 30, 90, 180, 365, None} <= windows
    assert set(AGGREGATIONS) == {s.aggregation for s in registry.signals()}


def test_monotone_constraints_follow_risk_direction():
    names = ["balances_late_count_365d", "tenure_days_since_first", "orders_count_30d"]
    assert registry.monotone_constraints(names) == [registry.get(n).risk_direction for n in names]
    assert registry.monotone_constraints(["balances_late_count_365d"]) == [1]
    assert len(registry.monotone_constraints()) == len(registry.signals())
    with pytest.raises(KeyError):
        registry.monotone_constraints(["nope"])


def test_signal_checks_its_arguments():
    src = Source("orders", "created_at")
    with pytest.raises(ValueError, match="aggregation"):
        Signal("x", src, "median", None, 1, "d.", "r")
    with pytest.raises(ValueError, match="per"):
        Signal("x", src, "ratio", None, 1, "d.", "r")
    with pytest.raises(ValueError, match="baseline"):
        Signal("x", src, "trend", 90, 1, "d.", "r", baseline_days=30)
    with pytest.raises(ValueError, match="op"):
        Cond("amount", "~", 1)


def test_signals_is_an_immutable_tuple():
    assert isinstance(registry.signals(), tuple)
    assert registry.signals() is registry.signals()
