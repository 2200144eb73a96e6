"""The ledger's database engine: SQLite (WAL, fast write-lock acquisition) or PostgreSQL (psycopg 3).

SQLite durability (``sqlite_synchronous``):

    GROUP   (default) ``PRAGMA synchronous=NORMAL`` plus an fsync of the write-ahead log after
            each ledger commit, outside the write lock, before the caller answers
            (``GroupSync``): an acknowledged decision is as durable as with FULL, and
            decisions committed meanwhile share one fsync.
    FULL    ``PRAGMA synchronous=FULL``: SQLite fsyncs the write-ahead log in every commit,
            inside the database write lock, so commits queue behind each other's fsync (a few
            ms each on an ordinary disk).
    NORMAL  no fsync per commit: a decision survives a process crash (kill -9 too); the last
            ones may be lost on power loss.

What an acknowledged decision guarantees, and the tests that prove it: ``docs/serving.md``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import threading
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


SYNCHRONOUS = ("FULL", "GROUP", "NORMAL")
DEFAULT_SYNCHRONOUS = "GROUP"
DURABILITY_OPTION = "buyer_trust_group_sync"  # engine execution option: the WAL path to fsync after commits


def _blocking(call, *args):
    """Run a blocking call; in a gevent worker on a real thread, so the worker's other greenlets run."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from gevent.hub import get_hub

        return get_hub().threadpool.apply(call, args)
    return call(*args)


def _fsync_path(path: str) -> None:
    """fsync a file; a missing one is fine.

    Used on the write-ahead log. With no log there is nothing to make durable: SQLite deletes it
    only when the last connection closes, after a checkpoint has copied every commit into the
    database file and fsynced it. A new log needs no directory fsync here: SQLite fsyncs the
    log's header before the first commit goes into it (and again when the log restarts) under
    ``synchronous`` FULL and NORMAL, and the directory the first time a connection syncs the
    log (the power-cut test in ``tests/serving/test_crash.py`` models directory entries).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupSync:
    """Group commit for SQLite ``GROUP`` durability: ``sync()`` returns once an fsync of the
    write-ahead log that started after the call has finished.

    One caller at a time runs the fsync (off the event loop in gevent workers); callers that
    arrive meanwhile wait and are covered by the next one, so N concurrent commits cost about
    two fsyncs instead of N. Per process; fsyncs of other processes count too (the kernel
    flushes the file for everyone), but are not relied on.

    A failed fsync fails every caller it was to cover, and every later one: after a write-back
    error Linux may drop the unwritten pages and report the error only once, so a later fsync
    that succeeds proves nothing about the commits before it (the log is a chain; a lost frame
    hides every frame after it). The worker has to be restarted (``/readyz`` fails meanwhile).

    Args:
        wal_path: The database's ``-wal`` file.
    """

    def __init__(self, wal_path: str) -> None:
        self.wal_path = wal_path
        self._cond = threading.Condition()
        self._requested = 0
        self._done = 0
        self._running = False
        self._failure: OSError | None = None

    def check(self) -> None:
        """Raise ``OSError`` if an fsync of the log has failed in this process."""
        if self._failure is not None:
            raise OSError(
                f"fsync of the SQLite write-ahead log {self.wal_path} failed ({self._failure}); "
                "commits since then may not be on disk: restart the worker"
            ) from self._failure

    def sync(self) -> None:
        """Make every commit made before this call durable.

        Raises:
            OSError: The fsync failed, now or earlier in this process (``check``).
        """
        with self._cond:
            self._requested += 1
            mine = self._requested
            while self._done < mine and self._running and self._failure is None:
                self._cond.wait()
            self.check()
            if self._done >= mine:
                return
            self._running = True
            target = self._requested
        synced = False
        try:
            _blocking(_fsync_path, self.wal_path)
            synced = True
        except OSError as exc:
            self._failure = exc
            raise
        finally:
            with self._cond:
                self._running = False
                if synced:
                    self._done = max(self._done, target)
                self._cond.notify_all()


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
            f"synchronous={'NORMAL' if synchronous == 'GROUP' else synchronous}",
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

    if synchronous == "GROUP" and parsed.database and parsed.database != ":memory:":
        engine = engine.execution_options(**{DURABILITY_OPTION: GroupSync(f"{parsed.database}-wal")})
    return engine


def _flushed_commits(dbapi_connection, _record) -> None:
    """PostgreSQL: a commit returns only once its write-ahead log is flushed to disk.

    ``synchronous_commit=off`` (a server, database or role default some set for speed)
    acknowledges a commit before its log is flushed, so a decision could be answered and then
    lost to a crash of the database server; such connections are set to ``local`` (flushed
    here). Stronger settings (``on``, ``remote_write``, ``remote_apply``) are kept.
    """
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        if cursor.fetchone()[0] == "off":
            cursor.execute("SET synchronous_commit TO local")
    dbapi_connection.commit()


def make_engine(
    url: str,
    schema: str | None = None,
    busy_timeout_ms: int = 5000,
    pool_size: int = 10,
    sqlite_synchronous: str = DEFAULT_SYNCHRONOUS,
) -> Engine:
    """Create the ledger engine.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path`` (parent directory created) or
            ``postgresql://...`` (psycopg 3 is used).
        schema: PostgreSQL schema holding the tables (created if missing); None for the default.
        busy_timeout_ms: SQLite busy timeout and pool wait, in milliseconds.
        pool_size: Connections per worker.
        sqlite_synchronous: SQLite durability: ``GROUP`` (default: fsync of the log after the
            commit, outside the lock, shared by concurrent commits), ``FULL`` (fsync per commit
            inside the write lock; as durable for acknowledged decisions) or ``NORMAL`` (a
            commit survives a process crash; the last commits may be lost on power loss).
            See the module docstring.

    Returns:
        The engine (lazy: no connection is opened).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if schema:
            raise ValueError("database_schema: not supported with SQLite")
        if sqlite_synchronous not in SYNCHRONOUS:
            raise ValueError(
                f"sqlite_synchronous: must be one of {', '.join(SYNCHRONOUS)}, got {sqlite_synchronous!r}"
            )
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
        event.listen(engine, "connect", _flushed_commits)
        if schema:
            engine = engine.execution_options(schema_translate_map={None: schema})
        return engine
    raise ValueError(f"database_url: unsupported database {backend!r} (use sqlite or postgresql)")
