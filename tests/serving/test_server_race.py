"""Decisions racing outcomes for the same buyer across two gunicorn worker processes on the real
PostgreSQL: whatever order the two workers commit them in, the ledger holds exactly the unpaid
balances of the buyer's approved orders, and no approval passed the exposure limit."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg

from tests.serving.conftest import PG_URL
from tests.serving.test_server_ledger import _post

LIMIT_5_STARS = Decimal(30000)  # tests/serving/policy.yaml: presale exposure_limit at 5 stars
ORDERS = 24  # open before the race: 24 x 900 = 21,600 held, so only 9 more fit unless payments land first


def _held(schema: str, buyer_id: int) -> Decimal:
    """What the ledger holds for the buyer: its own sum over every open presale reservation."""
    with psycopg.connect(PG_URL, connect_timeout=5) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        minor = conn.execute(
            "SELECT COALESCE(SUM(amount_minor - released_minor), 0) FROM reservations "
            "WHERE buyer_id = %s AND service = 'presale_ship_before_balance' AND released_at IS NULL",
            (buyer_id,),
        ).fetchone()[0]
    return Decimal(minor) / 100


def test_decisions_racing_payments_hold_exactly_the_unpaid_balances(
    gunicorn_server, pg_schema, presale_body, buyer_with_star
):
    url = gunicorn_server(workers=2, database_url=PG_URL, database_schema=pg_schema)
    buyer = buyer_with_star(5, nth=2)
    balance = Decimal(900)
    for order in range(1, ORDERS + 1):
        status, _, answer = _post(url, "/v1/decisions", presale_body(buyer, 1000, 100, order_id=order))
        assert status == 200 and answer["decision"] == "approve", answer
    assert _held(pg_schema, buyer) == ORDERS * balance

    # each open order is paid (in full, or half) while a new order of the same buyer is decided
    calls = []
    for i in range(ORDERS):
        pay = {"outcome_id": uuid.uuid4().hex, "kind": "balance_paid", "buyer_id": buyer, "order_id": i + 1}
        if i % 2:
            pay["amount"] = "450"
        calls.append(("/v1/outcomes", pay))
        calls.append(("/v1/decisions", presale_body(buyer, 1000, 100, order_id=1000 + i)))
    barrier = threading.Barrier(len(calls))

    def send(call):
        barrier.wait()
        return call, _post(url, *call)

    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(send, calls))

    paid = Decimal(0)
    approved = []
    for (path, body), (status, _, answer) in results:
        assert status == 200, (path, answer)
        if path == "/v1/outcomes":
            paid += answer["released"]
            assert answer["released"] == Decimal(body.get("amount", balance))
        elif answer["decision"] == "approve":
            approved.append(body["order"]["order_id"])
            assert answer["limits"]["exposure_used"] + balance <= LIMIT_5_STARS, answer["limits"]
        else:
            assert [d["code"] for d in answer["declines"]] == ["exposure_limit_exceeded"], answer
    assert 9 <= len(approved) <= ORDERS
    unpaid = ORDERS * balance - paid + len(approved) * balance
    assert _held(pg_schema, buyer) == unpaid
    probe = _post(url, "/v1/decisions", presale_body(buyer, 10, 1, order_id=9999))[2]
    assert probe["limits"]["exposure_used"] == unpaid
