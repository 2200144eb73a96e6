"""The requests: their types, and their bodies declared once, as data (the validator and the OpenAPI
document both read them).

Every rejection is a ``RequestError`` naming the field by its dotted path
(``order.amount``), which the API turns into a 400.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from features.contract import CATEGORIES, REFUND_KINDS, REFUND_REASONS
from serving.money import MoneyError, to_minor
from serving.policy import FAST_REFUND, PRESALE, SERVICES

# Outcome kind -> (service, state it puts the position in; None: the state does not change).
OUTCOME_KINDS: dict[str, tuple[str, str | None]] = {
    "balance_paid": (PRESALE, None),
    "order_canceled": (PRESALE, "canceled"),
    "balance_defaulted": (PRESALE, "defaulted"),
    "goods_returned": (FAST_REFUND, "returned"),
    "goods_not_returned": (FAST_REFUND, "not_returned"),
    "refund_abuse": (FAST_REFUND, "abuse"),
}
MAX_ID = 2**63 - 1
TEXT = r"^[!-~](?:[ -~]*[!-~])?$"
"""A free string field (an idempotency key): printable ASCII, no leading or trailing space (as the
IETF Idempotency-Key draft's keys are); the parser matches it and the OpenAPI document states it."""
_TEXT = re.compile(TEXT)
INSTANT = (
    r"^(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""A date-time field: RFC 3339 with its offset (``2025-11-11T00:00:00Z``), years 0002-9998 (so that no
offset carries it outside the calendar); the parser matches it and the OpenAPI document states it."""
_INSTANT = re.compile(INSTANT)
AMOUNT = "amount"  # marker: a money amount (number or decimal string); the maximum is max_amount


@dataclass(frozen=True)
class Order:
    """A presale order asking to ship before the balance is paid (amounts in minor units)."""

    order_id: int
    amount: int
    currency: str
    category: str
    deposit_amount: int
    balance_due_at: datetime

    @property
    def balance(self) -> int:
        """The unpaid balance (minor units): what the merchant risks by shipping now."""
        return max(self.amount - self.deposit_amount, 0)


@dataclass(frozen=True)
class Refund:
    """A refund request asking to be paid before the goods come back (amount in minor units)."""

    refund_id: int
    order_id: int
    amount: int
    currency: str
    reason: str
    kind: str
    evidence_photos: int
    order_amount: int
    category: str
    ordered_at: datetime


@dataclass(frozen=True)
class DecisionRequest:
    """One validated call to ``POST /v1/decisions``; exactly one of ``order``/``refund`` is set."""

    service: str
    request_id: str
    buyer_id: int
    order: Order | None = None
    refund: Refund | None = None

    @property
    def ref_id(self) -> int:
        """The order id (presale) or refund id (fast refund) the decision is about."""
        return self.order.order_id if self.order is not None else self.refund.refund_id

    @property
    def at_risk(self) -> int:
        """What an approval holds in the ledger (minor units): the balance, or the refund amount; an
        expected-loss allowance is a share of it."""
        return self.order.balance if self.order is not None else self.refund.amount


@dataclass(frozen=True)
class Outcome:
    """A validated outcome posted to ``POST /v1/outcomes``.

    Attributes:
        outcome_id: Caller's idempotency key.
        kind: One of ``OUTCOME_KINDS``.
        buyer_id: The buyer.
        ref_id: The order id (presale kinds) or refund id (fast-refund kinds).
        amount: Amount concerned in minor units, if given (``balance_paid``: what was paid).
        occurred_at: When it happened (naive UTC), as sent (None: not sent).
        payload: The request body as received (JSON-ready).
    """

    outcome_id: str
    kind: str
    buyer_id: int
    ref_id: int
    amount: int | None
    occurred_at: datetime | None
    payload: Mapping[str, Any]


class RequestError(ValueError):
    """An invalid request body.

    Args:
        field: Dotted path of the offending field (``body`` for the whole body).
        message: What is wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Field:
    """One JSON field.

    Attributes:
        name: Key in the object.
        kind: ``string``, ``integer``, ``number``, ``datetime`` or ``object``.
        description: For the OpenAPI document.
        required: Whether the key must be present.
        enum: Allowed string values.
        minimum: Smallest allowed number.
        exclusive_minimum: Whether ``minimum`` itself is rejected.
        maximum: Largest allowed number, or ``AMOUNT`` for the configured amount limit.
        max_length: Longest allowed string.
        fields: Members of an ``object`` field.
        policy_currency: A string that must be the policy's currency.
    """

    name: str
    kind: str
    description: str
    required: bool = True
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | str | None = None
    max_length: int | None = None
    fields: tuple[Field, ...] = ()
    policy_currency: bool = False


@dataclass(frozen=True)
class Variants:
    """A body whose members depend on one field's value (``service``, an outcome's ``kind``).

    The parser checks it (``check_variant``) and the OpenAPI document states it as one schema per
    value (``variant``: ``oneOf`` with a discriminator, ``serving.http.openapi``), from this one declaration.

    Attributes:
        body: The body's declaration, every member of ``choice`` optional.
        key: The field whose value decides (an enum).
        choice: Per value of ``key``, the member it requires; every other member of ``choice`` is
            then not allowed (not even as null).
    """

    body: Field
    key: str
    choice: Mapping[str, str]

    def variant(self, value: str) -> Field:
        """The body as it must be when ``key`` is ``value``: the key's enum narrowed to ``value``,
        its member required, the other members left out (unknown fields)."""
        needed, others = self.choice[value], set(self.choice.values()) - {self.choice[value]}
        fields = []
        for f in self.body.fields:
            if f.name == self.key:
                f = replace(f, enum=(value,))
            elif f.name == needed:
                f = replace(f, required=True)
            elif f.name in others:
                continue
            fields.append(f)
        return replace(self.body, fields=tuple(fields))


def _id(name: str, description: str, required: bool = True) -> Field:
    return Field(name, "integer", description, required=required, minimum=0, maximum=MAX_ID)


def _amount(name: str, description: str, positive: bool = True, required: bool = True) -> Field:
    return Field(
        name,
        "number",
        f"{description} A JSON number or a decimal string with at most the currency's decimals "
        "(2 for most currencies).",
        required=required,
        minimum=0,
        exclusive_minimum=positive,
        maximum=AMOUNT,
    )


CURRENCY = Field(
    "currency",
    "string",
    "ISO currency code; the policy currency (the default).",
    required=False,
    max_length=3,
    policy_currency=True,
)
"""A request's optional currency member: what an order, a refund and a reviewed order carry."""


BUYER_PATH = _id("buyer_id", "Buyer account id.")  # the path parameter of GET /v1/buyers/{buyer_id}/rating


def parse_path_id(spec: Field, text: str) -> int:
    """A path segment as the integer id ``spec`` declares: ASCII digits, within its bounds.

    Raises:
        RequestError: Naming ``spec.name`` (the API answers 404: no resource has such an id).
    """
    if not (text.isascii() and text.isdigit()):
        raise RequestError(spec.name, "must be a non-negative integer")
    if len(text.lstrip("0")) > len(str(spec.maximum)):  # before int(): thousands of digits cost time
        raise RequestError(spec.name, f"must be <= {_number(spec.maximum)}")
    return _check(spec, int(text), spec.name, max_amount=0.0)


ORDER = Field(
    "order",
    "object",
    "The presale order (required for presale_ship_before_balance).",
    required=False,
    fields=(
        _id("order_id", "Order id."),
        _amount("amount", "Order amount, deposit included, in `currency` units."),
        Field(
            "currency",
            "string",
            "ISO currency code; must be the policy currency.",
            max_length=3,
            policy_currency=True,
        ),
        Field("category", "string", "Product category.", enum=CATEGORIES),
        _amount("deposit_amount", "Deposit paid, at most `amount`.", positive=False),
        Field(
            "balance_due_at", "datetime", "When the balance falls due, ISO 8601 (the head prices the wait)."
        ),
    ),
)
REFUND = Field(
    "refund",
    "object",
    "The refund request (required for fast_refund).",
    required=False,
    fields=(
        _id("refund_id", "Refund id."),
        _id("order_id", "The refunded order's id."),
        _amount("amount", "Amount to refund."),
        CURRENCY,
        Field("reason", "string", "Buyer's stated reason.", enum=REFUND_REASONS),
        Field("kind", "string", "Refund only, or return and refund.", enum=REFUND_KINDS),
        Field("evidence_photos", "integer", "Photos uploaded as evidence.", minimum=0, maximum=100),
        _amount("order_amount", "The refunded order's amount."),
        Field("category", "string", "The refunded order's product category.", enum=CATEGORIES),
        Field("ordered_at", "datetime", "When the refunded order was placed, ISO 8601."),
    ),
)
DECISION_BODY = Field(
    "body",
    "object",
    "A request to approve a trust service for one order or refund.",
    fields=(
        Field(
            "request_id",
            "string",
            "Caller's idempotency key: a repeat returns the stored decision.",
            max_length=128,
        ),
        Field("service", "string", "The trust service asked for.", enum=SERVICES),
        _id("buyer_id", "Buyer account id."),
        ORDER,
        REFUND,
    ),
)
OUTCOME_BODY = Field(
    "body",
    "object",
    "Something that happened after a decision; releases the exposure it closes.",
    fields=(
        Field("outcome_id", "string", "Caller's idempotency key.", max_length=128),
        Field("kind", "string", "What happened.", enum=tuple(OUTCOME_KINDS)),
        _id("buyer_id", "Buyer account id."),
        _id("order_id", "Order id (balance_paid, order_canceled, balance_defaulted).", required=False),
        _id("refund_id", "Refund id (goods_returned, goods_not_returned, refund_abuse).", required=False),
        _amount("amount", "Amount concerned.", positive=False, required=False),
        Field("occurred_at", "datetime", "When it happened, ISO 8601 (default: now).", required=False),
    ),
)
DECISION = Variants(DECISION_BODY, "service", {PRESALE: "order", FAST_REFUND: "refund"})
"""A decision names the order (ship before balance) or the refund (fast refund), never both."""
OUTCOME = Variants(
    OUTCOME_BODY,
    "kind",
    {kind: "order_id" if service == PRESALE else "refund_id" for kind, (service, _) in OUTCOME_KINDS.items()},
)
"""An outcome names the order (presale kinds) or the refund (fast-refund kinds), never both."""


def _not_above(limit: str, leading_zero: bool) -> list[str]:
    """Regexes of the digit strings as long as ``limit`` and not above it (``limit`` itself first);
    without ``leading_zero`` none starts with 0."""
    alternatives = [limit]
    for i, digit in enumerate(limit):
        low = 1 if i == 0 and not leading_zero else 0
        if int(digit) > low:
            rest = len(limit) - i - 1
            alternatives.append(f"{limit[:i]}[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return alternatives


def amount_pattern(max_amount: float, decimals: int, positive: bool) -> str:
    """The decimal strings an amount field accepts, as a regex (ECMA 262 and Python alike): plain
    digits (no sign, exponent, leading zero or space), at most ``decimals`` after the point, at most
    ``max_amount``, and above 0 when ``positive``. The parser matches strings against it and the
    OpenAPI document states it, so the two say the same.

    Raises:
        ValueError: ``max_amount`` is below one currency unit.
    """
    top = int(Decimal(repr(float(max_amount))).scaleb(decimals))  # the limit's whole minor units
    whole, part = divmod(top, 10**decimals)
    if whole < 1:
        raise ValueError(f"max_amount {max_amount:g} is below one currency unit")
    digits = str(whole)
    point = r"\."
    frac = f"(?:{point}[0-9]{{1,{decimals}}})?" if decimals else ""
    below = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []  # fewer digits
    below += _not_above(digits, leading_zero=False)[1:]  # as many digits, below the limit
    options = [f"(?:{'|'.join(below)}){frac}"] if below else []
    limit_frac = str(part).rjust(decimals, "0")
    tails = [
        f"{point}(?:{'|'.join(_not_above(limit_frac[:k], leading_zero=True))})"
        for k in range(1, decimals + 1)
    ]
    options.append(f"{digits}(?:{'|'.join(tails)})?" if tails else digits)
    if decimals:  # 0 and 0.x
        nonzero = "|".join(f"0{{{i}}}[1-9][0-9]{{0,{decimals - 1 - i}}}" for i in range(decimals))
        options.append(f"0{point}(?:{nonzero})" if positive else f"0(?:{point}[0-9]{{1,{decimals}}})?")
    elif not positive:
        options.append("0")
    return f"^(?:{'|'.join(options)})$"


@functools.lru_cache(maxsize=64)
def _amount_text(max_amount: float, decimals: int, positive: bool) -> re.Pattern[str]:
    return re.compile(amount_pattern(max_amount, decimals, positive))


def _money(spec: Field, value: Any, path: str, max_amount: float, decimals: int) -> int:
    """An amount in integer minor units; the message names the field on anything inexact or out of range."""
    if isinstance(value, str) and not _amount_text(max_amount, decimals, spec.exclusive_minimum).fullmatch(
        value
    ):
        raise RequestError(
            path,
            f"must be a decimal string such as 12.30 (digits, at most {decimals} decimals, no sign, exponent "
            f"or leading zero), {'>' if spec.exclusive_minimum else '>='} 0 and <= {max_amount:g}",
        )
    if isinstance(value, float):  # a body decoded without parse_float=Decimal: use the float's shortest text
        if not math.isfinite(value):
            raise RequestError(path, "must be a finite number")
        value = Decimal(repr(value))
    try:
        units = to_minor(value, decimals)
    except MoneyError as exc:
        raise RequestError(path, str(exc)) from None
    if units < 0 or (spec.exclusive_minimum and units == 0):
        raise RequestError(path, f"must be {'>' if spec.exclusive_minimum else '>='} 0")
    if units > int(Decimal(repr(float(max_amount))).scaleb(decimals)):  # the limit's whole minor units
        raise RequestError(path, f"must be <= {max_amount:g}")
    return units


def _number(bound: float) -> str:
    """A bound as a message shows it: integers exactly (``9223372036854775807``), others shortest."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _check(
    spec: Field, value: Any, path: str, max_amount: float, decimals: int = 2, currency: str | None = None
) -> Any:
    kind = spec.kind
    if kind == "object":
        if not isinstance(value, Mapping):
            raise RequestError(path, "must be a JSON object")
        return check_object(spec, value, path, max_amount, decimals, currency)
    if kind == "string":
        if not isinstance(value, str) or not value:
            raise RequestError(path, "must be a non-empty string")
        if value != value.strip():
            raise RequestError(path, "must not be blank or start or end with whitespace")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise RequestError(path, f"must be at most {spec.max_length} characters")
        if spec.enum is not None and value not in spec.enum:
            raise RequestError(path, f"must be one of {', '.join(spec.enum)}")
        if not _TEXT.fullmatch(value):
            raise RequestError(path, "must contain printable ASCII characters only")
        if spec.policy_currency and currency is not None and value != currency:
            raise RequestError(path, f"must be {currency} (the policy currency)")
        return value
    if kind == "datetime":
        if not isinstance(value, str) or not _INSTANT.fullmatch(value):
            raise RequestError(path, "must be an RFC 3339 date-time with its offset, years 0002-9998")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:  # a day the month does not have
            raise RequestError(
                path, "must be an RFC 3339 date-time with its offset, years 0002-9998"
            ) from None
        return moment.astimezone(UTC).replace(tzinfo=None)
    if spec.maximum == AMOUNT:
        return _money(spec, value, path, max_amount, decimals)
    if (
        kind == "integer"
        and isinstance(value, Decimal)
        and value.is_finite()
        and value == value.to_integral_value()
    ):
        value = int(value) if value.adjusted() < 20 else spec.maximum + 1  # JSON's 7.0 is the integer 7
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(path, f"must be a{'n integer' if kind == 'integer' else ' number'}")
    if kind == "integer" and not isinstance(value, int):
        raise RequestError(path, "must be an integer")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(path, "must be a finite number")
    maximum = max_amount if spec.maximum == AMOUNT else spec.maximum
    if spec.minimum is not None and (
        value < spec.minimum or (spec.exclusive_minimum and value == spec.minimum)
    ):
        raise RequestError(path, f"must be {'>' if spec.exclusive_minimum else '>='} {_number(spec.minimum)}")
    if maximum is not None and value > maximum:
        raise RequestError(path, f"must be <= {_number(maximum)}")
    return value if kind == "integer" else float(value)


def check_object(
    spec: Field,
    value: Mapping[str, Any],
    path: str,
    max_amount: float,
    decimals: int = 2,
    currency: str | None = None,
) -> dict[str, Any]:
    """Check ``value`` against an object spec: unknown keys, missing keys, types, ranges.

    Args:
        spec: The object's declaration.
        value: The decoded object.
        path: Its dotted path (``body`` for the whole body).
        max_amount: Largest accepted amount, in currency units.
        decimals: The currency's decimals: amounts with more are rejected.
        currency: The policy currency, which every ``policy_currency`` field must be (None: unchecked).

    Returns:
        The checked values (amounts as integer minor units, other numbers as float,
        datetimes as naive UTC), absent optional keys omitted.
    """
    known = {f.name: f for f in spec.fields}
    prefix = "" if path == "body" else f"{path}."
    for key in value:
        if key not in known:
            raise RequestError(f"{prefix}{key}", "unknown field")
    out = {}
    for f in spec.fields:
        if f.name not in value or value[f.name] is None:
            if f.required:
                raise RequestError(f"{prefix}{f.name}", "required field missing")
            continue
        out[f.name] = _check(f, value[f.name], f"{prefix}{f.name}", max_amount, decimals, currency)
    return out


def check_variant(
    variants: Variants, body: Any, max_amount: float, decimals: int = 2, currency: str | None = None
) -> dict[str, Any]:
    """Check a body against ``variants``: the member its ``key`` requires, no other member of the
    choice, then every field as ``check_object`` does.

    Raises:
        RequestError: Naming the first offending field.
    """
    value = body.get(variants.key) if isinstance(body, Mapping) else None
    if isinstance(value, str) and value in variants.choice:
        needed = variants.choice[value]
        for other in dict.fromkeys(variants.choice.values()):  # declaration order
            if other != needed and other in body:
                raise RequestError(other, f"not allowed for {variants.key} {value}")
    d = _check(variants.body, body, "body", max_amount, decimals, currency)
    needed = variants.choice[d[variants.key]]
    if needed not in d:
        raise RequestError(needed, f"required for {variants.key} {d[variants.key]}")
    return d


def parse_decision(body: Any, max_amount: float, currency: str, decimals: int = 2) -> DecisionRequest:
    """Validate a ``POST /v1/decisions`` body.

    Args:
        body: The decoded JSON.
        max_amount: Largest accepted amount (currency units).
        currency: The policy currency.
        decimals: The policy currency's decimals (amounts become integer minor units).

    Returns:
        The typed request.

    Raises:
        RequestError: Naming the first offending field.
    """
    d = check_variant(DECISION, body, max_amount, decimals, currency)
    service = d["service"]
    if service == PRESALE:
        o = d["order"]
        if o["deposit_amount"] > o["amount"]:
            raise RequestError("order.deposit_amount", "must not exceed order.amount")
        order = Order(
            o["order_id"],
            o["amount"],
            o["currency"],
            o["category"],
            o["deposit_amount"],
            o["balance_due_at"],
        )
        return DecisionRequest(service, d["request_id"], d["buyer_id"], order=order)
    if service == FAST_REFUND:
        r = d["refund"]
        refund = Refund(
            r["refund_id"],
            r["order_id"],
            r["amount"],
            r.get("currency", currency),
            r["reason"],
            r["kind"],
            r["evidence_photos"],
            r["order_amount"],
            r["category"],
            r["ordered_at"],
        )
        return DecisionRequest(service, d["request_id"], d["buyer_id"], refund=refund)
    raise RequestError("service", f"must be one of {', '.join(SERVICES)}")  # unreachable: enum checked


def parse_outcome(body: Any, max_amount: float, decimals: int = 2) -> Outcome:
    """Validate a ``POST /v1/outcomes`` body (see ``parse_decision``; ``amount`` in minor units)."""
    d = check_variant(OUTCOME, body, max_amount, decimals)
    key = OUTCOME.choice[d["kind"]]
    return Outcome(
        outcome_id=d["outcome_id"],
        kind=d["kind"],
        buyer_id=d["buyer_id"],
        ref_id=d[key],
        amount=d.get("amount"),
        occurred_at=d.get("occurred_at"),
        payload=body,
    )
