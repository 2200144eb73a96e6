"""The ledger's tables (SQLAlchemy Core), declared once for SQLite and PostgreSQL.

    decisions      one row per decision: inputs, outputs, model and policy versions, latency;
                   unique per (calling key, request_id), with the request's fingerprint.
    reservations   what an approval holds: a ship-before-balance balance (open until the
                   balance is paid or the order canceled; a partial payment releases its
                   part) or a fast refund (counts against the quota window; open until the
                   goods come back). At most one open reservation per buyer, service and
                   order or refund.
    outcomes       what happened afterwards, posted by the platform (idempotent on
                   (calling key, outcome_id), with the request's fingerprint).
    buyer_locks    one row per buyer: the row a PostgreSQL decision locks (``FOR UPDATE``).

Money columns (``*_minor``) are integers in minor units of the policy currency (cents for
CNY); timestamps are naive UTC. ``key_id`` identifies the calling API key (never the key).
"""

from __future__ import annotations

from datetime import UTC, datetime

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

from serving.policy import FAST_REFUND, PRESALE

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
    Column("inputs", _JSON, nullable=False),
    Column("outputs", _JSON, nullable=False),
    UniqueConstraint("key_id", "request_id", name="ux_decisions_request"),
    Index("ix_decisions_ref", "service", "ref_id"),
)
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
    Column("created_at", DateTime, nullable=False),
    Column("released_at", DateTime),
    Column("outcome", String(40)),
    Index("ix_reservations_buyer", "buyer_id", "service", "created_at"),
    Index(
        "ux_reservations_open",
        "buyer_id",
        "service",
        "ref_id",
        unique=True,
        sqlite_where=text("released_at IS NULL"),
        postgresql_where=text("released_at IS NULL"),
    ),
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
