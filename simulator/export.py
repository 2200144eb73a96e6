"""Turn simulated columns into contract-conforming Arrow tables, as an export taken at one instant.

Instants after the export time become null (the fact had not happened yet), except
``scheduled`` columns; rows whose event time lies after the export are not exported;
outcome columns are null while the instant that makes them known is.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features import contract

Columns = dict[str, np.ndarray]

ENUMS = {
    "category": contract.CATEGORIES,
    "channel": contract.CHANNELS,
    "payment_method": contract.PAYMENT_METHODS,
    "event_type": contract.ACCOUNT_EVENT_TYPES,
    "reason": None,  # per table, see _enum_values
    "kind": None,
    "outcome": contract.REFUND_OUTCOMES,
    "ruling": contract.DISPUTE_RULINGS,
    "topic": contract.CS_TOPICS,
}
KNOWN_FROM = {
    ("refunds", "outcome"): "decided_at",
    ("disputes", "ruling"): "closed_at",
    ("credit_bills", "amount_paid"): "paid_at",
}
NULL_ID = -1


def _enum_values(table: str, column: str) -> tuple[str, ...]:
    per_table = {
        ("refunds", "reason"): contract.REFUND_REASONS,
        ("refunds", "kind"): contract.REFUND_KINDS,
        ("disputes", "reason"): contract.DISPUTE_REASONS,
        ("violations", "kind"): contract.VIOLATION_KINDS,
    }
    return per_table.get((table, column)) or ENUMS[column]


def to_table(name: str, cols: Columns, export_at: int) -> pa.Table:
    """Build table ``name`` from integer-coded columns.

    Args:
        name: Contract table name.
        cols: One array per contract column: instants as int64 seconds, enums as indices into
            the contract's tuple, nullable ids as -1, nullable floats as NaN.
        export_at: The export instant (seconds).

    Returns:
        A table with exactly ``contract.arrow_schema(name)``.

    Raises:
        ValueError: A non-nullable column would hold a null (a simulator bug).
    """
    spec = contract.table(name)
    schema = contract.arrow_schema(name)
    keep = np.ones(len(next(iter(cols.values()))), dtype=bool)
    if spec.event_time and not spec.column(spec.event_time).scheduled:
        keep = cols[spec.event_time] <= export_at
    arrays = []
    for col in spec.columns:
        values = np.asarray(cols[col.name])[keep]
        mask = np.zeros(values.size, dtype=bool)
        if col.kind == "timestamp" and not col.scheduled:
            mask |= values > export_at
        elif col.kind == "int" and col.nullable:
            mask |= values == NULL_ID
        elif col.kind == "float":
            mask |= np.isnan(values)
        gate = KNOWN_FROM.get((name, col.name))
        if gate:
            mask |= np.asarray(cols[gate])[keep] > export_at
        if mask.any() and not col.nullable:
            raise ValueError(f"{name}.{col.name}: {int(mask.sum())} nulls in a non-nullable column")
        arrays.append(
            _arrow(
                values,
                col.kind,
                mask if mask.any() else None,
                _enum_values(name, col.name) if col.kind == "str" else (),
            )
        )
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow(values: np.ndarray, kind: str, mask: np.ndarray | None, labels: tuple[str, ...]) -> pa.Array:
    if kind == "timestamp":
        return pa.array(values.astype(np.int64) * 1_000_000, type=pa.timestamp("us", tz="UTC"), mask=mask)
    if kind == "str":
        indices = pa.array(values.astype(np.int32), mask=mask)
        return pa.DictionaryArray.from_arrays(indices, pa.array(list(labels))).cast(pa.string())
    if kind == "bool":
        return pa.array(values.astype(bool), mask=mask)
    if kind == "int":
        return pa.array(values.astype(np.int64), mask=mask)
    return pa.array(values.astype(np.float64), mask=mask)
