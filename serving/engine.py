"""The ledger's database engine: SQLite (WAL, fast write-lock acquisition) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

WAL_AUTOCHECKPOINT_PAGES = 20_000  # safety net; ``Ledger.start_checkpoints`` checkpoints in the background


def begin_immediate(dbapi_connection, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, retried with short randomised sleeps while another writer holds the lock.

    SQLite's own busy handler sleeps in steps of 1, 2, 5, 10... ms; ledger transactions
    last a fraction of a millisecond, so connections run with ``busy_timeout=0`` and every
    writer waits here instead, 25 us - 1 ms at a time, up to ``busy_timeout_ms``.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 50e-6
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1e-3)


def _sqlite_engine(url: str, busy_timeout_ms: int, pool_size: int, synchronous: str) -> Engine:
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
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=0",  # writers wait in begin_immediate; WAL readers never wait
            f"synchronous={synchronous}",
            f"wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}",
            "foreign_keys=ON",
            "mmap_size=268435456",
            "journal_size_limit=67108864",  # truncate the WAL file back to 64 MB when it restarts
        ):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE":
            begin_immediate(connection.connection.dbapi_connection, busy_timeout_ms)
        else:
            connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def make_engine(
    url: str,
    schema: str | None = None,
    busy_timeout_ms: int = 5000,
    pool_size: int = 10,
    sqlite_synchronous: str = "FULL",
) -> Engine:
    """Create the ledger engine.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path`` (parent directory created) or
            ``postgresql://...`` (psycopg 3 is used).
        schema: PostgreSQL schema holding the tables (created if missing); None for the default.
        busy_timeout_ms: SQLite busy timeout and pool wait, in milliseconds.
        pool_size: Connections per worker.
        sqlite_synchronous: SQLite ``PRAGMA synchronous``: ``FULL`` (default: fsync per
            commit) or ``NORMAL`` (a commit survives a process crash; the last commits may
            be lost on power loss).

    Returns:
        The engine (lazy: no connection is opened).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if schema:
            raise ValueError("database_schema: not supported with SQLite")
        if sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"sqlite_synchronous: must be NORMAL or FULL, got {sqlite_synchronous!r}")
        return _sqlite_engine(url, busy_timeout_ms, pool_size, sqlite_synchronous)
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
