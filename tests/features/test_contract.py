"""The contract declarations are internally consistent."""

import pytest

from features import contract


def test_every_reference_points_to_a_declared_key_column():
    for t in contract.TABLES:
        for col in t.columns:
            if col.references:
                ref_table, ref_col = col.references.split(".")
                target = contract.table(ref_table)
                assert target.primary_key == (ref_col,), f"{t.name}.{col.name} -> {col.references}"


def test_primary_key_and_event_time_are_declared_columns():
    for t in contract.TABLES:
        for name in (*t.primary_key, *([t.event_time] if t.event_time else [])):
            assert name in t.column_names, f"{t.name}: {name}"


def test_unknown_table_names_the_known_ones():
    with pytest.raises(KeyError, match="known tables: buyers"):
        contract.table("nope")


def test_arrow_schema_matches_declaration():
    schema = contract.arrow_schema("presales")
    assert schema.names == list(contract.table("presales").column_names)
    assert str(schema.field("balance_paid_at").type) == "timestamp[us, tz=UTC]"
    assert schema.field("balance_paid_at").nullable
    assert not schema.field("deposit_paid_at").nullable
