"""Check raw-table frames against the data contract (``features.contract``).

``validate(frames, exported_at)`` is pure: it takes the frames as loaded and returns
every :class:`Problem` found, vectorised over whole columns so it runs on tens of
millions of rows. ``python -m features validate DIR`` is the command-line edge
(:mod:`features.validate_cli`).

Checks (the ``check`` field of a problem):
    missing_table, missing_column, wrong_type, null, duplicate_key, orphan_reference,
    below_min, above_max, not_allowed,
    after_export (a non-scheduled timestamp after the export time),
    before_registration (a table's ``event_time`` before the buyer's ``registered_at``),
    buyer_mismatch (a row's buyer differs from its order's buyer).
Reading (``features.io``) adds unreadable, unparseable_timestamp, wrong_type (values that
cannot be cast), unsharded and outside_shard (a part's row outside its manifest buyer range).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract

MAX_EXAMPLES = 5
STRUCTURAL = ("missing_table", "missing_column", "unreadable", "unsharded")  # counts are not rows


@dataclass(frozen=True)
class Problem:
    """One contract violation, aggregated over the rows that show it.

    Attributes:
        table: Table name.
        column: Column name, or ``None`` for a table-level problem.
        check: Which check failed (see the module docstring).
        count: Number of offending rows (1 for a missing table or column).
        examples: Up to five offending rows, as primary-key values
            (``"order_id=17"``, ``"buyer_id=3,ts=2024-01-01T00:00:00Z"``) or, for a
            table without a primary key, 0-based row numbers (``"row 12"``).
        message: What is wrong, in words.
    """

    table: str
    column: str | None
    check: str
    count: int
    examples: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.check}: {self.message}"
        if self.check not in STRUCTURAL:
            text += f" ({self.count} row{'s' if self.count != 1 else ''})"
        return text + (f"; e.g. {', '.join(self.examples)}" if self.examples else "")


class ContractError(Exception):
    """Raised when raw data breaks the contract; ``problems`` lists every violation."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        head = f"raw data breaks the contract: {len(self.problems)} problem(s)"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def _format_value(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def example_keys(frame: pd.DataFrame, table: contract.Table, mask: np.ndarray) -> tuple[str, ...]:
    """Describe up to ``MAX_EXAMPLES`` rows selected by ``mask`` by their key.

    Args:
        frame: The table's frame.
        table: Its contract declaration.
        mask: Boolean array, one entry per row of ``frame``.

    Returns:
        Primary-key renderings (``"order_id=17"``), or ``"row N"`` (0-based position)
        when the table has no primary key or a key column is missing.
    """
    positions = np.flatnonzero(mask)[:MAX_EXAMPLES]
    key = [c for c in table.primary_key if c in frame.columns]
    if not key or len(key) < len(table.primary_key):
        return tuple(f"row {i}" for i in positions)
    rows = frame[key].iloc[positions]
    return tuple(
        ",".join(f"{c}={_format_value(v)}" for c, v in zip(key, values, strict=True))
        for values in rows.itertuples(index=False, name=None)
    )


def _problem(
    frame: pd.DataFrame,
    table: contract.Table,
    column: str,
    check: str,
    mask: object,
    message: str,
    shown: np.ndarray | None = None,
) -> list[Problem]:
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    if not count:
        return []
    examples = example_keys(frame, table, mask if shown is None else shown)
    return [Problem(table.name, column, check, count, examples, message)]


def conforms(series: pd.Series, kind: str) -> bool:
    """Whether ``series`` has a dtype the checks for logical type ``kind`` can use."""
    dtype = series.dtype
    if kind == "int":
        return pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if kind == "float":
        return pd.api.types.is_float_dtype(dtype) or conforms(series, "int")
    if kind == "bool":
        return pd.api.types.is_bool_dtype(dtype)
    if kind == "str":
        return pd.api.types.is_string_dtype(dtype)
    return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"


def _column_problems(
    frame: pd.DataFrame, table: contract.Table, col: contract.Column, exported_at: pd.Timestamp | None
) -> list[Problem]:
    s = frame[col.name]
    if not conforms(s, col.kind):
        return [
            Problem(table.name, col.name, "wrong_type", len(s), (), f"dtype {s.dtype}, expected {col.kind}")
        ]
    found = []
    isna = s.isna().to_numpy()
    if not col.nullable:
        found += _problem(frame, table, col.name, "null", isna, "null in a required column")
    if col.min_value is not None:
        found += _problem(
            frame, table, col.name, "below_min", (s < col.min_value).fillna(False), f"below {col.min_value:g}"
        )
    if col.max_value is not None:
        found += _problem(
            frame, table, col.name, "above_max", (s > col.max_value).fillna(False), f"above {col.max_value:g}"
        )
    if col.allowed is not None:
        outside = ~isna & ~s.isin(col.allowed).to_numpy()
        found += _problem(
            frame, table, col.name, "not_allowed", outside, f"value not in {{{', '.join(col.allowed)}}}"
        )
    if col.kind == "timestamp" and not col.scheduled and exported_at is not None:
        late = (s > exported_at).fillna(False)
        found += _problem(
            frame, table, col.name, "after_export", late, f"after the export time {exported_at}"
        )
    return found


def _usable(frames: Mapping[str, pd.DataFrame], table: str, column: str) -> bool:
    frame = frames.get(table)
    if frame is None or column not in frame.columns:
        return False
    return conforms(frame[column], contract.table(table).column(column).kind)


def _key_problems(frame: pd.DataFrame, table: contract.Table) -> list[Problem]:
    key = list(table.primary_key)
    if not key or not all(c in frame.columns for c in key):
        return []
    dup = frame.duplicated(subset=key, keep=False).to_numpy()
    repeat = frame.duplicated(subset=key, keep="first").to_numpy() if dup.any() else dup
    return _problem(frame, table, ",".join(key), "duplicate_key", dup, "primary key not unique", shown=repeat)


def _matches(frames: Mapping[str, pd.DataFrame], values: pd.Series, ref: str, cache: dict) -> np.ndarray:
    """Row of ``ref`` (``"table.column"``) each value points to (first match), -1 where none."""
    if ref not in cache:
        table, key = ref.split(".")
        ids = frames[table][key]
        index = pd.Index(ids)
        rows = None
        if not index.is_unique:
            first = ~ids.duplicated().to_numpy()
            index, rows = pd.Index(ids[first]), np.flatnonzero(first)
        cache[ref] = (index, rows)
    index, rows = cache[ref]
    pos = index.get_indexer(values)
    return pos if rows is None else np.where(pos >= 0, rows[pos], -1)


def _at(values: np.ndarray, row: np.ndarray) -> np.ndarray:
    return values[np.maximum(row, 0)] if len(values) else np.zeros(len(row), dtype=values.dtype)


def _link_problems(frames: Mapping[str, pd.DataFrame], table: contract.Table, cache: dict) -> list[Problem]:
    """Orphan references, events before the buyer registered, and rows whose buyer is not the order's."""
    frame, found, rows = frames[table.name], [], {}
    for col in table.columns:
        ref_table, _, ref_col = (col.references or "..").partition(".")
        if not (
            col.references and _usable(frames, table.name, col.name) and _usable(frames, ref_table, ref_col)
        ):
            continue
        rows[ref_table] = row = _matches(frames, frame[col.name], col.references, cache)
        orphan = frame[col.name].notna().to_numpy() & (row < 0)
        found += _problem(frame, table, col.name, "orphan_reference", orphan, f"no matching {col.references}")
    event = table.event_time
    if "buyers" in rows and _usable(frames, table.name, event) and _usable(frames, "buyers", "registered_at"):
        registered = _at(frames["buyers"]["registered_at"].dt.tz_convert(None).to_numpy(), rows["buyers"])
        early = (rows["buyers"] >= 0) & (frame[event].dt.tz_convert(None).to_numpy() < registered)
        found += _problem(frame, table, event, "before_registration", early, "before the buyer registered")
    if "orders" in rows and "buyers" in rows and _usable(frames, "orders", "buyer_id"):
        order_buyer = _at(frames["orders"]["buyer_id"].to_numpy(dtype="int64", na_value=-1), rows["orders"])
        own = frame["buyer_id"].to_numpy(dtype="int64", na_value=-1)
        differs = (rows["orders"] >= 0) & (rows["buyers"] >= 0) & (order_buyer != own)
        found += _problem(
            frame, table, "buyer_id", "buyer_mismatch", differs, "differs from the order's buyer_id"
        )
    return found


def validate(
    frames: Mapping[str, pd.DataFrame],
    exported_at: pd.Timestamp | str | None,
    tables: Iterable[str] | None = None,
) -> list[Problem]:
    """Check frames against the contract; pure, no I/O.

    Args:
        frames: Table name -> frame, typed as ``features.io.read_table`` returns them.
            Extra tables and extra columns are ignored.
        exported_at: The export time (UTC); non-scheduled timestamps must not follow
            it. ``None`` skips that check.
        tables: Tables that must be present; default all contract tables.

    Returns:
        Every problem found, in contract order (empty when the data conforms).
    """
    exported = None if exported_at is None else pd.Timestamp(exported_at)
    if exported is not None:
        exported = exported.tz_localize("UTC") if exported.tz is None else exported.tz_convert("UTC")
    wanted = set(contract.TABLE_NAMES if tables is None else tables)
    found: list[Problem] = []
    cache: dict = {}  # referenced key -> (index, rows), built once per call
    for table in contract.TABLES:
        if table.name not in wanted:
            continue
        frame = frames.get(table.name)
        if frame is None:
            found.append(Problem(table.name, None, "missing_table", 1, (), "table not found"))
            continue
        for col in table.columns:
            if col.name not in frame.columns:
                found.append(Problem(table.name, col.name, "missing_column", 1, (), "required column absent"))
            else:
                found += _column_problems(frame, table, col, exported)
        found += _key_problems(frame, table)
        found += _link_problems(frames, table, cache)
    return found


def merge(problems: Iterable[Problem]) -> list[Problem]:
    """Combine problems of the same table, column and check (e.g. from several shards).

    Counts add up; examples are kept up to ``MAX_EXAMPLES``; the first message wins.
    """
    merged: dict[tuple, Problem] = {}
    for p in problems:
        key = (p.table, p.column, p.check)
        if key not in merged:
            merged[key] = p
            continue
        old = merged[key]
        examples = (old.examples + p.examples)[:MAX_EXAMPLES]
        merged[key] = Problem(old.table, old.column, old.check, old.count + p.count, examples, old.message)
    return list(merged.values())
