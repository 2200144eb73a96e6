"""Schemathesis hooks of ``bench/bench_schema.py`` (``SCHEMATHESIS_HOOKS=bench.schema_hooks``, registered when
schemathesis imports this module): generated bodies that break a rule between two fields are dropped,
since JSON Schema cannot state one and the service rightly refuses them with 400 naming the field:

* ``order.deposit_amount`` must not exceed ``order.amount`` (``serving.schema.parse_decision``);
* ``review.delivered_at`` must not follow ``review.posted_at`` (``serving.reviews.parse_assessment``).

Every other schema-valid body must be accepted, every schema-invalid one refused. A schema-valid body
also gets a fresh idempotency key (``request_id``, ``outcome_id``), as a caller sends one per request:
the generators repeat a few keys ("0"), and a key reused with another request is rightly a 422.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

from serving.money import MoneyError, to_minor


def _minor(value: Any) -> int | None:
    try:
        return to_minor(Decimal(repr(value)) if isinstance(value, float) else value, 2)
    except (MoneyError, ValueError, TypeError, ArithmeticError):
        return None


def _instant(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, TypeError, OverflowError):
        return None


def breaks_a_relation(body: Any) -> bool:
    """Whether ``body`` breaks one of the two rules between fields (unparsable values break none)."""
    if not isinstance(body, dict):
        return False
    order, review = body.get("order"), body.get("review")
    if isinstance(order, dict):
        deposit, amount = _minor(order.get("deposit_amount")), _minor(order.get("amount"))
        if deposit is not None and amount is not None and deposit > amount:
            return True
    if isinstance(review, dict):
        delivered, posted = _instant(review.get("delivered_at")), _instant(review.get("posted_at"))
        if delivered is not None and posted is not None and delivered > posted:
            return True
    return False


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    """Keep a generated case unless its body breaks a rule between two fields (every phase: examples,
    coverage, fuzzing and stateful all pass their cases through this hook)."""
    return not breaks_a_relation(case.body)


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    """A fresh idempotency key for a schema-valid body (a schema-invalid one is left as generated)."""
    body = case.body
    if (
        isinstance(body, dict)
        and case.meta is not None
        and not case.meta.is_negative_at(ParameterLocation.BODY)
    ):
        for key in ("request_id", "outcome_id"):
            if isinstance(body.get(key), str):
                body[key] = uuid.uuid4().hex
                case.meta.mark_dirty(ParameterLocation.BODY)
    return case
