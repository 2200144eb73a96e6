"""Retention: export decisions and outcomes older than N days to parquet, then delete them.

``python -m serving retention --older-than-days N --out DIR`` works through each table in
batches, oldest first (``decisions`` by ``created_at``, ``outcomes`` by ``recorded_at``).
For each batch it

1. writes ``DIR/<table>/<table>-<first time>-<last time>-<digest>.parquet`` durably (a
   temporary file, fsync, rename, fsync of the directory), then
2. deletes exactly the exported rows, by key, in one transaction.

An interruption loses nothing: before the first step a batch is still in the database; after
it, the part is on disk. A rerun first finishes any part whose rows are still in the
database (deletes them; the part already holds them), so every row ends up in exactly one
part, and then carries on. Rows of an order or refund whose reservation is still open are
kept (outcomes still to come are checked against them). JSON columns are written as JSON
text; money columns stay integer minor units.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Integer,
    SmallInteger,
    Table,
    and_,
    delete,
    exists,
    func,
    select,
    tuple_,
)

from serving.ledger.store import Ledger
from serving.ledger.tables import DECISIONS, OUTCOMES, RESERVATIONS, utcnow

log = logging.getLogger(__name__)
DEFAULT_BATCH = 5000
# table -> (its time column, its key columns)
TABLES: dict[str, tuple[Table, str, tuple[str, ...]]] = {
    "decisions": (DECISIONS, "created_at", ("decision_id",)),
    "outcomes": (OUTCOMES, "recorded_at", ("key_id", "outcome_id")),
}
_STAMP = "%Y%m%dT%H%M%S%f"


@dataclass
class Report:
    """What a run did, per table: rows exported and deleted, parts written, parts finished from an earlier run."""

    exported: dict[str, int] = field(default_factory=dict)
    parts: dict[str, list[str]] = field(default_factory=dict)
    recovered: dict[str, int] = field(default_factory=dict)


def _arrow_type(column) -> pa.DataType:
    kind = column.type
    if isinstance(kind, JSON):
        return pa.string()
    if isinstance(kind, DateTime):
        return pa.timestamp("us")
    if isinstance(kind, Float):
        return pa.float64()
    if isinstance(kind, BigInteger | Integer | SmallInteger):
        return pa.int64()
    return pa.string()


def arrow_schema(table: Table) -> pa.Schema:
    """The parquet schema of an exported table (JSON columns as text)."""
    return pa.schema([pa.field(c.name, _arrow_type(c), nullable=True) for c in table.columns])


def _value(column, value: Any) -> Any:
    if isinstance(column.type, JSON) and value is not None and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_part(rows: Sequence[Any], table: Table, time_column: str, keys: tuple[str, ...], out: Path) -> Path:
    """Write one batch as a parquet part, durably, named by its time range and keys.

    The same rows always give the same name, so writing a batch twice leaves one part.

    Returns:
        The part's path.
    """
    out.mkdir(parents=True, exist_ok=True)
    key_text = "\n".join("\x00".join(str(getattr(r, k)) for k in keys) for r in rows)
    digest = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    first, last = getattr(rows[0], time_column), getattr(rows[-1], time_column)
    name = f"{table.name}-{first.strftime(_STAMP)}-{last.strftime(_STAMP)}-{digest}.parquet"
    path = out / name
    schema = arrow_schema(table)
    data = {c.name: [_value(c, getattr(r, c.name)) for r in rows] for c in table.columns}
    tmp = out / f".{name}.tmp"
    pq.write_table(pa.table(data, schema=schema), tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(out)
    return path


def _key_match(table: Table, keys: tuple[str, ...], values: Sequence[tuple]) -> Any:
    if len(keys) == 1:
        return table.c[keys[0]].in_([v[0] for v in values])
    return tuple_(*(table.c[k] for k in keys)).in_(list(values))


def delete_rows(ledger: Ledger, table: Table, keys: tuple[str, ...], values: Sequence[tuple]) -> int:
    """Delete the rows with these keys, in one transaction; returns how many were deleted."""
    deleted = 0
    with ledger.engine.begin() as conn:
        for start in range(0, len(values), 500):  # bounded statement size, same transaction
            chunk = values[start : start + 500]
            deleted += conn.execute(delete(table).where(_key_match(table, keys, chunk))).rowcount
    return deleted


def _open_hold(table: Table) -> Any:
    r = RESERVATIONS.c
    return exists().where(
        and_(
            r.buyer_id == table.c.buyer_id,
            r.service == table.c.service,
            r.ref_id == table.c.ref_id,
            r.released_at.is_(None),
        )
    )


def _recover(ledger: Ledger, name: str, out: Path) -> int:
    """Delete the rows of parts written by an interrupted run that are still in the database."""
    table, time_column, keys = TABLES[name]
    if not out.exists():
        return 0
    with ledger.engine.connect() as conn:
        oldest = conn.execute(select(func.min(table.c[time_column]))).scalar()
    if oldest is None:
        return 0
    finished = 0
    for part in sorted(out.glob(f"{name}-*.parquet")):
        last = datetime.strptime(part.name.split("-")[2], _STAMP)
        if last < oldest:  # every row of this part is older than anything left: done earlier
            continue
        exported = pq.read_table(part, columns=list(keys)).to_pylist()
        values = [tuple(row[k] for k in keys) for row in exported]
        gone = delete_rows(ledger, table, keys, values)
        if gone:
            log.info("finished %s from an interrupted run: deleted %d exported rows", part.name, gone)
            finished += gone
    return finished


def run_retention(
    ledger: Ledger,
    older_than_days: float,
    out: str | Path,
    batch_size: int = DEFAULT_BATCH,
    now: datetime | None = None,
    on_part: Callable[[Path], None] | None = None,
) -> Report:
    """Export and delete every decision and outcome older than ``older_than_days``.

    Args:
        ledger: The ledger (tables must exist).
        older_than_days: Age, in days, past which rows leave the database.
        out: Directory of the parquet parts (``<out>/decisions``, ``<out>/outcomes``).
        batch_size: Rows per part and per delete transaction.
        now: The reference time (naive UTC; default: now).
        on_part: Called with each part's path after it is written and before its rows are
            deleted (progress reporting; tests use it to interrupt).

    Returns:
        What was exported.
    """
    if older_than_days < 0:
        raise ValueError("older_than_days: must be >= 0")
    if batch_size <= 0:
        raise ValueError("batch_size: must be > 0")
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    report = Report()
    for name, (table, time_column, keys) in TABLES.items():
        folder = Path(out) / name
        report.recovered[name] = _recover(ledger, name, folder)
        report.exported[name], report.parts[name] = 0, []
        order = [table.c[time_column], *(table.c[k] for k in keys)]
        query = (
            select(table)
            .where(table.c[time_column] < cutoff, ~_open_hold(table))
            .order_by(*order)
            .limit(batch_size)
        )
        while True:
            with ledger.engine.connect() as conn:
                conn.execution_options(sqlite_begin="DEFERRED")
                rows = conn.execute(query).all()
            if not rows:
                break
            part = write_part(rows, table, time_column, keys, folder)
            if on_part is not None:
                on_part(part)
            values = [tuple(getattr(r, k) for k in keys) for r in rows]
            delete_rows(ledger, table, keys, values)
            report.exported[name] += len(rows)
            report.parts[name].append(str(part))
            log.info("%s: exported and deleted %d rows to %s", name, len(rows), part)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``retention`` subcommand's arguments."""
    parser.add_argument("--older-than-days", type=float, required=True, help="export rows older than N days")
    parser.add_argument("--out", required=True, help="directory of the parquet parts")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help=f"rows per part and transaction ({DEFAULT_BATCH})",
    )


def main(args: argparse.Namespace) -> int:
    """Run retention against the configured ledger (``SERVING_DATABASE_URL``...); prints a summary."""
    from serving.config import load_config
    from serving.ledger.engine import make_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config()
    engine = make_engine(
        config.database_url, config.database_schema, config.db_busy_timeout_ms, 2, config.sqlite_synchronous
    )
    ledger = Ledger(engine, config.database_schema, config.db_busy_timeout_ms)
    try:
        ledger.create()
        report = run_retention(ledger, args.older_than_days, args.out, args.batch_size)
    except ValueError as exc:
        print(f"retention: {exc}", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    for name in TABLES:
        print(
            f"{name}: exported and deleted {report.exported[name]} rows in {len(report.parts[name])} parts"
            f" (finished {report.recovered[name]} from an interrupted run) -> {Path(args.out) / name}"
        )
    return 0
