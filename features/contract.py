"""The raw-table contract: one declaration per table, matching DESIGN.md.

This module is the single source for table names, column names, logical types,
nullability, keys and allowed values. The simulator writes to it, the validator
checks against it, the signal registry reads column names from it, and
``docs/data-contract.md`` is generated from it.

Logical types:
    ``int``        64-bit integer, never null unless ``nullable``.
    ``float``      64-bit float (amounts are in the platform currency unit).
    ``str``        text; ``allowed`` lists the permitted values when it is an enum.
    ``bool``       boolean.
    ``timestamp``  UTC instant (stored as ``timestamp[us, UTC]`` in parquet).

Time semantics: every fact carries the time it became true. A nullable timestamp
that is null means "had not happened at export time". Columns marked
``scheduled`` hold planned instants (due dates) that may lie after the export time;
every other timestamp must be at or before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

LOGICAL_TYPES = ("int", "float", "str", "bool", "timestamp")

CATEGORIES = (
    "apparel",
    "beauty",
    "electronics",
    "home",
    "food",
    "mother_baby",
    "sports",
    "books",
    "luxury",
    "large_appliance",
)
CHANNELS = ("app", "web", "mini_program", "live_stream")
PAYMENT_METHODS = ("wallet", "bank_card", "credit_card", "pay_later")
ACCOUNT_EVENT_TYPES = (
    "login",
    "device_new",
    "address_add",
    "phone_change",
    "password_reset",
    "vip_join",
    "vip_leave",
)
REFUND_REASONS = (
    "not_as_described",
    "damaged",
    "wrong_item",
    "quality",
    "size_fit",
    "no_longer_needed",
    "not_received",
)
REFUND_KINDS = ("refund_only", "return_and_refund")
REFUND_OUTCOMES = ("approved", "rejected", "withdrawn", "escalated")
DISPUTE_REASONS = ("not_received", "not_as_described", "refund_refused", "counterfeit", "other")
DISPUTE_RULINGS = ("buyer", "seller", "split")
CS_TOPICS = ("delivery", "refund", "payment", "account", "product", "complaint")
VIOLATION_KINDS = (
    "fake_order",
    "account_sharing",
    "scalping",
    "abusive_language",
    "confirmed_fraud",
)
SEVERE_VIOLATION = 3  # severity at or above which a violation counts as a bad outcome


@dataclass(frozen=True)
class Column:
    """One column of a raw table.

    Attributes:
        name: Column name as exported.
        kind: Logical type, one of ``LOGICAL_TYPES``.
        nullable: Whether nulls are allowed.
        allowed: Permitted values for an enum column, or ``None``.
        min_value: Inclusive lower bound for numbers (amounts use 0), or ``None``.
        max_value: Inclusive upper bound for numbers, or ``None``.
        references: ``"table.column"`` this column must resolve to, or ``None``.
        scheduled: For timestamps: a planned instant that may follow the export time.
        description: What the column means.
    """

    name: str
    kind: str
    nullable: bool = False
    allowed: tuple | None = None
    min_value: float | None = None
    max_value: float | None = None
    references: str | None = None
    scheduled: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in LOGICAL_TYPES:
            raise ValueError(f"column {self.name!r}: kind must be one of {LOGICAL_TYPES}, got {self.kind!r}")


@dataclass(frozen=True)
class Table:
    """One raw table.

    Attributes:
        name: Table name; the file is ``<name>.parquet``, ``<name>/`` or ``<name>.csv``.
        grain: What one row is.
        columns: The required columns, in export order.
        primary_key: Columns that identify a row (may be empty).
        event_time: The timestamp at which the row's fact begins; it may not precede
            the buyer's registration.
    """

    name: str
    grain: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    event_time: str | None = None
    description: str = field(default="")

    def column(self, name: str) -> Column:
        """Return the column called ``name``; raise ``KeyError`` naming the table otherwise."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _id(name: str, references: str | None = None, description: str = "") -> Column:
    return Column(name, "int", references=references, description=description)


def _ts(name: str, nullable: bool = False, scheduled: bool = False, description: str = "") -> Column:
    return Column(name, "timestamp", nullable=nullable, scheduled=scheduled, description=description)


def _amount(name: str, nullable: bool = False, description: str = "") -> Column:
    return Column(name, "float", nullable=nullable, min_value=0.0, description=description)


def _enum(name: str, values: tuple[str, ...], nullable: bool = False, description: str = "") -> Column:
    return Column(name, "str", nullable=nullable, allowed=values, description=description)


BUYER = "buyers.buyer_id"
ORDER = "orders.order_id"

TABLES: tuple[Table, ...] = (
    Table(
        "buyers",
        "buyer account",
        (
            _id("buyer_id", description="Buyer account id."),
            _ts("registered_at", description="Account registration."),
            Column("city_tier", "int", min_value=1, max_value=5, description="City tier, 1 (largest) to 5."),
            _ts("real_name_verified_at", nullable=True, description="Real-name verification, null if never."),
            _ts("phone_verified_at", nullable=True, description="Phone verification, null if never."),
        ),
        primary_key=("buyer_id",),
        event_time="registered_at",
    ),
    Table(
        "account_events",
        "account change",
        (
            _id("buyer_id", BUYER),
            _ts("ts", description="When the change happened."),
            _enum("event_type", ACCOUNT_EVENT_TYPES),
            Column("device_id", "int", nullable=True, description="Device used, when known."),
        ),
        event_time="ts",
    ),
    Table(
        "orders",
        "order",
        (
            _id("order_id"),
            _id("buyer_id", BUYER),
            _id("seller_id", description="Seller (merchant) id."),
            _ts("created_at", description="Order placed."),
            _enum("category", CATEGORIES),
            _amount("amount", description="Order value."),
            _enum("channel", CHANNELS),
            Column("device_id", "int", nullable=True, description="Device that placed the order."),
            _enum("payment_method", PAYMENT_METHODS),
            _ts("paid_at", nullable=True, description="Paid in full (for presales: balance paid)."),
            _ts("shipped_at", nullable=True),
            _ts("delivered_at", nullable=True),
            _ts("confirmed_at", nullable=True, description="Buyer confirmed receipt."),
            _ts("canceled_at", nullable=True),
        ),
        primary_key=("order_id",),
        event_time="created_at",
    ),
    Table(
        "presales",
        "presale order",
        (
            _id("order_id", ORDER),
            _id("buyer_id", BUYER),
            _amount("deposit_amount"),
            _ts("deposit_paid_at"),
            _amount("balance_amount"),
            _ts("balance_due_at", scheduled=True, description="Balance due date (may be after export)."),
            _ts("balance_paid_at", nullable=True, description="Null if unpaid at export."),
            Column(
                "shipped_before_balance",
                "bool",
                description="Goods shipped before the balance (trust purchase).",
            ),
        ),
        primary_key=("order_id",),
        event_time="deposit_paid_at",
    ),
    Table(
        "refunds",
        "refund request",
        (
            _id("refund_id"),
            _id("order_id", ORDER),
            _id("buyer_id", BUYER),
            _ts("requested_at"),
            _amount("amount"),
            _enum("reason", REFUND_REASONS),
            _enum("kind", REFUND_KINDS),
            Column("evidence_photos", "int", min_value=0, description="Photos uploaded with the request."),
            Column(
                "fast_refund", "bool", description="Paid before the goods came back (decided at request)."
            ),
            _ts("decided_at", nullable=True),
            _enum("outcome", REFUND_OUTCOMES, nullable=True, description="Null while undecided."),
            _ts("refunded_at", nullable=True),
            _ts("return_shipped_at", nullable=True),
            _ts("return_received_at", nullable=True),
            _ts("abuse_confirmed_at", nullable=True, description="Refund later found abusive."),
        ),
        primary_key=("refund_id",),
        event_time="requested_at",
    ),
    Table(
        "reviews",
        "review",
        (
            _id("review_id"),
            _id("order_id", ORDER),
            _id("buyer_id", BUYER),
            _ts("created_at"),
            Column("rating", "int", min_value=1, max_value=5),
            Column("text_length", "int", min_value=0),
            Column("has_photos", "bool"),
            _ts("reported_by_seller_at", nullable=True),
            _ts("removed_as_malicious_at", nullable=True),
        ),
        primary_key=("review_id",),
        event_time="created_at",
    ),
    Table(
        "disputes",
        "platform dispute",
        (
            _id("dispute_id"),
            _id("order_id", ORDER),
            _id("buyer_id", BUYER),
            _ts("opened_at"),
            _ts("closed_at", nullable=True),
            _enum("reason", DISPUTE_REASONS),
            _enum("ruling", DISPUTE_RULINGS, nullable=True, description="Known from closed_at on."),
        ),
        primary_key=("dispute_id",),
        event_time="opened_at",
    ),
    Table(
        "cs_contacts",
        "customer-service contact",
        (
            _id("contact_id"),
            _id("buyer_id", BUYER),
            _ts("ts"),
            _enum("topic", CS_TOPICS),
            Column("abusive", "bool"),
        ),
        primary_key=("contact_id",),
        event_time="ts",
    ),
    Table(
        "violations",
        "compliance finding",
        (
            _id("violation_id"),
            _id("buyer_id", BUYER),
            _ts("ts"),
            _enum("kind", VIOLATION_KINDS),
            Column("severity", "int", min_value=1, max_value=3, description="1 minor, 2 serious, 3 severe."),
        ),
        primary_key=("violation_id",),
        event_time="ts",
    ),
    Table(
        "credit_scores",
        "external score reading",
        (
            _id("buyer_id", BUYER),
            _ts("ts"),
            Column("score", "int", min_value=350, max_value=950, description="External credit score."),
        ),
        primary_key=("buyer_id", "ts"),
        event_time="ts",
    ),
    Table(
        "credit_bills",
        "consumer-credit bill (pay-later line)",
        (
            _id("bill_id"),
            _id("buyer_id", BUYER),
            _ts("due_at", scheduled=True),
            _amount("amount_due"),
            _ts("paid_at", nullable=True),
            _amount("amount_paid", nullable=True),
        ),
        primary_key=("bill_id",),
        event_time="due_at",
    ),
)

TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)


def table(name: str) -> Table:
    """Return the declaration of table ``name``; raise ``KeyError`` listing the known tables."""
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLE_NAMES)}")


_ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(name: str) -> pa.Schema:
    """The parquet schema a conforming export of table ``name`` uses."""
    t = table(name)
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.kind], nullable=c.nullable) for c in t.columns])
