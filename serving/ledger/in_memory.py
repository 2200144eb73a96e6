"""The ledger's semantics in memory: what the backtest replays decisions against.

``MemoryLedger`` has the interface ``serving.handle`` uses of ``serving.ledger.store.Ledger``
(``locked`` -> a transaction with ``read`` and ``record``, ``record_outcome``, ``find_outputs``,
``new_decision_id``), and moves positions through the same pure rules
(``serving.ledger.positions``), so a decision replayed offline sees exactly the exposure, quotas and
settled orders the service would have seen. One process, one thread: no locks, nothing durable.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from serving.ledger.idempotency import key_reused
from serving.ledger.positions import Position, Usage, apply_outcome, approve, counts_in_quota, decided_at_risk
from serving.ledger.store import DuplicateRequest, month_of
from serving.ledger.tables import DecisionRow, utcnow
from serving.policy import FAST_REFUND, PRESALE
from serving.schema import OUTCOME_KINDS, Outcome


@dataclass(frozen=True)
class _Stored:
    outputs: Any
    fingerprint: str
    row: DecisionRow


class MemoryLedger:
    """Decisions, positions and outcomes in dictionaries.

    Attributes:
        decisions: ``(key_id, request_id)`` -> the stored decision (outputs, fingerprint, row).
        positions: buyer id -> ``(service, ref_id)`` -> ``Position``.
        outcomes: ``(key_id, outcome_id)`` -> ``(fingerprint, kind, released minor units)``.
    """

    group_sync = None

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], _Stored] = {}
        self.positions: dict[int, dict[tuple[str, int], Position]] = {}
        self.outcomes: dict[tuple[str, str], tuple[str, str, int]] = {}
        # (service, ref) -> buyer -> the amount at risk of the buyer's latest decision on it
        self._latest: dict[tuple[str, int], dict[int, int]] = {}
        self._ids = itertools.count(1)
        self.explored: dict[tuple[str, str], int] = {}  # (service, month) -> expected loss explored

    def fork(self) -> MemoryLedger:
        """An independent ledger in this one's state, to decide on and keep or drop (``copy.deepcopy``'s
        result, in time linear in the entries: the containers are copied, the entries shared, since
        none is changed in place: positions and stored decisions are replaced, never mutated)."""
        other = MemoryLedger()
        other.decisions = dict(self.decisions)
        other.positions = {buyer: dict(book) for buyer, book in self.positions.items()}
        other.outcomes = dict(self.outcomes)
        other._latest = {ref: dict(by_buyer) for ref, by_buyer in self._latest.items()}
        other.explored = dict(self.explored)
        following = next(self._ids)
        self._ids, other._ids = itertools.count(following), itertools.count(following)
        return other

    def new_decision_id(self) -> str:
        """Sequential ids (``m-1``, ``m-2``, ...): a replay is reproducible."""
        return f"m-{next(self._ids)}"

    def ensure(self) -> None:
        """Nothing to create."""

    def ping(self) -> None:
        """Always reachable."""

    @contextmanager
    def locked(self, buyer_id: int, key_id: str = "", request_id: str = "") -> Iterator[MemoryTransaction]:
        """A decision transaction: its writes apply when the block ends without an error."""
        tx = MemoryTransaction(self, buyer_id)
        yield tx
        tx.commit()

    def find_outputs(self, key_id: str, request_id: str) -> tuple[dict | None, str | None]:
        """The stored response and fingerprint of a decision by key and request id."""
        stored = self.decisions.get((key_id, request_id))
        return (None, None) if stored is None else (stored.outputs, stored.fingerprint)

    def record_outcome(
        self, outcome: Outcome, key_id: str, fingerprint: str, now: datetime | None = None
    ) -> dict:
        """As ``serving.ledger.store.Ledger.record_outcome``: check, store and release what it closes."""
        service, _ = OUTCOME_KINDS[outcome.kind]
        result = {"outcome_id": outcome.outcome_id, "kind": outcome.kind, "replayed": False}
        stored = self.outcomes.get((key_id, outcome.outcome_id))
        if stored is not None:
            if stored[0] != fingerprint:
                raise key_reused("outcome_id")
            return result | {"kind": stored[1], "released_minor": stored[2], "replayed": True}
        at_risk = decided_at_risk(service, outcome.buyer_id, self._latest.get((service, outcome.ref_id), {}))
        book = self.positions.setdefault(outcome.buyer_id, {})
        before = book.get((service, outcome.ref_id))
        after, _, release = apply_outcome(before, outcome.kind, outcome.amount, at_risk, now or utcnow())
        book[(service, outcome.ref_id)] = after
        self.outcomes[(key_id, outcome.outcome_id)] = (fingerprint, outcome.kind, release)
        return result | {"released_minor": release}

    def usage(self, buyer_id: int, service: str, ref_id: int, since: datetime) -> Usage:
        """The buyer's live usage as ``DecisionTransaction.read`` computes it."""
        exposure = count = amount = 0
        own = None
        for (kind, ref), position in self.positions.get(buyer_id, {}).items():
            if kind == service and ref == ref_id:
                own = position
            elif kind == PRESALE:
                exposure += position.held
            elif kind == FAST_REFUND and counts_in_quota(position, since):
                count += 1
                amount += position.amount
        return Usage(exposure=exposure, refund_count=count, refund_amount=amount, position=own)

    def exposure(self, buyer_id: int) -> int:
        """Everything the buyer's presale positions hold (minor units)."""
        book = self.positions.get(buyer_id, {})
        return sum(p.held for (kind, _), p in book.items() if kind == PRESALE)


class MemoryTransaction:
    """``read`` and ``record`` of one decision against a ``MemoryLedger``."""

    def __init__(self, ledger: MemoryLedger, buyer_id: int) -> None:
        self.ledger = ledger
        self.buyer_id = buyer_id
        self._pending: list[tuple[DecisionRow, int]] = []

    def read(
        self,
        request_id: str,
        window_days: int,
        service: str | None = None,
        ref_id: int | None = None,
        key_id: str = "",
        now: datetime | None = None,
    ) -> tuple[dict | None, str | None, Usage]:
        """As ``serving.ledger.store.DecisionTransaction.read``."""
        outputs, fingerprint = self.ledger.find_outputs(key_id, request_id)
        now = now or utcnow()
        since = now - timedelta(days=window_days)
        usage = self.ledger.usage(self.buyer_id, service or "", -1 if ref_id is None else ref_id, since)
        usage = replace(usage, explored_loss=self.ledger.explored.get((service or "", month_of(now)), 0))
        return outputs, fingerprint, usage

    def record(self, row: DecisionRow, reserve: int) -> None:
        """As ``serving.ledger.store.DecisionTransaction.record`` (applied when the transaction ends)."""
        if (row.key_id, row.request_id) in self.ledger.decisions:
            raise DuplicateRequest(row.request_id)
        self._pending.append((row, reserve))

    def commit(self) -> None:
        """Apply the recorded decisions."""
        ledger = self.ledger
        for row, reserve in self._pending:
            ledger.decisions[(row.key_id, row.request_id)] = _Stored(row.outputs, row.fingerprint, row)
            ref = (row.service, row.ref_id)
            ledger._latest.setdefault(ref, {})[row.buyer_id] = row.requested_minor
            if row.explored_minor > 0:
                month = (row.service, month_of(row.created_at))
                ledger.explored[month] = ledger.explored.get(month, 0) + row.explored_minor
            if reserve > 0:
                book = ledger.positions.setdefault(self.buyer_id, {})
                book[ref] = approve(book.get(ref), reserve, row.created_at)
        self._pending.clear()
