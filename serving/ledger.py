"""Ledger and decision log: SQLAlchemy Core over SQLite (WAL, default) or PostgreSQL.

One decision is one short transaction that first locks the buyer: ``SELECT ... FOR UPDATE``
on the buyer's row in ``buyer_locks`` (PostgreSQL), ``BEGIN IMMEDIATE`` (SQLite, which
takes the database write lock). Inside it the caller reads the buyer's live usage, decides,
and writes the decision row and, when approved, the reservation; so two concurrent checkouts
of one buyer can never both pass a limit. ``request_id`` is unique: a repeated request
returns the stored response. Outcomes release reservations under the same lock.

Tables:
    decisions      one row per decision: inputs, outputs, versions, latency.
    reservations   what an approval holds: a ship-before-balance balance (open until the
                   balance is paid or the order canceled) or a fast refund (counts against
                   the quota window; open until the goods come back).
    outcomes       what happened afterwards, posted by the platform (idempotent on outcome_id).
    buyer_locks    one row per buyer, the row the decision transaction locks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    case,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from serving.decide import Usage
from serving.policy import FAST_REFUND, PRESALE

_ID = BigInteger().with_variant(Integer, "sqlite")
_JSON = JSON().with_variant(JSONB(), "postgresql")

METADATA = MetaData()
DECISIONS = Table(
    "decisions",
    METADATA,
    Column("decision_id", String(36), primary_key=True),
    Column("request_id", String(128), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("service", String(40), nullable=False),
    Column("buyer_id", BigInteger, nullable=False, index=True),
    Column("ref_id", BigInteger, nullable=False),
    Column("decision", String(8), nullable=False),
    Column("star", SmallInteger),
    Column("score", SmallInteger),
    Column("p_bad", Float),
    Column("reserved", Float, nullable=False),
    Column("model_version", String(200)),
    Column("policy_version", String(100), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("inputs", _JSON, nullable=False),
    Column("outputs", _JSON, nullable=False),
)
RESERVATIONS = Table(
    "reservations",
    METADATA,
    Column("reservation_id", _ID, primary_key=True, autoincrement=True),
    Column("buyer_id", BigInteger, nullable=False),
    Column("service", String(40), nullable=False),
    Column("ref_id", BigInteger, nullable=False),
    Column("decision_id", String(36), nullable=False),
    Column("amount", Float, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("released_at", DateTime),
    Column("outcome", String(40)),
    Index("ix_reservations_buyer", "buyer_id", "service", "created_at"),
    Index("ix_reservations_ref", "service", "ref_id"),
)
OUTCOMES = Table(
    "outcomes",
    METADATA,
    Column("outcome_id", String(128), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("buyer_id", BigInteger, nullable=False, index=True),
    Column("service", String(40), nullable=False),
    Column("ref_id", BigInteger, nullable=False),
    Column("amount", Float),
    Column("occurred_at", DateTime, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    Column("released", Float, nullable=False),
    Column("payload", _JSON, nullable=False),
)
BUYER_LOCKS = Table(
    "buyer_locks",
    METADATA,
    Column("buyer_id", BigInteger, primary_key=True),
)

# Outcome kind -> (service, whether it releases the reservation).
OUTCOME_KINDS: dict[str, tuple[str, bool]] = {
    "balance_paid": (PRESALE, True),
    "order_canceled": (PRESALE, True),
    "balance_defaulted": (PRESALE, False),
    "goods_returned": (FAST_REFUND, True),
    "goods_not_returned": (FAST_REFUND, False),
    "refund_abuse": (FAST_REFUND, False),
}


def utcnow() -> datetime:
    """Now in UTC, naive (how the ledger stores every timestamp)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_decision_id() -> str:
    """A fresh decision id (UUID4 text)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Outcome:
    """A validated outcome posted to ``POST /v1/outcomes``.

    Attributes:
        outcome_id: Caller's idempotency key.
        kind: One of ``OUTCOME_KINDS``.
        buyer_id: The buyer.
        ref_id: The order id (presale kinds) or refund id (fast-refund kinds).
        amount: Amount concerned, if given.
        occurred_at: When it happened (naive UTC).
        payload: The request body as received.
    """

    outcome_id: str
    kind: str
    buyer_id: int
    ref_id: int
    amount: float | None
    occurred_at: datetime
    payload: Mapping[str, Any]


def _sqlite_engine(url: str, busy_timeout_ms: int, pool_size: int) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=busy_timeout_ms / 1000,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def make_engine(
    url: str, schema: str | None = None, busy_timeout_ms: int = 5000, pool_size: int = 10
) -> Engine:
    """Create the ledger engine.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path`` (parent directory created) or
            ``postgresql://...`` (psycopg 3 is used).
        schema: PostgreSQL schema holding the tables (created if missing); None for the default.
        busy_timeout_ms: SQLite busy timeout and pool wait, in milliseconds.
        pool_size: Connections per worker.

    Returns:
        The engine (lazy: no connection is opened).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if schema:
            raise ValueError("database_schema: not supported with SQLite")
        return _sqlite_engine(url, busy_timeout_ms, pool_size)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=busy_timeout_ms / 1000,
            connect_args={"connect_timeout": max(2, busy_timeout_ms // 1000)},
        )
        if schema:
            engine = engine.execution_options(schema_translate_map={None: schema})
        return engine
    raise ValueError(f"database_url: unsupported database {backend!r} (use sqlite or postgresql)")


class Ledger:
    """The ledger and decision log over one engine.

    Args:
        engine: From ``make_engine``.
        schema: The PostgreSQL schema the engine translates to, if any (created by ``create``).
    """

    def __init__(self, engine: Engine, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema
        self.created = False

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def create(self) -> None:
        """Create the schema and tables if missing (safe to run from several workers at once)."""
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    if self.schema and self.dialect == "postgresql":
                        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    METADATA.create_all(conn)
                self.created = True
                return
            except (IntegrityError, ProgrammingError):  # another worker created them concurrently
                if attempt == 2:
                    raise

    def drop(self) -> None:
        """Drop the tables (and the schema, if one was given). For tests and teardown."""
        with self.engine.begin() as conn:
            if self.schema and self.dialect == "postgresql":
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            else:
                METADATA.drop_all(conn)

    def ensure(self) -> None:
        """Create the tables on first use if ``create`` has not succeeded yet (database came up late)."""
        if not self.created:
            self.create()

    def ping(self) -> None:
        """Run a trivial query; raises the driver's error when the database is unreachable."""
        self.ensure()
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            conn.execute(select(func.count()).select_from(BUYER_LOCKS).where(BUYER_LOCKS.c.buyer_id == -1))

    @contextmanager
    def locked(self, buyer_id: int) -> Iterator[BuyerTransaction]:
        """A transaction holding the buyer's lock; commits on exit, rolls back on error."""
        self.ensure()
        with self.engine.begin() as conn:
            insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
            conn.execute(insert(BUYER_LOCKS).values(buyer_id=buyer_id).on_conflict_do_nothing())
            conn.execute(
                select(BUYER_LOCKS.c.buyer_id).where(BUYER_LOCKS.c.buyer_id == buyer_id).with_for_update()
            )
            yield BuyerTransaction(conn, buyer_id)

    def find_outputs(self, request_id: str) -> dict | None:
        """The stored response of a decision by request id, if any (outside any lock)."""
        self.ensure()
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            return conn.execute(
                select(DECISIONS.c.outputs).where(DECISIONS.c.request_id == request_id)
            ).scalar()

    def record_outcome(self, outcome: Outcome) -> dict:
        """Store an outcome and release what it closes, under the buyer's lock.

        Returns:
            ``{"outcome_id", "kind", "released", "replayed"}``; a repeated ``outcome_id``
            returns the stored result with ``replayed`` true and changes nothing.
        """
        service, releases = OUTCOME_KINDS[outcome.kind]
        with self.locked(outcome.buyer_id) as tx:
            conn = tx.conn
            stored = conn.execute(
                select(OUTCOMES.c.kind, OUTCOMES.c.released).where(
                    OUTCOMES.c.outcome_id == outcome.outcome_id
                )
            ).first()
            if stored is not None:
                return {
                    "outcome_id": outcome.outcome_id,
                    "kind": stored.kind,
                    "released": stored.released,
                    "replayed": True,
                }
            now = utcnow()
            match = and_(
                RESERVATIONS.c.buyer_id == outcome.buyer_id,
                RESERVATIONS.c.service == service,
                RESERVATIONS.c.ref_id == outcome.ref_id,
                RESERVATIONS.c.released_at.is_(None),
            )
            released = 0.0
            if releases:
                released = float(
                    conn.execute(
                        select(func.coalesce(func.sum(RESERVATIONS.c.amount), 0.0)).where(match)
                    ).scalar()
                )
                conn.execute(RESERVATIONS.update().where(match).values(released_at=now, outcome=outcome.kind))
            else:
                conn.execute(RESERVATIONS.update().where(match).values(outcome=outcome.kind))
            conn.execute(
                OUTCOMES.insert().values(
                    outcome_id=outcome.outcome_id,
                    kind=outcome.kind,
                    buyer_id=outcome.buyer_id,
                    service=service,
                    ref_id=outcome.ref_id,
                    amount=outcome.amount,
                    occurred_at=outcome.occurred_at,
                    recorded_at=now,
                    released=released,
                    payload=dict(outcome.payload),
                )
            )
            return {
                "outcome_id": outcome.outcome_id,
                "kind": outcome.kind,
                "released": released,
                "replayed": False,
            }

    def usage(self, buyer_id: int, window_days: int) -> Usage:
        """The buyer's live usage, read without a lock (for display, not for deciding)."""
        self.ensure()
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            return BuyerTransaction(conn, buyer_id).usage(window_days)


class BuyerTransaction:
    """Reads and writes inside ``Ledger.locked``; every method runs in the locked transaction.

    Args:
        conn: The open connection.
        buyer_id: The locked buyer.
    """

    def __init__(self, conn: Connection, buyer_id: int) -> None:
        self.conn = conn
        self.buyer_id = buyer_id

    def stored_outputs(self, request_id: str) -> dict | None:
        """The stored response for ``request_id``, if this request was already decided."""
        return self.conn.execute(
            select(DECISIONS.c.outputs).where(DECISIONS.c.request_id == request_id)
        ).scalar()

    def usage(self, window_days: int, service: str | None = None, ref_id: int | None = None) -> Usage:
        """Outstanding exposure and fast refunds in the window.

        Args:
            window_days: Fast-refund quota window, in days.
            service: With ``ref_id``, the decision being made: an earlier reservation for
                the same order or refund is left out (it will be replaced, not added to).
            ref_id: The order or refund id being decided.
        """
        r = RESERVATIONS.c
        since = utcnow() - timedelta(days=window_days)
        is_presale = and_(r.service == PRESALE, r.released_at.is_(None))
        is_refund = and_(r.service == FAST_REFUND, r.created_at >= since)
        where = r.buyer_id == self.buyer_id
        if service is not None and ref_id is not None:
            where = and_(where, ~and_(r.service == service, r.ref_id == ref_id))
        row = self.conn.execute(
            select(
                func.coalesce(func.sum(case((is_presale, r.amount), else_=0.0)), 0.0),
                func.coalesce(func.sum(case((is_refund, 1), else_=0)), 0),
                func.coalesce(func.sum(case((is_refund, r.amount), else_=0.0)), 0.0),
            ).where(where)
        ).one()
        return Usage(exposure=float(row[0]), refund_count=int(row[1]), refund_amount=float(row[2]))

    def record(self, row: Mapping[str, Any], reserve: float) -> None:
        """Insert the decision row and, when ``reserve`` > 0, hold it in the ledger.

        Args:
            row: Values for ``decisions`` (must include decision_id, service, ref_id).
            reserve: Amount to hold; an open reservation for the same order or refund is
                replaced rather than added to.
        """
        self.conn.execute(DECISIONS.insert().values(**row))
        if reserve <= 0:
            return
        r = RESERVATIONS.c
        same = and_(r.buyer_id == self.buyer_id, r.service == row["service"], r.ref_id == row["ref_id"])
        if row["service"] == PRESALE:
            same = and_(same, r.released_at.is_(None))
        updated = self.conn.execute(
            RESERVATIONS.update().where(same).values(amount=reserve, decision_id=row["decision_id"])
        ).rowcount
        if not updated:
            self.conn.execute(
                RESERVATIONS.insert().values(
                    buyer_id=self.buyer_id,
                    service=row["service"],
                    ref_id=row["ref_id"],
                    decision_id=row["decision_id"],
                    amount=reserve,
                    created_at=row["created_at"],
                )
            )
