"""Compact specs from which the signal registry is generated (table x measure x window).

Each :func:`_family` call is one line of the catalog's design: a source (rows of one
table, a filter, a measure), the aggregations and windows it is read with, its risk
direction, and a noun phrase plus reason text from which every generated signal's
name, description and buyer-facing reason are made. Enum values (categories,
reasons, kinds, ...) come from :mod:`features.contract`.

Name pattern: ``<stem>_<aggregation>[_<window>]``, window ``7d``..``365d`` or ``all``.

Reasons: every family speaks for one entry of the fixed reason catalogue (:data:`CATALOGUE`,
placed by :data:`REASON_FAMILIES`), except the families that measure the volume of activity,
which are never a reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from features import contract as c
from features.signal_types import WINDOW_WORDS, Cond, Signal, Source

# fmt: off
CATALOGUE: dict[str, str] = {
    "account_history": "Short or unverified account history",
    "account_changes": "Recent changes to the account (devices, addresses, phone number, password)",
    "vip": "No VIP membership, or a membership lost",
    "shared_devices": "Devices shared with other accounts",
    "shopping_pattern": "Unusual shopping pattern (timing, order sizes, payment methods)",
    "orders_canceled_unpaid": "Orders canceled or left unpaid",
    "presale_late": "Presale balances paid late or left unpaid",
    "presale_record": "Little record of presale balances paid on time",
    "refund_frequency": "Many refunds for what was bought",
    "returns_not_sent": "Refunded goods not sent back, or sent back slowly",
    "refund_evidence": "Refund claims with little evidence, or rejected",
    "refund_abuse": "Refunds found abusive",
    "reviews_low": "Mostly low reviews",
    "reviews_malicious": "Reviews reported or removed as malicious",
    "disputes": "Disputes opened with sellers",
    "disputes_lost": "Disputes lost",
    "cs_conduct": "Abusive contacts or complaints to customer service",
    "violations": "Compliance violations",
    "credit_score": "Low or falling external credit score",
    "bills_late": "Pay-later bills paid late",
    "bills_delinquent": "Pay-later bills seriously past due or not paid in full",
}
"""The fixed reason catalogue: code -> the text a buyer reads (at most four per rating)."""

REASON_FAMILIES: dict[str, tuple[str, ...]] = {
    "account_history": ("tenure", "real_name_verified", "phone_verified", "city_tier"),
    "account_changes": ("account_changes", "account_devices", "device_new", "address_add", "phone_change", "password_reset"),
    "vip": ("vip", "vip_joins", "vip_leaves"),
    "shared_devices": ("shared_devices",),
    "shopping_pattern": (
        "logins", "orders", "order_amount", "spend", "high_value_orders", "order_devices", "confirm_delay",
        "share_wallet", "share_bank_card", "share_credit_card", "share_pay_later", "presales", "presale_balance",
        "presale_open_balance",
    ),
    "orders_canceled_unpaid": ("canceled_orders", "cancel_rate", "unpaid_orders"),
    "presale_late": (
        "balances_late", "balance_late_rate", "balances_unpaid_7d", "balance_days_late", "balances_overdue",
        "balance_overdue_amount", "trusted_late",
    ),
    "presale_record": ("balances_on_time", "trusted_presales"),
    "refund_frequency": (
        "refunds", "refund_amount", "refund_spend_share", "refund_rate", "refund_rate_adjusted", "fast_refunds", "refunds_return",
        "refunds_approved", "refunds_withdrawn", *(f"refunds_{r}" for r in c.REFUND_REASONS),
    ),
    "returns_not_sent": ("returns_not_shipped", "fast_returns_not_shipped", "return_ship_days", "returns_pending", "refunds_only"),
    "refund_evidence": (
        "refunds_no_photos", "refund_photos", "refunds_rejected", "refunds_escalated",
        *(f"refund_photos_{r}" for r in c.REFUND_REASONS), *(f"refunds_{r}_rejected" for r in c.REFUND_REASONS),
    ),
    "refund_abuse": ("refunds_abusive",),
    "reviews_low": ("rating", "one_star_share", "reviews_1star", "reviews_2star", "reviews_photos", "review_length", "review_rate"),
    "reviews_malicious": ("reviews_malicious", "reviews_reported", "reported_share"),
    "disputes": ("disputes", "disputes_won", "disputes_split", "disputes_open", "dispute_rate", *(f"disputes_{r}" for r in c.DISPUTE_REASONS)),
    "disputes_lost": ("disputes_lost", "dispute_loss_rate"),
    "cs_conduct": ("cs_contacts", "cs_abusive", "cs_abusive_share", "cs_complaint"),
    "violations": ("violations", "violations_serious", "violations_severe", "violation_severity", *(f"violations_{k}" for k in c.VIOLATION_KINDS)),
    "credit_score": ("credit_score", "credit_readings"),
    "bills_late": ("bills_late", "bill_days_past_due", "bill_late_rate", "bills_on_time"),
    "bills_delinquent": ("bills_30dpd", "bill_paid_ratio", "bills_overdue", "bill_overdue_amount"),
}
# fmt: on
"""Catalogue code -> the signal families (name stems) it speaks for."""


def _reason_code(stem: str) -> str:
    """The catalogue code of a family.

    Raises:
        KeyError: No catalogue entry speaks for ``stem`` (every family that may be a reason is placed).
    """
    for code, stems in REASON_FAMILIES.items():
        if stem in stems:
            return code
    raise KeyError(f"signal family {stem!r} is in no reason family of the catalogue (REASON_FAMILIES)")


MAPPINGS: dict[str, dict[str, float]] = {
    "refund_base_rate": {
        "apparel": 0.140, "sports": 0.101, "electronics": 0.071, "home": 0.065, "luxury": 0.062,
        "beauty": 0.060, "mother_baby": 0.052, "large_appliance": 0.049, "books": 0.031, "food": 0.031,
    },
}  # fmt: skip
"""Declared value tables a ``mapped`` measure reads. ``refund_base_rate``: refund requests per order
in each category, the platform's base rates (measured on the default simulated marketplace, 1.8M
orders): a buyer's refunds over the sum of these over their orders is 1 for a typical buyer of that
category mix, whatever the mix."""
HALF_LIVES = (90, 365)
"""Half-lives (days) of the recency-weighted late-payment signals."""
DIP_POINTS = 50.0
"""A credit-score dip: a reading at least this many points below the buyer's previous one (about the
5th percentile of month-to-month changes)."""

ALL = None
STANDARD = (30, 90, 365, ALL)
LONG = (90, 365, ALL)
YEAR = (365, ALL)

_DESCRIBE = {
    "count": "Number of {what} {window}.",
    "sum": "Total {what} {window}.",
    "mean": "Average {what} {window}.",
    "min": "Lowest {what} {window}.",
    "max": "Highest {what} {window}.",
    "last": "Latest {what} before the date.",
    "change": "Change in {what} {window} (latest minus earliest reading).",
    "days_since_last": "Days since the latest {what} (NaN if none).",
    "days_since_first": "Days since the first {what} (NaN if none).",
    "distinct": "Number of distinct {what} {window}.",
    "ratio": "{What} {window}.",
    "trend": "Rate of {what} in the past {window_days} days relative to the past {baseline} days (1 = steady).",
    "open": "{What} as of the date.",
    "deviation": "Latest {what} minus its mean {window} (the buyer's own baseline).",
    "dips": "Number of {what} readings {window} at least {threshold:g} below the buyer's previous reading.",
    "decayed": "Recency-weighted number of {what} ever (each counts 1 when new and half {half_life} days later).",
}


def _window_name(window: int | None) -> str:
    return "all" if window is None else f"{window}d"


def _family(
    stem: str,
    source: Source,
    aggregations: Iterable[str],
    windows: Iterable[int | None],
    direction: int,
    what: str,
    reason: str,
    group: str,
    per: Source | None = None,
    baseline: int | None = None,
    end: str | None = None,
    activity: bool = False,
    threshold: float | None = None,
) -> list[Signal]:
    """Signals for every (aggregation, window) of one source.

    Args:
        stem: Name stem.
        source: Rows read.
        aggregations: Aggregation kinds.
        windows: Windows (days, ``None`` = all time); aggregations that take no
            window (``last``, ``days_since_*``, ``open``) are generated once, all time.
        direction: Risk direction of every generated signal.
        what: Noun phrase for descriptions ("orders placed").
        reason: Buyer-facing reason; ``{window}`` is replaced by the window in words.
        group: Catalog section.
        per: Denominator of ``ratio``.
        baseline: Baseline window of ``trend``.
        end: End column of ``open``.
        activity: The family measures the volume of activity (``Signal.activity``): its direction
            is -1 whatever ``direction`` says, and it has no reason code.
        threshold: The fall that counts as a dip (``dips``).

    ``decayed`` reads ``windows`` as half-lives in days over all time (``<stem>_decayed_<h>d``).
    """
    out = []
    for aggregation in aggregations:
        timeless = aggregation in ("last", "days_since_last", "days_since_first", "open")
        for window in (ALL,) if timeless else windows:
            name = stem if aggregation == "ratio" else f"{stem}_{aggregation}"
            name += "" if timeless else f"_{_window_name(window)}"
            half_life = window if aggregation == "decayed" else None
            window = ALL if aggregation == "decayed" else window
            words = WINDOW_WORDS.get(window, f"in the past {window} days")
            text = _DESCRIBE[aggregation].format(
                what=what,
                What=what[0].upper() + what[1:],
                window=words,
                window_days=window,
                baseline=baseline,
                threshold=threshold or 0,
                half_life=half_life,
            )
            out.append(
                Signal(
                    name=name,
                    source=source,
                    aggregation=aggregation,
                    window_days=window,
                    risk_direction=-1 if activity else direction,
                    description=text,
                    reason=reason.format(window=words if not timeless else "").strip(),
                    per=per,
                    baseline_days=baseline,
                    end=end,
                    group=group,
                    activity=activity,
                    reason_code="" if activity else _reason_code(stem),
                    threshold=threshold if aggregation == "dips" else None,
                    half_life_days=half_life,
                )
            )
    return out


def _eq(column: str, value: object) -> tuple[Cond, ...]:
    return (Cond(column, "==", value),)


def _in(column: str, *values: str) -> tuple[Cond, ...]:
    return (Cond(column, "in", values),)


def _missed(column: str, ref: str, days: int) -> tuple[Cond, ...]:
    return (Cond(column, "missed", (ref, days)),)


# The spec tables below are data: one family per line, kept unformatted on purpose.
# fmt: off
def _account() -> list[Signal]:
    g, ev = "account", "account_events"
    login = Source(ev, "ts", _eq("event_type", "login"))
    changes = Source(ev, "ts", _in("event_type", "device_new", "address_add", "phone_change", "password_reset"))
    vip = Source(ev, "ts", _in("event_type", "vip_join", "vip_leave"), "event_type == vip_join")
    joins, leaves = Source(ev, "ts", _eq("event_type", "vip_join")), Source(ev, "ts", _eq("event_type", "vip_leave"))
    real_name, phone = Source("buyers", "real_name_verified_at"), Source("buyers", "phone_verified_at")
    out = [
        *_family("tenure", Source("buyers", "registered_at"), ["days_since_first"], [ALL], -1, "account registration", "Short account history", g),
        *_family("city_tier", Source("buyers", "registered_at", measure="city_tier"), ["last"], [ALL], 0, "city tier (1 largest to 5)", "City tier", g),
        *_family("real_name_verified", real_name, ["count"], [ALL], -1, "real-name verifications (0 or 1)", "Real name not verified", g),
        *_family("real_name_verified", real_name, ["days_since_first"], [ALL], -1, "real-name verification", "Real name verified only recently", g),
        *_family("phone_verified", phone, ["count"], [ALL], -1, "phone verifications (0 or 1)", "Phone not verified", g),
        *_family("phone_verified", phone, ["days_since_first"], [ALL], -1, "phone verification", "Phone verified only recently", g),
        *_family("logins", login, ["count"], STANDARD, 0, "logins", "Login activity {window}", g, activity=True),
        *_family("logins", login, ["days_since_last"], [ALL], 0, "login", "Time since the last login", g),
        *_family("logins", login, ["trend"], [30], 0, "logins", "Change in login activity", g, baseline=90),
        *_family("vip", vip, ["last"], [ALL], -1, "VIP status (1 member, 0 left, NaN never)", "Not a VIP member", g),
        *_family("vip_joins", joins, ["count"], [ALL], -1, "VIP memberships started", "No VIP history", g),
        *_family("vip_leaves", leaves, ["count"], YEAR, 1, "VIP memberships lost", "VIP membership lost {window}", g),
        *_family("vip_joins", joins, ["days_since_last"], [ALL], -1, "VIP membership start", "VIP membership only recent", g),
        *_family("account_changes", changes, ["count"], (7, 30, 90), 1, "account changes (new device, address, phone, password)", "Many account changes {window}", g),
        *_family("account_changes", changes, ["trend"], [30], 1, "account changes", "Account changes speeding up", g, baseline=90),
        *_family("account_devices", Source(ev, "ts", (Cond("device_id", "first"),)), ["count"], STANDARD, 1, "devices first seen on the account", "New devices on the account {window}", g),
    ]
    for event, what, reason in (
        ("device_new", "new-device registrations", "New devices registered {window}"),
        ("address_add", "addresses added", "Delivery addresses added {window}"),
        ("phone_change", "phone number changes", "Phone number changed {window}"),
        ("password_reset", "password resets", "Password reset {window}"),
    ):
        source = Source(ev, "ts", _eq("event_type", event))
        out += _family(event, source, ["count"], STANDARD, 1, what, reason, g)
        out += _family(event, source, ["days_since_last"], [ALL], -1, what.rstrip("s"), f"Recent {what}", g)
    return out


def _shopping() -> list[Signal]:
    g = "shopping"
    orders, canceled = Source("orders", "created_at"), Source("orders", "canceled_at")
    spend = Source("orders", "created_at", measure="amount")
    unpaid = Source("orders", "created_at", _missed("paid_at", "created_at", 1), lag_days=1)
    out = [
        *_family("orders", orders, ["count"], (7, 30, 90, 180, 365, ALL), -1, "orders placed", "Little shopping history {window}", g, activity=True),
        *_family("orders", orders, ["days_since_last"], [ALL], 0, "order", "Time since the last order", g),
        *_family("orders", orders, ["days_since_first"], [ALL], -1, "order", "Short shopping history", g),
        *_family("orders", orders, ["trend"], [30], 0, "orders", "Sudden change in orders", g, baseline=90),
        *_family("spend", spend, ["sum"], (30, 90, 180, 365, ALL), -1, "order value", "Low spend {window}", g, activity=True),
        *_family("order_amount", spend, ["mean"], LONG, 0, "order value", "Order size {window}", g),
        *_family("order_amount", spend, ["max"], LONG, 1, "order value", "Unusually large orders {window}", g),
        *_family("spend", spend, ["trend"], [30], 1, "spend", "Spend rising sharply", g, baseline=90),
        *_family("high_value_orders", Source("orders", "created_at", (Cond("amount", ">=", 2000.0),)), ["count"], (30, 90, 365), 1, "orders of 2000 or more", "Several high-value orders {window}", g),
        *_family("categories", Source("orders", "created_at", measure="category"), ["distinct"], LONG, -1, "categories bought", "Narrow shopping pattern {window}", g, activity=True),
        *_family("sellers", Source("orders", "created_at", (Cond("seller_id", "first"),)), ["count"], STANDARD, 0, "sellers bought from for the first time", "Many new sellers {window}", g, activity=True),
        *_family("order_devices", Source("orders", "created_at", (Cond("device_id", "first"),)), ["count"], (30, 90, ALL), 1, "devices first used to order", "Orders from new devices {window}", g),
        *_family("canceled_orders", canceled, ["count"], STANDARD, 1, "orders canceled", "Orders canceled {window}", g),
        *_family("cancel_rate", canceled, ["ratio"], LONG, 1, "share of orders canceled (canceled / placed)", "High share of canceled orders {window}", g, per=orders),
        *_family("confirmed_orders", Source("orders", "confirmed_at"), ["count"], (90, 365), -1, "orders whose receipt the buyer confirmed", "Few confirmed receipts {window}", g, activity=True),
        *_family("unpaid_orders", unpaid, ["count"], (90, 365), 1, "orders not paid within a day", "Orders left unpaid {window}", g),
        *_family("confirm_delay", Source("orders", "confirmed_at", measure="confirmed_at - delivered_at"), ["mean"], [365], 0, "days from delivery to confirmed receipt", "Slow receipt confirmation", g),
    ]
    for category in c.CATEGORIES:
        src = Source("orders", "created_at", _eq("category", category), "amount")
        out += _family(f"orders_{category}", src, ["count"], [365], 0, f"{category} orders", f"{category} orders {{window}}", g, activity=True)
        out += _family(f"spend_{category}", src, ["sum"], [365], 0, f"{category} order value", f"{category} spend {{window}}", g, activity=True)
    for method in c.PAYMENT_METHODS:
        src = Source("orders", "created_at", _eq("payment_method", method))
        out += _family(f"orders_{method}", src, ["count"], [365], 0, f"orders paid by {method}", f"Orders paid by {method} {{window}}", g, activity=True)
        out += _family(f"share_{method}", src, ["ratio"], [365], 0, f"share of orders paid by {method}", f"Share of orders paid by {method}", g, per=orders)
    for channel in c.CHANNELS:
        src = Source("orders", "created_at", _eq("channel", channel))
        out += _family(f"orders_{channel}", src, ["count"], [365], 0, f"orders placed via {channel}", f"Orders via {channel} {{window}}", g, activity=True)
    return out


def _presales() -> list[Signal]:
    g, t = "presales", "presales"
    presales, due = Source(t, "deposit_paid_at"), Source(t, "balance_due_at")
    late_when = _missed("balance_paid_at", "balance_due_at", 0)
    late = Source(t, "balance_due_at", late_when)
    unpaid7 = Source(t, "balance_due_at", _missed("balance_paid_at", "balance_due_at", 7), lag_days=7)
    trusted = (Cond("shipped_before_balance", "==", True),)
    days_late = Source(t, "balance_paid_at", late_when, "balance_paid_at - balance_due_at")
    on_time = Source(t, "balance_paid_at", (Cond("balance_paid_at", "by", ("balance_due_at", 0)),))
    balance = Source(t, "deposit_paid_at", measure="balance_amount")
    return [
        *_family("presales", presales, ["count"], LONG, 0, "presale orders", "Presale orders {window}", g, activity=True),
        *_family("presales", presales, ["days_since_last"], [ALL], 0, "presale order", "Time since the last presale", g),
        *_family("presale_deposits", Source(t, "deposit_paid_at", measure="deposit_amount"), ["sum"], YEAR, 0, "presale deposits paid", "Presale deposits {window}", g, activity=True),
        *_family("presale_balance", balance, ["sum", "max"], YEAR, 1, "presale balance committed", "Large presale balances {window}", g),
        *_family("balances_due", due, ["count"], YEAR, 0, "presale balances falling due", "Presale balances due {window}", g, activity=True),
        *_family("balances_late", late, ["count"], LONG, 1, "presale balances not paid by the due date", "Presale balances paid late {window}", g),
        *_family("balances_late", late, ["days_since_last"], [ALL], -1, "presale balance missed on its due date", "Recent late presale balance", g),
        *_family("balance_late_rate", late, ["ratio"], YEAR, 1, "share of due presale balances paid late", "High share of presale balances paid late {window}", g, per=due),
        *_family("balances_unpaid_7d", unpaid7, ["count"], LONG, 1, "presale balances still unpaid 7 days after the due date", "Presale balances left unpaid {window}", g),
        *_family("balance_days_late", days_late, ["mean", "max"], YEAR, 1, "days a late presale balance was paid late", "Presale balances paid many days late {window}", g),
        *_family("balances_on_time", on_time, ["count"], YEAR, -1, "presale balances paid by the due date", "Few presale balances paid on time {window}", g),
        *_family("balances_overdue", late, ["open"], [ALL], 1, "presale balances overdue and unpaid", "A presale balance is overdue", g, end="balance_paid_at"),
        *_family("balance_overdue_amount", Source(t, "balance_due_at", late_when, "balance_amount"), ["open"], [ALL], 1, "presale balance amount overdue and unpaid", "Overdue presale balance amount", g, end="balance_paid_at"),
        *_family("trusted_presales", Source(t, "deposit_paid_at", trusted), ["count"], YEAR, -1, "presales shipped before the balance (trust purchases)", "No trust-purchase history", g),
        *_family("trusted_late", Source(t, "balance_due_at", trusted + late_when), ["count"], YEAR, 1, "trust purchases whose balance was paid late", "Trust-purchase balances paid late {window}", g),
        *_family("presale_open_balance", balance, ["open"], [ALL], 0, "presale balance amount not yet paid", "Presale balances outstanding", g, end="balance_paid_at"),
        *_family("balances_late", late, ["decayed"], HALF_LIVES, 1, "presale balances not paid by the due date", "Presale balances paid late, recently", g),
        *_family("balances_unpaid_7d", unpaid7, ["decayed"], HALF_LIVES, 1, "presale balances still unpaid 7 days after the due date", "Presale balances left unpaid, recently", g),
    ]


def _refunds() -> list[Signal]:
    g, t = "refunds", "refunds"
    req, amount = Source(t, "requested_at"), Source(t, "requested_at", measure="amount")
    ret_kind, fast = _eq("kind", "return_and_refund"), _eq("fast_refund", True)
    never = ret_kind + _missed("return_shipped_at", "requested_at", 14)
    abusive = Source(t, "abuse_confirmed_at")
    orders, spend = Source("orders", "created_at"), Source("orders", "created_at", measure="amount")
    out = [
        *_family("refunds", req, ["count"], (30, 90, 180, 365, ALL), 1, "refund requests", "Refund requests {window}", g),
        *_family("refunds", req, ["days_since_last"], [ALL], -1, "refund request", "Recent refund request", g),
        *_family("refunds", req, ["trend"], [30], 1, "refund requests", "Refund requests increasing", g, baseline=90),
        *_family("refund_amount", amount, ["sum"], LONG, 1, "amount requested in refunds", "Refund amounts {window}", g),
        *_family("refund_amount", amount, ["max"], [365], 1, "refund request amount", "Large refund request {window}", g),
        *_family("refund_spend_share", amount, ["ratio"], LONG, 1, "refund amount as a share of order value", "High refunds relative to spend {window}", g, per=spend),
        *_family("refund_rate", req, ["ratio"], LONG, 1, "refund requests per order", "Many refunds per order {window}", g, per=orders),
        *_family("fast_refunds", Source(t, "requested_at", fast), ["count"], LONG, 1, "fast refunds received", "Fast refunds {window}", g),
        *_family("returns_not_shipped", Source(t, "requested_at", never, lag_days=14), ["count"], LONG, 1, "returns not shipped within 14 days of the request", "Returns not sent back {window}", g),
        *_family("fast_returns_not_shipped", Source(t, "requested_at", fast + never, lag_days=14), ["count"], YEAR, 1, "fast refunds whose return was not shipped within 14 days", "Fast-refund goods not returned {window}", g),
        *_family("return_ship_days", Source(t, "return_shipped_at", ret_kind, "return_shipped_at - requested_at"), ["mean"], YEAR, 1, "days from request to return shipment", "Slow to ship returns", g),
        *_family("returns_pending", Source(t, "refunded_at", ret_kind), ["open"], [ALL], 1, "refunds paid whose return has not shipped", "Refunded goods not yet returned", g, end="return_shipped_at"),
        *_family("refunds_abusive", abusive, ["count"], YEAR, 1, "refunds found abusive", "Refunds found abusive {window}", g),
        *_family("refunds_abusive", abusive, ["days_since_last"], [ALL], -1, "refund found abusive", "Recent abusive refund", g),
        *_family("refunds_no_photos", Source(t, "requested_at", _eq("evidence_photos", 0)), ["count"], [365], 1, "refund requests without photo evidence", "Refunds requested without evidence {window}", g),
        *_family("refund_photos", Source(t, "requested_at", measure="evidence_photos"), ["mean"], [365], -1, "evidence photos per refund request", "Little evidence with refund requests", g),
        *_family("refunds_return", Source(t, "requested_at", ret_kind), ["count"], [365], 0, "return-and-refund requests", "Returns {window}", g),
        *_family("refunds_only", Source(t, "requested_at", _eq("kind", "refund_only")), ["count"], [365], 1, "refund-only requests (no return)", "Refunds without returning goods {window}", g),
    ]
    direction = {"approved": 0, "rejected": 1, "withdrawn": 0, "escalated": 1}
    for outcome in c.REFUND_OUTCOMES:
        src = Source(t, "requested_at", _eq("outcome", outcome))
        out += _family(f"refunds_{outcome}", src, ["count"], YEAR, direction[outcome], f"refund requests {outcome}", f"Refund requests {outcome} {{window}}", g)
    per_order = Source("orders", "created_at", measure="category ~ refund_base_rate")
    out += _family("refund_rate_adjusted", req, ["ratio"], YEAR, 1, "refund requests over those expected from the categories bought (1 = typical)", "More refunds than usual for what was bought {window}", g, per=per_order)
    for reason in c.REFUND_REASONS:  # the evidence of every past refund: reason x photos x outcome, over all time
        words = reason.replace("_", " ")
        risky = 1 if reason in ("not_received", "not_as_described") else 0
        of_reason = _eq("reason", reason)
        out += _family(f"refunds_{reason}", Source(t, "requested_at", of_reason), ["count"], YEAR, risky, f"refund requests for {words}", f"Refunds for '{words}' {{window}}", g)
        out += _family(f"refund_photos_{reason}", Source(t, "requested_at", of_reason, "evidence_photos"), ["sum"], [ALL], 0, f"evidence photos sent with refund requests for {words}", f"Evidence sent with refunds for '{words}'", g)
        out += _family(f"refunds_{reason}_rejected", Source(t, "requested_at", of_reason + _eq("outcome", "rejected")), ["count"], [ALL], 1, f"refund requests for {words} rejected", f"Refunds for '{words}' rejected", g)
    return out


def _reviews() -> list[Signal]:
    g, t = "reviews", "reviews"
    reviews, rating = Source(t, "created_at"), Source(t, "created_at", measure="rating")
    removed, reported = Source(t, "removed_as_malicious_at"), Source(t, "reported_by_seller_at")
    out = [
        *_family("reviews", reviews, ["count"], STANDARD, 0, "reviews written", "Reviews {window}", g, activity=True),
        *_family("rating", rating, ["mean"], LONG, -1, "review rating", "Low review ratings {window}", g),
        *_family("rating", rating, ["min"], [90], -1, "review rating", "Very low review rating {window}", g),
        *_family("one_star_share", Source(t, "created_at", _eq("rating", 1)), ["ratio"], LONG, 1, "share of reviews with one star", "Mostly one-star reviews {window}", g, per=reviews),
        *_family("reviews_malicious", removed, ["count"], LONG, 1, "reviews removed as malicious", "Reviews removed as malicious {window}", g),
        *_family("reviews_malicious", removed, ["days_since_last"], [ALL], -1, "review removed as malicious", "Recent malicious review", g),
        *_family("reviews_reported", reported, ["count"], LONG, 1, "reviews reported by sellers", "Reviews reported by sellers {window}", g),
        *_family("reported_share", reported, ["ratio"], [365], 1, "share of reviews reported by sellers", "Many reviews reported by sellers", g, per=reviews),
        *_family("reviews_photos", Source(t, "created_at", _eq("has_photos", True)), ["count"], [365], -1, "reviews with photos", "Few reviews with photos {window}", g),
        *_family("review_length", Source(t, "created_at", measure="text_length"), ["mean"], [365], 0, "review text length", "Review length", g),
        *_family("review_rate", reviews, ["ratio"], [365], 0, "reviews per order", "Reviews per order", g, per=Source("orders", "created_at")),
    ]
    for stars in range(1, 6):
        src = Source(t, "created_at", _eq("rating", stars))
        out += _family(f"reviews_{stars}star", src, ["count"], YEAR, 1 if stars <= 2 else 0, f"{stars}-star reviews", f"{stars}-star reviews {{window}}", g, activity=stars > 2)
    return out


def _disputes() -> list[Signal]:
    g, t = "disputes", "disputes"
    opened, lost = Source(t, "opened_at"), Source(t, "opened_at", _eq("ruling", "seller"))
    out = [
        *_family("disputes", opened, ["count"], STANDARD, 1, "disputes opened", "Disputes opened {window}", g),
        *_family("disputes", opened, ["days_since_last"], [ALL], -1, "dispute opened", "Recent dispute", g),
        *_family("disputes_lost", lost, ["count"], LONG, 1, "disputes lost (ruled for the seller)", "Disputes lost {window}", g),
        *_family("disputes_lost", lost, ["days_since_last"], [ALL], -1, "dispute lost", "Recently lost a dispute", g),
        *_family("disputes_won", Source(t, "opened_at", _eq("ruling", "buyer")), ["count"], YEAR, 0, "disputes won (ruled for the buyer)", "Disputes won {window}", g),
        *_family("disputes_split", Source(t, "opened_at", _eq("ruling", "split")), ["count"], [365], 0, "disputes settled split", "Disputes settled split {window}", g),
        *_family("disputes_open", opened, ["open"], [ALL], 1, "disputes open", "Open disputes", g, end="closed_at"),
        *_family("dispute_rate", opened, ["ratio"], [365], 1, "disputes per order", "Many disputes per order", g, per=Source("orders", "created_at")),
        *_family("dispute_loss_rate", lost, ["ratio"], [ALL], 1, "share of closed disputes lost", "Most disputes lost", g, per=Source(t, "closed_at")),
    ]
    for reason in c.DISPUTE_REASONS:
        words = reason.replace("_", " ")
        out += _family(f"disputes_{reason}", Source(t, "opened_at", _eq("reason", reason)), ["count"], [365], 1, f"disputes about {words}", f"Disputes about '{words}' {{window}}", g)
    return out


def _customer_service() -> list[Signal]:
    g, t = "customer service", "cs_contacts"
    contacts, abusive = Source(t, "ts"), Source(t, "ts", _eq("abusive", True))
    out = [
        *_family("cs_contacts", contacts, ["count"], STANDARD, 0, "customer-service contacts", "Customer-service contacts {window}", g, activity=True),
        *_family("cs_contacts", contacts, ["trend"], [30], 1, "customer-service contacts", "Customer-service contacts increasing", g, baseline=90),
        *_family("cs_abusive", abusive, ["count"], STANDARD, 1, "abusive customer-service contacts", "Abusive behaviour towards customer service {window}", g),
        *_family("cs_abusive", abusive, ["days_since_last"], [ALL], -1, "abusive contact", "Recent abusive contact", g),
        *_family("cs_abusive_share", abusive, ["ratio"], YEAR, 1, "share of contacts that were abusive", "Abusive contacts {window}", g, per=contacts),
    ]
    for topic in c.CS_TOPICS:
        out += _family(f"cs_{topic}", Source(t, "ts", _eq("topic", topic)), ["count"], [365], 1 if topic == "complaint" else 0, f"contacts about {topic}", f"Contacts about {topic} {{window}}", g, activity=topic != "complaint")
    return out


def _compliance() -> list[Signal]:
    g, t = "compliance", "violations"
    found = Source(t, "ts")
    serious = Source(t, "ts", (Cond("severity", ">=", 2),))
    severe = Source(t, "ts", (Cond("severity", ">=", c.SEVERE_VIOLATION),))
    out = [
        *_family("violations", found, ["count"], LONG, 1, "compliance violations", "Compliance violations {window}", g),
        *_family("violations", found, ["days_since_last"], [ALL], -1, "violation", "Recent compliance violation", g),
        *_family("violations_serious", serious, ["count"], YEAR, 1, "serious or severe violations", "Serious violations {window}", g),
        *_family("violations_severe", severe, ["count"], YEAR, 1, "severe violations", "Severe violations {window}", g),
        *_family("violations_severe", severe, ["days_since_last"], [ALL], -1, "severe violation", "Recent severe violation", g),
        *_family("violation_severity", Source(t, "ts", measure="severity"), ["max"], YEAR, 1, "violation severity", "Violation severity {window}", g),
    ]
    for kind in c.VIOLATION_KINDS:
        words = kind.replace("_", " ")
        out += _family(f"violations_{kind}", Source(t, "ts", _eq("kind", kind)), ["count"], YEAR, 1, f"{words} findings", f"{words.capitalize()} {{window}}", g)
    return out


def _credit() -> list[Signal]:
    g, bills = "credit", "credit_bills"
    score, readings = Source("credit_scores", "ts", measure="score"), Source("credit_scores", "ts")
    due, due_amount = Source(bills, "due_at"), Source(bills, "due_at", measure="amount_due")
    late = Source(bills, "due_at", _missed("paid_at", "due_at", 0))
    late30 = Source(bills, "due_at", _missed("paid_at", "due_at", 30), lag_days=30)
    dpd = Source(bills, "paid_at", _missed("paid_at", "due_at", 0), "paid_at - due_at")
    on_time = Source(bills, "paid_at", (Cond("paid_at", "by", ("due_at", 0)),))
    return [
        *_family("credit_score", score, ["last"], [ALL], -1, "external credit score", "Low external credit score", g),
        *_family("credit_score", score, ["min"], (90, 180, 365), -1, "external credit score", "Low external credit score {window}", g),
        *_family("credit_score", score, ["max"], [365], -1, "external credit score", "Credit score never high", g),
        *_family("credit_score", score, ["mean"], (90, 365), -1, "external credit score", "Low average credit score {window}", g),
        *_family("credit_score", score, ["change"], (90, 180, 365), -1, "external credit score", "Credit score falling {window}", g),
        *_family("credit_score", score, ["deviation"], (365, ALL), -1, "external credit score", "Credit score below its usual level", g),
        *_family("credit_score", score, ["dips"], (180, 365, ALL), 1, "external credit score", "Credit score dips {window}", g, threshold=DIP_POINTS),
        *_family("credit_readings", readings, ["count"], [365], 0, "credit score readings", "Credit file activity", g, activity=True),
        *_family("credit_readings", readings, ["days_since_last"], [ALL], 0, "credit score reading", "No recent credit reading", g),
        *_family("bills", due, ["count"], LONG, 0, "pay-later bills due", "Pay-later bills {window}", g, activity=True),
        *_family("bill_amount", due_amount, ["sum"], (90, 365), 0, "pay-later amount due", "Pay-later amounts {window}", g, activity=True),
        *_family("bills_late", late, ["count"], LONG, 1, "pay-later bills not paid by the due date", "Pay-later bills paid late {window}", g),
        *_family("bills_late", late, ["days_since_last"], [ALL], -1, "pay-later bill missed", "Recent late pay-later bill", g),
        *_family("bills_late", late, ["decayed"], HALF_LIVES, 1, "pay-later bills not paid by the due date", "Pay-later bills paid late, recently", g),
        *_family("bills_30dpd", late30, ["decayed"], HALF_LIVES, 1, "pay-later bills 30+ days past due", "Pay-later bills 30+ days past due, recently", g),
        *_family("bills_30dpd", late30, ["count"], LONG, 1, "pay-later bills 30+ days past due", "Pay-later bills 30+ days past due {window}", g),
        *_family("bills_30dpd", late30, ["open"], [ALL], 1, "pay-later bills 30+ days past due and still unpaid", "A pay-later bill is 30+ days past due", g, end="paid_at"),
        *_family("bill_days_past_due", dpd, ["mean", "max"], YEAR, 1, "days past due of late-paid bills", "Pay-later bills paid many days late {window}", g),
        *_family("bill_paid_ratio", Source(bills, "paid_at", measure="amount_paid"), ["ratio"], (90, 365), -1, "amount paid over amount due on pay-later bills", "Pay-later bills not paid in full {window}", g, per=due_amount),
        *_family("bill_late_rate", late, ["ratio"], YEAR, 1, "share of due bills paid late", "High share of pay-later bills paid late {window}", g, per=due),
        *_family("bills_on_time", on_time, ["count"], [365], -1, "pay-later bills paid by the due date", "Few pay-later bills paid on time {window}", g),
        *_family("bills_overdue", late, ["open"], [ALL], 1, "pay-later bills overdue and unpaid", "A pay-later bill is overdue", g, end="paid_at"),
        *_family("bill_overdue_amount", Source(bills, "due_at", late.filter, "amount_due"), ["open"], [ALL], 1, "pay-later amount overdue and unpaid", "Overdue pay-later amount", g, end="paid_at"),
    ]


def _devices() -> list[Signal]:
    g, shared = "devices", Source("shared_devices", "ts")
    return [
        *_family("shared_devices", shared, ["count"], (30, 90, 365, ALL), 1, "devices also used by another buyer (counted from when they became shared)", "Devices shared with other accounts {window}", g),
        *_family("shared_devices", shared, ["days_since_last"], [ALL], -1, "device becoming shared", "Recently shared a device with another account", g),
    ]
# fmt: on


def generate() -> tuple[Signal, ...]:
    """Every signal, generated from the specs above, in catalog order."""
    sections = (
        _account,
        _shopping,
        _presales,
        _refunds,
        _reviews,
        _disputes,
        _customer_service,
        _compliance,
        _credit,
        _devices,
    )
    return tuple(signal for section in sections for signal in section())
