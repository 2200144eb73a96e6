"""Deciding the same order or refund again (docs/serving.md, "What a repeated decision means").

On SQLite and the real PostgreSQL, through the HTTP API. Sums are read from the ledger's own
rows over every order of the buyer (none excluded).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from serving.ledger.tables import RESERVATIONS
from tests.serving.conftest import API_KEY


@pytest.fixture
def app(ledger_app):
    return ledger_app()


@pytest.fixture
def post(app):
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    return lambda path, body: client.post(path, json=body)


def held(app, buyer: int, service: str = "presale_ship_before_balance") -> int:
    """Everything the ledger holds for the buyer and service, minor units."""
    r = RESERVATIONS.c
    with app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        total = conn.execute(
            select(func.coalesce(func.sum(r.amount_minor - r.released_minor), 0)).where(
                r.buyer_id == buyer, r.service == service
            )
        ).scalar()
    return int(total)


def paid(buyer: int, order: int, amount=None) -> dict:
    body = {"outcome_id": uuid.uuid4().hex, "kind": "balance_paid", "buyer_id": buyer, "order_id": order}
    return body if amount is None else body | {"amount": amount}


def test_a_redecided_order_paid_in_two_parts_leaves_no_exposure(app, post, presale_body, buyer_with_star):
    """The issue's sequence: approve 1,000 (deposit 100), pay 450, decide again, pay 450."""
    buyer = buyer_with_star(5)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=7)).json["decision"] == "approve"
    assert held(app, buyer) == 900_00
    assert post("/v1/outcomes", paid(buyer, 7, 450)).json["released"] == 450
    again = post("/v1/decisions", presale_body(buyer, 1000, order_id=7)).json  # a retry, new request id
    assert again["decision"] == "approve", again
    assert again["limits"]["exposure_requested"] == 450, "a repeat holds only the balance still unpaid"
    assert held(app, buyer) == 450_00
    assert post("/v1/outcomes", paid(buyer, 7, 450)).json["released"] == 450
    assert held(app, buyer) == 0
    probe = post("/v1/decisions", presale_body(buyer, 10, order_id=8)).json
    assert probe["limits"]["exposure_used"] == 0


def test_a_repriced_order_holds_its_new_balance_less_what_was_paid(app, post, presale_body, buyer_with_star):
    buyer = buyer_with_star(5, nth=1)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=7)).json["decision"] == "approve"
    post("/v1/outcomes", paid(buyer, 7, 300))
    assert post("/v1/decisions", presale_body(buyer, 2000, order_id=7)).json["decision"] == "approve"
    assert held(app, buyer) == (1800 - 300) * 100
    post("/v1/outcomes", paid(buyer, 7))  # everything left
    assert held(app, buyer) == 0


@pytest.mark.parametrize(
    ("kind", "amount"), [("balance_paid", None), ("order_canceled", None), ("balance_defaulted", None)]
)
def test_a_settled_order_is_never_approved_again(app, post, presale_body, buyer_with_star, kind, amount):
    buyer = buyer_with_star(5, nth=2)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=9)).json["decision"] == "approve"
    body = {"outcome_id": uuid.uuid4().hex, "kind": kind, "buyer_id": buyer, "order_id": 9}
    assert post("/v1/outcomes", body).status_code == 200
    before = held(app, buyer)
    again = post("/v1/decisions", presale_body(buyer, 1000, order_id=9)).json
    assert again["decision"] == "decline"
    assert "already_settled" in [d["code"] for d in again["declines"]]
    assert held(app, buyer) == before == (900_00 if kind == "balance_defaulted" else 0)


def test_a_decline_after_an_approval_keeps_its_hold(app, post, presale_body, buyer_with_star):
    buyer = buyer_with_star(5, nth=3)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=3)).json["decision"] == "approve"
    over = post("/v1/decisions", presale_body(buyer, 10**6, order_id=3)).json  # above every cap
    assert over["decision"] == "decline"
    assert held(app, buyer) == 900_00, "the goods may have shipped on the first approval"


def test_a_returned_fast_refund_is_never_approved_again(app, post, refund_body, buyer_with_star):
    buyer = buyer_with_star(5, nth=4)
    assert post("/v1/decisions", refund_body(buyer, 50, refund_id=5)).json["decision"] == "approve"
    assert post("/v1/decisions", refund_body(buyer, 50, refund_id=5)).json["decision"] == "approve"
    assert held(app, buyer, "fast_refund") == 50_00, "a repeat replaces the hold"
    body = {"outcome_id": uuid.uuid4().hex, "kind": "goods_returned", "buyer_id": buyer, "refund_id": 5}
    assert post("/v1/outcomes", body).json["released"] == 50
    again = post("/v1/decisions", refund_body(buyer, 50, refund_id=5)).json
    assert [d["code"] for d in again["declines"]] == ["already_settled"]
    assert held(app, buyer, "fast_refund") == 0
