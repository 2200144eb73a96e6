"""Ledger and decision log over SQLite (WAL, default) or PostgreSQL.

One decision is one short transaction that first locks the buyer: ``SELECT ... FOR UPDATE``
on the buyer's row in ``buyer_locks`` (PostgreSQL) or ``BEGIN IMMEDIATE`` (SQLite, which
takes the database write lock). Inside it the caller reads the buyer's live usage, decides,
and writes the decision row and, when approved, the reservation; so two concurrent checkouts
of one buyer can never both pass a limit. ``request_id`` is unique per calling key and
stored with the request's fingerprint (``serving.ledger.idempotency``). Outcomes are checked
against the decisions and reservations and release them under the same lock. Money is
integer minor units throughout (``serving.money``).

The decision transaction is the hot path of checkout: its statements are SQLAlchemy Core
statements (``serving.ledger.tables``) compiled once per dialect and run on the pooled DBAPI
connection, which costs a few microseconds per statement instead of tens. Everything else
(schema, outcomes, reads) goes through SQLAlchemy as usual.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, case, func, inspect, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, ProgrammingError

from serving.ledger.engine import DURABILITY_OPTION, begin_immediate, make_engine
from serving.ledger.idempotency import Claims, Refusal, key_reused
from serving.ledger.positions import OPEN, RELEASED_STATES, Position, Usage, apply_outcome, decided_at_risk
from serving.ledger.tables import (
    BUYER_LOCKS,
    DECISIONS,
    EXPLORATION_SPEND,
    METADATA,
    OUTCOMES,
    RESERVATIONS,
    DecisionRow,
    utcnow,
)
from serving.policy import FAST_REFUND, PRESALE
from serving.schema import OUTCOME_KINDS, Outcome

log = logging.getLogger(__name__)
__all__ = ["DuplicateRequest", "Ledger", "Outcome", "Refusal", "make_engine", "utcnow"]


class LedgerSchemaError(RuntimeError):
    """The ledger's tables were created by an earlier version and lack current columns."""


class DuplicateRequest(Exception):
    """The decision's ``request_id`` was committed meanwhile by another transaction."""


class DecisionIds:
    """Random UUID4 decision ids without a system call per id (``os.urandom`` is a system call: too costly once per decision).

    Seeded from ``os.urandom`` and reseeded in a forked child, so workers never share a sequence.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._random = random.Random()

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._random.seed(os.urandom(32))
            self._pid = os.getpid()
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))


@dataclass(frozen=True)
class _Sql:
    """One statement compiled for a dialect: its text, parameter order (positional styles)
    and the constants SQLAlchemy bound while compiling."""

    text: str
    order: tuple[str, ...] | None
    constants: dict[str, Any]

    def params(self, values: Mapping[str, Any]) -> tuple | dict:
        merged = self.constants | dict(values)
        return tuple(merged[n] for n in self.order) if self.order is not None else merged


class DecisionStatements:
    """The decision transaction's statements, compiled once for the engine's dialect.

    Args:
        engine: The ledger engine.
        schema: PostgreSQL schema the tables live in, if any.
    """

    def __init__(self, engine: Engine, schema: str | None) -> None:
        self.dialect = engine.dialect.name
        self.integrity_error = engine.dialect.loaded_dbapi.IntegrityError
        r, d = RESERVATIONS.c, DECISIONS.c
        is_presale = r.service == PRESALE
        # positions.counts_in_quota
        is_refund = and_(r.service == FAST_REFUND, r.amount_minor > 0, r.created_at >= bindparam("since"))
        same_request = and_(d.key_id == bindparam("key_id"), d.request_id == bindparam("request_id"))
        this_ref = and_(
            r.buyer_id == bindparam("b"), r.service == bindparam("s"), r.ref_id == bindparam("ref")
        )
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        reserve = insert(RESERVATIONS).values(
            buyer_id=bindparam("buyer_id"),
            service=bindparam("service"),
            ref_id=bindparam("ref_id"),
            decision_id=bindparam("decision_id"),
            amount_minor=bindparam("amount"),
            released_minor=0,
            paid_minor=0,
            state=OPEN,
            created_at=bindparam("created_at"),
        )
        reserve = reserve.on_conflict_do_update(  # a repeat approval replaces the hold (positions.approve)
            index_elements=["buyer_id", "service", "ref_id"],
            set_={
                "amount_minor": reserve.excluded.amount_minor,
                "released_minor": 0,
                "decision_id": reserve.excluded.decision_id,
            },
        )
        own = select(r.amount_minor, r.released_minor, r.paid_minor, r.state, r.created_at).where(this_ref)
        e = EXPLORATION_SPEND.c
        spend = insert(EXPLORATION_SPEND).values(
            service=bindparam("service"), month=bindparam("month"), spent_minor=bindparam("amount")
        )
        spend = spend.on_conflict_do_update(
            index_elements=["service", "month"],
            set_={"spent_minor": e.spent_minor + spend.excluded.spent_minor},
        )
        statements = {
            "lock_row": insert(BUYER_LOCKS).values(buyer_id=bindparam("buyer_id")).on_conflict_do_nothing(),
            "lock": select(BUYER_LOCKS.c.buyer_id)
            .where(BUYER_LOCKS.c.buyer_id == bindparam("b"))
            .with_for_update(),
            "read": select(
                select(d.outputs).where(same_request).scalar_subquery(),
                select(d.fingerprint).where(same_request).scalar_subquery(),
                func.coalesce(func.sum(case((is_presale, r.amount_minor - r.released_minor), else_=0)), 0),
                func.coalesce(func.sum(case((is_refund, 1), else_=0)), 0),
                func.coalesce(func.sum(case((is_refund, r.amount_minor), else_=0)), 0),
                select(e.spent_minor)
                .where(e.service == bindparam("s"), e.month == bindparam("month"))
                .scalar_subquery(),
            ).where(
                r.buyer_id == bindparam("b"),
                ~and_(r.service == bindparam("s"), r.ref_id == bindparam("ref")),
            ),
            "own": own,
            "decision": DECISIONS.insert().values({c.name: bindparam(c.name) for c in DECISIONS.c}),
            "reserve": reserve,
            "spend": spend,
        }
        if self.dialect == "postgresql":
            statements["claim"] = select(func.pg_try_advisory_xact_lock(bindparam("claim")))
        translate = (
            {"schema_translate_map": {None: schema}, "render_schema_translate": True} if schema else {}
        )
        self.sql: dict[str, _Sql] = {}
        for name, stmt in statements.items():
            compiled = stmt.compile(dialect=engine.dialect, **translate)
            constants = {k: v for k, v in compiled.params.items() if v is not None}
            order = tuple(compiled.positiontup) if compiled.positional else None
            self.sql[name] = _Sql(compiled.string, order, constants)

    def stamp(self, moment: datetime) -> Any:
        """A timestamp as the driver stores it (SQLite: SQLAlchemy's text format)."""
        return moment.isoformat(sep=" ", timespec="microseconds") if self.dialect == "sqlite" else moment

    def document(self, value: Any) -> str:
        """A JSON document as the driver stores it: text (PostgreSQL casts it to jsonb); text passes as is."""
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class Ledger:
    """The ledger and decision log over one engine.

    Args:
        engine: From ``make_engine``.
        schema: The PostgreSQL schema the engine translates to, if any (created by ``create``).
        busy_timeout_ms: How long a SQLite decision waits for the write lock.
    """

    def __init__(self, engine: Engine, schema: str | None = None, busy_timeout_ms: int = 5000) -> None:
        self.engine = engine
        self.schema = schema
        self.busy_timeout_ms = busy_timeout_ms
        self.created = False
        self.statements = DecisionStatements(engine, schema)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self.new_decision_id = DecisionIds()
        database = engine.url.database if self.dialect == "sqlite" else None
        self.claims = Claims(
            self.dialect, f"{database}-inflight" if database and database != ":memory:" else None
        )
        self.group_sync = engine.get_execution_options().get(DURABILITY_OPTION)  # SQLite GROUP durability

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def create(self) -> None:
        """Create the schema and tables if missing (safe to run from several workers at once).

        Raises:
            LedgerSchemaError: The tables exist but lack columns of the current schema (a
                database written by an earlier version, e.g. with float amounts).
        """
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    if self.schema and self.dialect == "postgresql":
                        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    METADATA.create_all(conn)
                    self._check_columns(conn)
                self.created = True
                return
            except (IntegrityError, ProgrammingError):  # another worker created them concurrently
                if attempt == 2:
                    raise

    def _check_columns(self, conn: Any) -> None:
        found = inspect(conn)
        for table in METADATA.sorted_tables:
            have = {c["name"] for c in found.get_columns(table.name, schema=self.schema)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise LedgerSchemaError(
                    f"ledger table {table.name} predates this version (missing {', '.join(missing)}); "
                    "move the old database aside (or use a new PostgreSQL schema): tables are not migrated"
                )

    def ensure(self) -> None:
        """Create the tables on first use if ``create`` has not succeeded yet (database came up late)."""
        if not self.created:
            self.create()

    def drop(self) -> None:
        """Drop the tables (and the schema, if one was given). For tests and teardown."""
        with self.engine.begin() as conn:
            if self.schema and self.dialect == "postgresql":
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            else:
                METADATA.drop_all(conn)

    def ping(self) -> None:
        """Run a trivial query; raises the driver's error when the database is unreachable."""
        self.ensure()
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            conn.execute(select(func.count()).select_from(BUYER_LOCKS).where(BUYER_LOCKS.c.buyer_id == -1))
        if self.group_sync is not None:  # a failed fsync of the log: not ready until restarted
            self.group_sync.check()

    def checkpoint(self) -> None:
        """Copy the SQLite write-ahead log into the database and restart it. No-op on PostgreSQL.

        ``PASSIVE`` copies what it can without blocking anyone; ``RESTART`` then briefly holds
        writers off so the next one starts the log from the beginning (under steady load a
        PASSIVE-only log never restarts and keeps growing, and every page lookup slows with
        it). With ``busy_timeout=0`` the RESTART gives up at once when a writer is active
        and is tried again next time. Runs off the request path, so its fsync never lands
        on a checkout.
        """
        if self.dialect != "sqlite":
            return
        pooled = self.engine.raw_connection()
        try:
            dbapi = pooled.driver_connection
            dbapi.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            dbapi.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            pooled.close()

    def start_checkpoints(self, interval_s: float = 1.0) -> None:
        """Checkpoint every ``interval_s`` seconds in a daemon thread (SQLite only)."""
        if self.dialect != "sqlite" or self._checkpointer is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.checkpoint()
                except Exception:  # noqa: BLE001 - a failed checkpoint is retried next time
                    log.debug("checkpoint failed", exc_info=True)

        self._checkpointer = threading.Thread(target=loop, name="ledger-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        """Stop background checkpoints and close pooled connections."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        self.claims.close()
        self.engine.dispose()

    @contextmanager
    def _synced(self) -> Iterator[None]:
        """Around a transaction whose result is answered: under SQLite ``GROUP`` durability, once
        it has committed (or was refused: a refusal reads the ledger too), wait until every commit
        so far is on disk. Inside the in-flight claim, so a retry cannot be answered from a
        commit that is not on disk yet."""
        try:
            yield
        except Refusal:
            if self.group_sync is not None:
                self.group_sync.sync()
            raise
        if self.group_sync is not None:
            self.group_sync.sync()

    @contextmanager
    def locked(self, buyer_id: int, key_id: str = "", request_id: str = "") -> Iterator[DecisionTransaction]:
        """The decision transaction, holding the buyer's lock; commits on exit, rolls back on error.

        Args:
            buyer_id: The buyer to lock.
            key_id: The calling key's id.
            request_id: The decision's idempotency key.

        Raises:
            Refusal: 409 ``idempotency_request_in_flight`` when a request with the same
                ``(key_id, request_id)`` is being decided right now.
        """
        self.ensure()
        with self.claims.around(key_id, request_id, "request_id"), self._synced():
            pooled = self.engine.raw_connection()
            try:
                dbapi = pooled.driver_connection
                tx = DecisionTransaction(dbapi, buyer_id, self.statements)
                if self.dialect == "sqlite":
                    begin_immediate(dbapi, self.busy_timeout_ms)
                try:
                    if self.dialect == "postgresql":
                        self.claims.inside(
                            lambda n: tx.run("claim", {"claim": n}).fetchone()[0],
                            key_id,
                            request_id,
                            "request_id",
                        )
                        tx.run("lock_row", {"buyer_id": buyer_id})
                        tx.run("lock", {"b": buyer_id})
                    yield tx
                except BaseException:
                    dbapi.rollback() if self.dialect == "postgresql" else dbapi.execute("ROLLBACK")
                    raise
                dbapi.commit() if self.dialect == "postgresql" else dbapi.execute("COMMIT")
            finally:
                pooled.close()

    @contextmanager
    def claimed(
        self, key_id: str, name: str, what: str, namespace: str, buyer_id: int | None = None
    ) -> Iterator[Any]:
        """A SQLAlchemy transaction holding the in-flight claim on an id and, given ``buyer_id``, the
        buyer's lock: how outcomes and the review log write (decisions use ``locked``). It commits on
        exit and, under SQLite group durability, returns only once the commit is on disk.

        Args:
            key_id: The calling key's id (ids are scoped to it).
            name: The id being processed (an ``outcome_id``, a review's ``request_id``...).
            what: Its field name, for the 409's message.
            namespace: Keeps PostgreSQL's advisory lock on this kind of id apart from the others
                (``Claims.inside`` locks ``(key_id, f"{namespace}:{name}")``); SQLite claims ``name``.
            buyer_id: The buyer to lock (PostgreSQL: its ``buyer_locks`` row ``FOR UPDATE``; SQLite's
                ``BEGIN IMMEDIATE`` serialises every writer), or None.

        Raises:
            Refusal: 409 ``idempotency_request_in_flight`` when the id is being processed right now.
        """
        self.ensure()
        with (
            self.claims.around(key_id, name, what),
            self._synced(),
            self.engine.begin() as conn,  # SQLite: BEGIN IMMEDIATE (engine event)
        ):
            if self.dialect == "postgresql":
                self.claims.inside(
                    lambda n: conn.execute(select(func.pg_try_advisory_xact_lock(n))).scalar(),
                    key_id,
                    f"{namespace}:{name}",
                    what,
                )
                if buyer_id is not None:
                    conn.execute(pg_insert(BUYER_LOCKS).values(buyer_id=buyer_id).on_conflict_do_nothing())
                    conn.execute(
                        select(BUYER_LOCKS.c.buyer_id)
                        .where(BUYER_LOCKS.c.buyer_id == buyer_id)
                        .with_for_update()
                    )
            yield conn

    def find_outputs(self, key_id: str, request_id: str) -> tuple[dict | None, str | None]:
        """The stored response and fingerprint of a decision by key and request id (outside any lock).

        Under SQLite ``GROUP`` durability a found decision is on disk when this returns (it may
        have been committed by another worker a moment ago): it is about to be answered.
        """
        self.ensure()
        d = DECISIONS.c
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            row = conn.execute(
                select(d.outputs, d.fingerprint).where(d.key_id == key_id, d.request_id == request_id)
            ).first()
        if row is None:
            return None, None
        if self.group_sync is not None:
            self.group_sync.sync()
        return row.outputs, row.fingerprint

    def record_outcome(
        self, outcome: Outcome, key_id: str, fingerprint: str, now: datetime | None = None
    ) -> dict:
        """Check an outcome against the ledger, store it and release what it closes.

        Under the buyer's lock: the order or refund must have been decided for this buyer;
        the position then moves as ``serving.ledger.positions.apply_outcome`` says (what is released,
        what is refused with 409).

        Args:
            outcome: The validated outcome (amount in minor units).
            key_id: The calling key's id (scopes ``outcome_id``).
            fingerprint: The canonical request's fingerprint.
            now: When it is recorded (naive UTC; default: now).

        Returns:
            ``{"outcome_id", "kind", "released_minor", "replayed"}``; a repeated
            ``outcome_id`` with the same request returns the stored result with ``replayed``
            true and changes nothing.

        Raises:
            Refusal: 404 unknown order or refund, 409 another buyer's order, a payment beyond
                the balance, a closed order or an id in flight, 422 an id reused with another request.
        """
        service, _ = OUTCOME_KINDS[outcome.kind]
        result = {"outcome_id": outcome.outcome_id, "kind": outcome.kind, "replayed": False}
        o, r = OUTCOMES.c, RESERVATIONS.c
        now = now or utcnow()
        with self.claimed(key_id, outcome.outcome_id, "outcome_id", "outcome", outcome.buyer_id) as conn:
            stored = conn.execute(
                select(o.kind, o.released_minor, o.fingerprint).where(
                    o.key_id == key_id, o.outcome_id == outcome.outcome_id
                )
            ).first()
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise key_reused("outcome_id")
                return result | {
                    "kind": stored.kind,
                    "released_minor": stored.released_minor,
                    "replayed": True,
                }
            at_risk = self._decided(conn, outcome, service)
            this = and_(r.buyer_id == outcome.buyer_id, r.service == service, r.ref_id == outcome.ref_id)
            row = conn.execute(
                select(r.amount_minor, r.released_minor, r.paid_minor, r.state, r.created_at).where(this)
            ).first()
            before = None if row is None else _position(row)
            after, amount, release = apply_outcome(before, outcome.kind, outcome.amount, at_risk, now)
            values = {
                "released_minor": after.released,
                "paid_minor": after.paid,
                "state": after.state,
                "outcome": outcome.kind,
                "released_at": now if after.state in RELEASED_STATES else None,
            }
            if row is None:  # an outcome on an order or refund that was never held
                conn.execute(
                    RESERVATIONS.insert().values(
                        buyer_id=outcome.buyer_id,
                        service=service,
                        ref_id=outcome.ref_id,
                        decision_id="",
                        amount_minor=after.amount,
                        created_at=now,
                        **values,
                    )
                )
            else:
                conn.execute(RESERVATIONS.update().where(this).values(**values))
            conn.execute(
                OUTCOMES.insert().values(
                    key_id=key_id,
                    outcome_id=outcome.outcome_id,
                    fingerprint=fingerprint,
                    kind=outcome.kind,
                    buyer_id=outcome.buyer_id,
                    service=service,
                    ref_id=outcome.ref_id,
                    amount_minor=amount,
                    occurred_at=outcome.occurred_at or now,
                    recorded_at=now,
                    released_minor=release,
                    payload=dict(outcome.payload),
                )
            )
        return result | {"released_minor": release}

    @staticmethod
    def _decided(conn: Any, outcome: Outcome, service: str) -> int:
        """The amount at risk of this buyer's latest decision on the order or refund (404/409 if none)."""
        d = DECISIONS.c
        rows = conn.execute(
            select(d.buyer_id, d.requested_minor)
            .where(d.service == service, d.ref_id == outcome.ref_id)
            .order_by(d.created_at)
        ).all()
        latest = {int(row.buyer_id): int(row.requested_minor) for row in rows}  # the last one wins
        return decided_at_risk(service, outcome.buyer_id, latest)


class DecisionTransaction:
    """Reads and writes inside ``Ledger.locked``, on the raw DBAPI connection.

    Args:
        dbapi: The driver connection (sqlite3 or psycopg), inside the open transaction.
        buyer_id: The locked buyer.
        statements: The compiled statements.
    """

    def __init__(self, dbapi: Any, buyer_id: int, statements: DecisionStatements) -> None:
        self.dbapi = dbapi
        self.buyer_id = buyer_id
        self.statements = statements

    def run(self, name: str, values: Mapping[str, Any]):
        """Execute the compiled statement ``name``; returns the driver cursor."""
        sql = self.statements.sql[name]
        cursor = self.dbapi.cursor()
        cursor.execute(sql.text, sql.params(values))
        return cursor

    def read(
        self,
        request_id: str,
        window_days: int,
        service: str | None = None,
        ref_id: int | None = None,
        key_id: str = "",
        now: datetime | None = None,
    ) -> tuple[dict | None, str | None, Usage]:
        """The stored response and fingerprint for ``request_id`` and the buyer's live usage.

        Args:
            request_id: The caller's idempotency key.
            window_days: Fast-refund quota window, in days.
            service: With ``ref_id``, the decision being made: its own position is read apart
                (a repeat approval replaces its hold, it does not add to it).
            ref_id: The order or refund id being decided.
            key_id: The calling key's id (scopes ``request_id``).
            now: The decision's time (naive UTC; default: now), for the quota window.

        Returns:
            ``(stored outputs or None, stored fingerprint or None, usage)``: usage is the
            outstanding presale balances of the buyer's other orders, the count and amount of
            other fast refunds granted in the window (minor units) and the position decided.
        """
        now = now or utcnow()
        since = self.statements.stamp(now - timedelta(days=window_days))
        values = {
            "month": month_of(now),
            "key_id": key_id,
            "request_id": request_id,
            "b": self.buyer_id,
            "since": since,
            "s": service or "",
            "ref": -1 if ref_id is None else ref_id,
        }
        row = self.run("read", values).fetchone()
        stored = row[0]
        if isinstance(stored, str | bytes):
            stored = json.loads(stored)
        own = self.run("own", values).fetchone() if ref_id is not None else None
        usage = Usage(
            exposure=int(row[2]),
            refund_count=int(row[3]),
            refund_amount=int(row[4]),
            position=None if own is None else _position(own),
            explored_loss=int(row[5] or 0),
        )
        return stored, row[1], usage

    def record(self, row: DecisionRow, reserve: int) -> None:
        """Insert the decision row and, when ``reserve`` > 0, hold it in the ledger.

        Args:
            row: The decision's row.
            reserve: Amount to hold (minor units); the hold of an earlier approval of the same
                order or refund is replaced rather than added to (``serving.ledger.positions.approve``).
        """
        created = self.statements.stamp(row.created_at)
        values = vars(row) | {
            "created_at": created,
            "inputs": self.statements.document(row.inputs),
            "outputs": self.statements.document(row.outputs),
        }
        try:
            self.run("decision", values)
        except self.statements.integrity_error as exc:
            raise DuplicateRequest(row.request_id) from exc
        if row.explored_minor > 0:
            spent = {
                "service": row.service,
                "month": month_of(row.created_at),
                "amount": row.explored_minor,
            }
            self.run("spend", spent)
        if reserve > 0:
            self.run(
                "reserve",
                {
                    "buyer_id": self.buyer_id,
                    "service": row.service,
                    "ref_id": row.ref_id,
                    "decision_id": row.decision_id,
                    "amount": reserve,
                    "created_at": created,
                },
            )


def _position(row: Any) -> Position:
    """A ``reservations`` row (amount, released, paid, state, created_at) as a position."""
    amount, released, paid, state, created = tuple(row)
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    return Position(
        amount=int(amount),
        released=int(released),
        paid=int(paid),
        state=state,
        opened_at=created,
    )


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) of an instant, ``YYYY-MM``: the exploration budget's period."""
    return f"{moment.year:04d}-{moment.month:02d}"
