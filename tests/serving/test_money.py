"""Exact money: integer minor units from the request to the ledger and back, policy converted once."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from serving.ledger.tables import DECISIONS, RESERVATIONS
from serving.money import MoneyError, currency_decimals, from_minor, to_minor
from serving.policy import PolicyError, parse_policy


@pytest.mark.parametrize(
    ("value", "decimals", "units"),
    [
        (Decimal("0.09"), 2, 9),
        (Decimal("0.1"), 2, 10),
        (Decimal("2.70"), 2, 270),
        (Decimal("1E+2"), 2, 10000),
        ("12.30", 2, 1230),
        ("0.001", 3, 1),
        (100, 0, 100),
        (7, 2, 700),
    ],
)
def test_to_minor_is_exact(value, decimals, units):
    assert to_minor(value, decimals) == units


@pytest.mark.parametrize(
    ("value", "decimals"),
    [
        (Decimal("0.001"), 2),
        ("0.001", 2),
        (Decimal("0.5"), 0),
        ("1e2", 2),
        (" 1", 2),
        ("", 2),
        ("abc", 2),
        (Decimal("NaN"), 2),
        (Decimal("Infinity"), 2),
        (0.1, 2),  # floats are refused: decode with parse_float=Decimal
        (True, 2),
        (Decimal("1e20"), 2),
        (Decimal("1e999999"), 2),  # no overflow, no million-digit integer
        (Decimal("-1e999999"), 2),
        (Decimal("1e-999999"), 2),
    ],
)
def test_to_minor_refuses_anything_inexact(value, decimals):
    with pytest.raises(MoneyError):
        to_minor(value, decimals)


def test_from_minor_prints_the_exact_decimal():
    assert json.dumps(from_minor(270, 2)) == "2.7"
    assert json.dumps(from_minor(9, 2)) == "0.09"
    assert json.dumps(from_minor(150000, 2)) == "1500"
    assert json.dumps(from_minor(999_999_999_999_99, 2)) == "999999999999.99"
    assert json.dumps(from_minor(1, 3)) == "0.001"
    assert currency_decimals("CNY") == 2 and currency_decimals("JPY") == 0 and currency_decimals("KWD") == 3


def test_policy_amounts_become_minor_units_once(policy_file):
    import yaml

    raw = yaml.safe_load(policy_file.read_text())
    raw["services"]["fast_refund"]["evidence"]["photos_required_above"] = 99.99
    policy = parse_policy(copy.deepcopy(raw))
    assert policy.decimals == 2
    assert policy.presale.exposure_limit[2:] == (1500_00, 8000_00, 30000_00)
    assert policy.fast_refund.photos_required_above == 9999
    raw["services"]["presale_ship_before_balance"]["amount_cap"][4] = 5000.005
    with pytest.raises(
        PolicyError, match=r"^services\.presale_ship_before_balance\.amount_cap\.4: .*2 decimals"
    ):
        parse_policy(raw)


def test_thirty_approvals_of_0_09_leave_exactly_2_70(client, app, presale_body, buyer_with_star):
    buyer = buyer_with_star(5)
    last = None
    for i in range(30):  # amount 0.10, deposit 0.01: a balance of 0.09 each
        body = presale_body(buyer, 0, order_id=500 + i)
        body["order"].update(amount="0.10", deposit_amount="0.01")
        last = client.post("/v1/decisions", json=body)
        assert last.status_code == 200 and last.json["decision"] == "approve", last.json
    assert '"exposure_used":2.61,' in last.get_data(as_text=True)
    assert json.loads(last.get_data(as_text=True), parse_float=Decimal)["limits"]["exposure_used"] == Decimal(
        "2.61"
    )
    body = presale_body(buyer, 0, order_id=999)
    body["order"].update(amount="0.10", deposit_amount="0.01")
    probe = json.loads(client.post("/v1/decisions", json=body).get_data(as_text=True), parse_float=Decimal)
    assert probe["limits"]["exposure_used"] == Decimal("2.70")
    assert probe["limits"]["exposure_remaining"] == Decimal("30000") - Decimal("2.79")
    with app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        held = conn.execute(select(func.sum(RESERVATIONS.c.amount_minor))).scalar()
        assert held == 31 * 9 and isinstance(held, int)
        assert conn.execute(select(func.sum(DECISIONS.c.reserved_minor))).scalar() == 31 * 9


def test_json_numbers_keep_their_decimal_value(client, presale_body, buyer_with_star):
    """0.1 + 0.2 in floats is 0.30000000000000004; as decimals it is 0.3 (amount 3.00, deposit 0.30)."""
    text = json.dumps(presale_body(buyer_with_star(5), 3.0, 0.3, order_id=77))
    response = client.post("/v1/decisions", data=text, content_type="application/json")
    limits = json.loads(response.get_data(as_text=True), parse_float=Decimal)["limits"]
    assert limits["exposure_requested"] == Decimal("2.7")
    assert limits["deposit_ratio"] == Decimal("0.1")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('"amount": 100.001', "order.amount"),
        ('"amount": "100.001"', "order.amount"),
        ('"amount": 1e-3', "order.amount"),
        ('"amount": "1e2"', "order.amount"),
        ('"amount": " 100"', "order.amount"),
        ('"amount": "-5"', "order.amount"),
        ('"amount": "0.00"', "order.amount"),
        ('"amount": 10000000.01', "order.amount"),
        ('"amount": 0.1000000000000000055511151231257827', "order.amount"),
        ('"amount": 1e999999', "order.amount"),
        ('"amount": 1E400000', "order.amount"),
    ],
)
def test_inexact_amounts_are_400_naming_the_field(client, presale_body, raw, field):
    text = json.dumps(presale_body(5, 500, 50)).replace('"amount": 500', raw, 1)
    response = client.post("/v1/decisions", data=text, content_type="application/json")
    assert response.status_code == 400, response.json
    assert response.json["field"] == field
    assert response.mimetype == "application/problem+json"


def test_decimal_strings_and_numbers_are_the_same_request(client, presale_body, buyer_with_star):
    """Amounts as "800.00", 800 and 800.0 are one request: replayed, not a 422."""
    buyer = buyer_with_star(4)
    as_string = presale_body(buyer, 800, 80, request_id="same-money")
    as_string["order"].update(amount="800.00", deposit_amount="80.0")
    first = client.post("/v1/decisions", json=as_string)
    text = json.dumps(presale_body(buyer, 800, 80, request_id="same-money")).replace(
        '"amount": 800', '"amount": 800.0'
    )
    second = client.post("/v1/decisions", data=text, content_type="application/json")
    assert second.status_code == 200 and second.json["replayed"] is True
    assert second.json["decision_id"] == first.json["decision_id"]
