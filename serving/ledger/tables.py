"""The ledger's tables (SQLAlchemy Core), declared once for SQLite and PostgreSQL.

    decisions      one row per decision: inputs, outputs, model and policy versions, latency,
                   the propensity of the decision made and the expected loss an exploration
                   spent; unique per (calling key, request_id), with the request's fingerprint.
    reservations   one row per buyer, service and order or refund that was approved or had an
                   outcome: its position (``serving.ledger.positions``): what the latest approval
                   holds (a ship-before-balance balance still unpaid, or a fast refund's
                   amount), what outcomes released of it, the balance paid so far and the
                   state (open, paid, canceled, defaulted, returned, ...). A fast refund
                   counts against the quota window from its first approval (``created_at``).
    outcomes       what happened afterwards, posted by the platform (idempotent on
                   (calling key, outcome_id), with the request's fingerprint).
    exploration_spend  per service and calendar month: the expected loss explored approvals
                   added (``serving.decide.explore``), against the policy's monthly budget.
    buyer_locks    one row per buyer: the row a PostgreSQL decision locks (``FOR UPDATE``).

Money columns (``*_minor``) are integers in minor units of the policy currency (cents for
CNY); timestamps are naive UTC. ``key_id`` identifies the calling API key (never the key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

# Integer primary keys are rowids on SQLite, BIGSERIAL on PostgreSQL.
_ID = BigInteger().with_variant(Integer, "sqlite")
_JSON = JSON().with_variant(JSONB(), "postgresql")

METADATA = MetaData()
DECISIONS = Table(
    "decisions",
    METADATA,
    Column("decision_id", String(36), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("service", String(40), nullable=False),
    Column("buyer_id", BigInteger, nullable=False, index=True),
    Column("ref_id", BigInteger, nullable=False),
    Column("decision", String(8), nullable=False),
    Column("star", SmallInteger),
    Column("score", SmallInteger),
    Column("p_bad", Float),
    Column("requested_minor", BigInteger, nullable=False),
    Column("reserved_minor", BigInteger, nullable=False),
    Column("model_version", String(200)),
    Column("policy_version", String(100), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("propensity", Float, nullable=False, server_default=text("1")),
    Column("explored_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("inputs", _JSON, nullable=False),
    Column("outputs", _JSON, nullable=False),
    UniqueConstraint("key_id", "request_id", name="ux_decisions_request"),
    Index("ix_decisions_ref", "service", "ref_id"),
)


@dataclass(frozen=True)
class DecisionRow:
    """One row of ``decisions``, as a decision transaction records it (``DecisionTransaction.record``).

    Money in minor units, ``created_at`` naive UTC, ``inputs`` and ``outputs`` JSON-ready values or
    their JSON text (None where the backtest's ledger keeps no answer).
    """

    decision_id: str | None
    key_id: str
    request_id: str
    fingerprint: str
    created_at: datetime
    service: str
    buyer_id: int
    ref_id: int
    decision: str
    star: int | None
    score: int | None
    p_bad: float | None
    requested_minor: int
    reserved_minor: int
    model_version: str | None
    policy_version: str | None
    latency_ms: float
    propensity: float
    explored_minor: int
    inputs: Any
    outputs: Any


RESERVATIONS = Table(
    "reservations",
    METADATA,
    Column("reservation_id", _ID, primary_key=True, autoincrement=True),
    Column("buyer_id", BigInteger, nullable=False),
    Column("service", String(40), nullable=False),
    Column("ref_id", BigInteger, nullable=False),
    Column("decision_id", String(36), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("released_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("paid_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("state", String(20), nullable=False, server_default=text("'open'")),
    Column("created_at", DateTime, nullable=False),
    Column("released_at", DateTime),
    Column("outcome", String(40)),
    Index("ix_reservations_buyer", "buyer_id", "service", "created_at"),
    UniqueConstraint("buyer_id", "service", "ref_id", name="ux_reservations_ref"),
)
OUTCOMES = Table(
    "outcomes",
    METADATA,
    Column("key_id", String(64), primary_key=True),
    Column("outcome_id", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("buyer_id", BigInteger, nullable=False, index=True),
    Column("service", String(40), nullable=False),
    Column("ref_id", BigInteger, nullable=False),
    Column("amount_minor", BigInteger),
    Column("occurred_at", DateTime, nullable=False),
    Column("recorded_at", DateTime, nullable=False, index=True),
    Column("released_minor", BigInteger, nullable=False),
    Column("payload", _JSON, nullable=False),
    Index("ix_outcomes_ref", "buyer_id", "service", "ref_id"),
)
EXPLORATION_SPEND = Table(
    "exploration_spend",
    METADATA,
    Column("service", String(40), primary_key=True),
    Column("month", String(7), primary_key=True),  # YYYY-MM, UTC
    Column("spent_minor", BigInteger, nullable=False),
)
BUYER_LOCKS = Table(
    "buyer_locks",
    METADATA,
    Column("buyer_id", BigInteger, primary_key=True),
)


def utcnow() -> datetime:
    """Now in UTC, naive (how the ledger stores every timestamp)."""
    return datetime.now(UTC).replace(tzinfo=None)


# Review screening (``serving.reviews``): its own log, apart from the decisions and their ledger.
REVIEW_ASSESSMENTS = Table(
    "review_assessments",
    METADATA,
    Column("assessment_id", String(36), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("buyer_id", BigInteger, nullable=False, index=True),
    Column("review_id", BigInteger, nullable=False, index=True),
    Column("rating", SmallInteger, nullable=False),
    Column("p_removed", Float),
    Column("action", String(24), nullable=False),
    Column("model_version", String(200)),
    Column("policy_version", String(100), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("inputs", _JSON, nullable=False),
    Column("outputs", _JSON, nullable=False),
    UniqueConstraint("key_id", "request_id", name="ux_review_assessments_request"),
)
REVIEW_OUTCOMES = Table(
    "review_outcomes",
    METADATA,
    Column("key_id", String(64), primary_key=True),
    Column("outcome_id", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("buyer_id", BigInteger, nullable=False, index=True),
    Column("review_id", BigInteger, nullable=False, index=True),
    Column("occurred_at", DateTime, nullable=False),
    Column("recorded_at", DateTime, nullable=False, index=True),
    Column("payload", _JSON, nullable=False),
)
REVIEW_OUTCOME_KINDS = ("removed_as_malicious", "review_upheld")
"""What moderation found about an assessed review: removed as malicious, or kept (upheld)."""
