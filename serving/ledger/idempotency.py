"""Idempotency keys as in the IETF Idempotency-Key draft (and Stripe).

A ``request_id`` (decisions) or ``outcome_id`` (outcomes) is scoped to the calling API key
(``key_id``, an identifier derived from the key's stored digest, never the key). The stored
record keeps a fingerprint of the canonical request. Then:

    same id, same request        -> the stored answer, marked ``"replayed": true``
                                    (header ``Idempotent-Replayed: true``);
    same id, different request   -> 422 ``idempotency_key_reused``, revealing nothing of the first;
    same id, first still running -> 409 ``idempotency_request_in_flight`` (retry later).

"In flight" is detected before the caller waits for any database lock: in PostgreSQL with a
transaction-scoped advisory lock on the id (``pg_try_advisory_xact_lock``, across hosts), in
SQLite with an ``InFlight`` claim (a byte-range lock on a file beside the database, across
worker processes, plus a set for the threads of one process). Both vanish with the
transaction or the process, so a crash never leaves an id stuck.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

KEY_REUSED = "idempotency_key_reused"
IN_FLIGHT = "idempotency_request_in_flight"
_LOCK_SPACE = 2**62  # byte offsets of the claim file


class Refusal(Exception):
    """An answer other than 200 that the client's request causes (the API turns it into problem+json).

    Args:
        status: HTTP status (404, 409, 422).
        code: Stable machine-readable code.
        message: Human-readable text; never reveals another request's decision.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def key_reused(name: str) -> Refusal:
    """The 422 for an id reused with a different request (``name``: ``request_id`` or ``outcome_id``)."""
    return Refusal(
        422, KEY_REUSED, f"this {name} was already used with a different request; use a new {name}"
    )


def in_flight(name: str) -> Refusal:
    """The 409 for an id whose first request is still being processed."""
    return Refusal(409, IN_FLIGHT, f"a request with this {name} is still being processed; retry shortly")


def key_id(stored_digest: str) -> str:
    """The identifier the ledger stores for an API key: derived from its stored digest (32 hex).

    Args:
        stored_digest: The digest under which the service keeps the key (hex).
    """
    return hashlib.sha256(f"buyer-trust-key-id:{stored_digest}".encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal):
        return str(value)
    fields = getattr(type(value), "__dataclass_fields__", None)  # a dataclass instance
    if fields is not None:
        return {name: _plain(getattr(value, name)) for name in fields}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def fingerprint(request: Any, leave_out: tuple[str, ...] = ()) -> str:
    """sha256 hex of the canonical JSON of a parsed request (amounts already in minor units).

    Args:
        request: The validated request (a dataclass or a mapping): service, buyer and order
            or refund fields, or an outcome's fields.
        leave_out: Top-level fields not part of the request's identity (its own id, the raw payload).
    """
    plain = _plain(request)
    plain = {k: v for k, v in plain.items() if k not in leave_out}
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def claim_number(scope: str, name: str) -> int:
    """A signed 64-bit number for ``(scope, name)`` (a PostgreSQL advisory-lock key)."""
    digest = hashlib.sha256(f"{scope}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class InFlight:
    """Claims on ids being processed, visible to every thread and worker process on one host.

    Args:
        path: File whose byte ranges are locked (beside the SQLite database); None for
            threads of this process only (``:memory:`` databases).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def claim(self, scope: str, name: str, what: str) -> Iterator[None]:
        """Hold ``(scope, name)`` for the block; raise the 409 ``Refusal`` if someone holds it.

        Args:
            scope: The calling key's id.
            name: The request or outcome id.
            what: ``request_id`` or ``outcome_id`` (for the message).
        """
        token = f"{scope}\x00{name}"
        with self._lock:
            if token in self._held:
                raise in_flight(what)
            self._held.add(token)
        fd, offset = None, claim_number(scope, name) % _LOCK_SPACE
        try:
            fd = self._file()
            if fd is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                except OSError:  # another worker process holds it
                    fd = None
                    raise in_flight(what) from None
            yield
        finally:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
            with self._lock:
                self._held.discard(token)

    def close(self) -> None:
        """Close the claim file."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class Claims:
    """How one ledger holds an id while its request is processed: the one place of in-flight claims.

    SQLite: an ``InFlight`` claim on ``(scope, name)`` around the transaction, taken before any
    database lock (``around``). PostgreSQL: a transaction-scoped advisory lock, taken first thing
    inside the transaction (``inside``), on ``(scope, name)`` or, for ids of another kind,
    ``(scope, "namespace:name")``.

    Args:
        dialect: ``sqlite`` or ``postgresql``.
        path: The SQLite claim file (beside the database); None for threads of this process only.
    """

    def __init__(self, dialect: str, path: str | None) -> None:
        self.dialect = dialect
        self.inflight = InFlight(path)

    @contextmanager
    def around(self, scope: str, name: str, what: str) -> Iterator[None]:
        """Hold the SQLite claim for the block (PostgreSQL claims ``inside`` the transaction)."""
        if self.dialect == "sqlite":
            with self.inflight.claim(scope, name, what):
                yield
        else:
            yield

    def inside(self, try_lock: Callable[[int], bool], scope: str, name: str, what: str) -> None:
        """PostgreSQL: take the advisory lock on ``claim_number(scope, name)`` with ``try_lock`` (which
        runs ``pg_try_advisory_xact_lock`` in the transaction); raise the 409 ``Refusal`` when another
        transaction holds it. SQLite: nothing (``around`` holds the claim)."""
        if self.dialect == "postgresql" and not try_lock(claim_number(scope, name)):
            raise in_flight(what)

    def close(self) -> None:
        """Close the SQLite claim file."""
        self.inflight.close()
