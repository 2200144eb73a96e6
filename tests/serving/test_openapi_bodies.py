"""The OpenAPI document and the parser agree on the request bodies: a body the served document
calls valid is one ``serving.schema`` accepts, and the other way round.

Bodies are generated around a valid one per service and per outcome kind: the key (``service``,
``kind``) is any of its values, and each member whose presence depends on it (``order``/``refund``,
``order_id``/``refund_id``) is left out, present or null; optional members are null or left out;
amounts are numbers or decimal strings in range or not, ids, currencies and instants well formed or
not, a
buyer id may be past the int64 maximum and an unknown member may be added. The document's verdict is
``jsonschema``'s (Draft 2020-12, as OpenAPI 3.1 says, formats asserted) on the served request-body
schema.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.http.openapi import openapi_document
from serving.schema import (
    DECISION,
    MAX_ID,
    OUTCOME,
    OUTCOME_KINDS,
    RequestError,
    parse_decision,
    parse_outcome,
)

MAX_AMOUNT = 10_000_000.0
CURRENCY = "CNY"
ORDER = {
    "order_id": 11,
    "amount": 500,
    "currency": CURRENCY,
    "category": "beauty",
    "deposit_amount": 50,
    "balance_due_at": "2025-11-11T00:00:00Z",
}
REFUND = {
    "refund_id": 21,
    "order_id": 11,
    "amount": "20.50",
    "reason": "damaged",
    "kind": "refund_only",
    "evidence_photos": 2,
    "order_amount": 40,
    "category": "apparel",
    "ordered_at": "2025-06-01T00:00:00Z",
}
# Amounts as numbers and as decimal strings, in range and not (max 10,000,000; 2 decimals; refunds > 0).
AMOUNTS = [
    30,
    0,
    -1,
    10**7,
    10**7 + 1,
    "30.5",
    "0.05",
    "0",
    "0.00",
    "030",
    "-0",
    "1e3",
    " 5",
    "5.678",
    "10000000",
]
AMOUNTS += ["10000000.00", "10000000.01", "9999999.99", ".5", "5.", True]
INSTANTS = ["2025-06-02T00:00:00Z", "2025-06-02T00:00:00.5+08:00", "2025-06-02T00:00:00", "2025-06-02"]
INSTANTS += [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:00-05:00",
    "2025-02-30T00:00:00Z",
    "2025-06-02t00:00:00z",
]
IDS = ["r-1", "a b", " r", "r ", "r\u000f", "\u8ba2\u5355", "x" * 128, "x" * 129, "", "~"]
MEMBERS = {"order": ORDER, "refund": REFUND, "order_id": 11, "refund_id": 21}
ABSENT = object()
CHECKED = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


class Validators(dict):
    """Route -> a validator of the served document's request-body schema (with its components)."""

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<request-body validators of the served document>"


@pytest.fixture(scope="module")
def validators() -> Validators:
    doc = openapi_document("test", MAX_AMOUNT, 2, CURRENCY)
    # jsonschema checks date-time only with rfc3339-validator installed (the test extra declares it);
    # without it a 2025-02-30 would pass the document and the comparison would blame the parser
    assert "date-time" in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers, (
        "pip install rfc3339-validator"
    )
    out = Validators()
    for path in ("/v1/decisions", "/v1/outcomes"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        out[path] = jsonschema.Draft202012Validator(
            {**body, "components": doc["components"]},
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )  # formats asserted: a date-time is a real instant (RFC 3339)
    return out


def _member(value: Any) -> st.SearchStrategy:
    return st.sampled_from([ABSENT, None, value])


@st.composite
def bodies(draw, variants, base: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    body = dict(base, **{variants.key: draw(st.sampled_from([*variants.choice, "nonsense"]))})
    for name in dict.fromkeys(variants.choice.values()):
        body[name] = draw(_member(MEMBERS[name]))
    for name in optional:
        body[name] = draw(st.sampled_from([ABSENT, None, body.get(name, ABSENT)]))
    if draw(st.booleans()):
        body["buyer_id"] = draw(st.sampled_from([0, MAX_ID, MAX_ID + 1, -1]))
    for name in ("request_id", "outcome_id"):
        if name in body and draw(st.booleans()):
            body[name] = draw(st.sampled_from(IDS))
    if isinstance(body.get("order"), dict):
        body["order"] = {**body["order"], "currency": draw(st.sampled_from([CURRENCY, "USD", "cny", None]))}
    if "occurred_at" in body and body["occurred_at"] is not None:
        body["occurred_at"] = draw(st.sampled_from(INSTANTS))
    amount = draw(st.sampled_from(AMOUNTS))
    if body.get("amount") is not None:
        body["amount"] = amount
    if isinstance(body.get("refund"), dict):
        body["refund"] = {**body["refund"], "amount": amount}
    if draw(st.integers(0, 9)) == 0:
        body["unexpected"] = 1
    return {k: v for k, v in body.items() if v is not ABSENT}


def _accepted(parse, body: dict[str, Any]) -> bool:
    try:
        parse(body)
    except RequestError:
        return False
    return True


@CHECKED
@given(body=bodies(DECISION, {"request_id": "r-1", "buyer_id": 7}, ()))
def test_decision_bodies_valid_in_the_document_are_the_ones_the_parser_accepts(validators, body):
    valid = validators["/v1/decisions"].is_valid(body)
    assert valid == _accepted(lambda b: parse_decision(b, MAX_AMOUNT, CURRENCY), body), body


@CHECKED
@given(
    body=bodies(
        OUTCOME,
        {"outcome_id": "o-1", "buyer_id": 7, "amount": 30, "occurred_at": "2025-06-02T00:00:00Z"},
        ("amount", "occurred_at"),
    )
)
def test_outcome_bodies_valid_in_the_document_are_the_ones_the_parser_accepts(validators, body):
    valid = validators["/v1/outcomes"].is_valid(body)
    assert valid == _accepted(lambda b: parse_outcome(b, MAX_AMOUNT), body), body


def test_one_schema_per_service_and_per_outcome_kind():
    doc = openapi_document("test", MAX_AMOUNT)
    schemas = doc["components"]["schemas"]
    for path, variants, values in (
        ("/v1/decisions", DECISION, ("presale_ship_before_balance", "fast_refund")),
        ("/v1/outcomes", OUTCOME, tuple(OUTCOME_KINDS)),
    ):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["discriminator"]["propertyName"] == variants.key
        assert set(body["discriminator"]["mapping"]) == set(values) == set(variants.choice)
        for value, ref in body["discriminator"]["mapping"].items():
            schema = schemas[ref.rsplit("/", 1)[1]]
            needed = variants.choice[value]
            assert schema["properties"][variants.key]["enum"] == [value]
            assert needed in schema["required"]
            assert not set(variants.choice.values()) - {needed} & set(schema["properties"])
