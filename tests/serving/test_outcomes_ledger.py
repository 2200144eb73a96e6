"""``POST /v1/outcomes`` checked against the ledger, on SQLite and the real PostgreSQL.

The test policy (tests/serving/policy.yaml), 3 stars: exposure limit 1500; an order of 1000 with a 100
deposit holds 900.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from serving.ledger.tables import OUTCOMES, RESERVATIONS
from tests.serving.conftest import API_KEY, held_exposure


@pytest.fixture
def ledger_app(ledger_app):
    """The test policy on SQLite or PostgreSQL (conftest's ``ledger_app``); tables dropped afterwards."""
    return ledger_app()


@pytest.fixture
def post(ledger_app):
    client = ledger_app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY

    def send(path: str, body: dict):
        return client.post(path, json=body)

    return send


def outcome(kind: str, buyer: int, ref: int, amount=None, **extra) -> dict:
    key = "order_id" if kind in ("balance_paid", "order_canceled", "balance_defaulted") else "refund_id"
    body = {"outcome_id": uuid.uuid4().hex, "kind": kind, "buyer_id": buyer, key: ref} | extra
    return body if amount is None else body | {"amount": amount}


def exposure_used(post, presale_body, buyer) -> float:
    """The buyer's outstanding balances, as a new (unrelated) order's decision reports them."""
    probe = post("/v1/decisions", presale_body(buyer, 10, order_id=9_999_999)).json
    return probe["limits"]["exposure_used"]


def _reservation(app, buyer, ref):
    with app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        return conn.execute(
            select(RESERVATIONS).where(RESERVATIONS.c.buyer_id == buyer, RESERVATIONS.c.ref_id == ref)
        ).one()


def test_unknown_order_or_refund_is_404(post, buyer_with_star):
    buyer = buyer_with_star(3)
    response = post("/v1/outcomes", outcome("balance_paid", buyer, 123456, 10))
    assert response.status_code == 404 and response.json["code"] == "outcome_order_unknown"
    assert response.mimetype == "application/problem+json"
    response = post("/v1/outcomes", outcome("goods_returned", buyer, 123456))
    assert response.status_code == 404 and response.json["code"] == "outcome_refund_unknown"


def test_order_of_another_buyer_is_409(post, presale_body, buyer_with_star):
    buyer, other = buyer_with_star(3), buyer_with_star(4)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=41)).json["decision"] == "approve"
    response = post("/v1/outcomes", outcome("balance_paid", other, 41, 900))
    assert response.status_code == 409 and response.json["code"] == "outcome_buyer_mismatch"
    assert exposure_used(post, presale_body, buyer) == 900, "nothing released"


def test_partial_payments_release_only_what_was_paid(ledger_app, post, presale_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=1)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=51)).json["decision"] == "approve"
    first = post("/v1/outcomes", outcome("balance_paid", buyer, 51, "300.50"))
    assert first.status_code == 200 and first.json["released"] == 300.5
    assert exposure_used(post, presale_body, buyer) == 599.5
    assert _reservation(ledger_app, buyer, 51).released_at is None
    beyond = post("/v1/outcomes", outcome("balance_paid", buyer, 51, "599.51"))
    assert beyond.status_code == 409 and beyond.json["code"] == "outcome_exceeds_balance"
    rest = post("/v1/outcomes", outcome("balance_paid", buyer, 51))  # no amount: everything left
    assert rest.status_code == 200 and rest.json["released"] == 599.5
    assert exposure_used(post, presale_body, buyer) == 0
    held = _reservation(ledger_app, buyer, 51)
    assert held.released_at is not None and held.released_minor == held.amount_minor == 900_00
    again = post("/v1/outcomes", outcome("balance_paid", buyer, 51, 1))
    assert again.status_code == 409 and again.json["code"] == "outcome_exceeds_balance"


def test_balance_default_keeps_the_exposure(ledger_app, post, presale_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=2)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=61)).json["decision"] == "approve"
    response = post("/v1/outcomes", outcome("balance_defaulted", buyer, 61))
    assert response.status_code == 200 and response.json["released"] == 0
    assert exposure_used(post, presale_body, buyer) == 900
    held = _reservation(ledger_app, buyer, 61)
    assert held.outcome == "balance_defaulted" and held.released_at is None
    late = post("/v1/outcomes", outcome("balance_paid", buyer, 61, 900))  # paid late after all
    assert late.status_code == 200 and late.json["released"] == 900
    assert exposure_used(post, presale_body, buyer) == 0


def test_cancel_releases_what_is_left_and_closes_the_order(post, presale_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=3)
    assert post("/v1/decisions", presale_body(buyer, 1000, order_id=71)).json["decision"] == "approve"
    assert post("/v1/outcomes", outcome("balance_paid", buyer, 71, 100)).json["released"] == 100
    canceled = post("/v1/outcomes", outcome("order_canceled", buyer, 71))
    assert canceled.status_code == 200 and canceled.json["released"] == 800
    assert exposure_used(post, presale_body, buyer) == 0
    after = post("/v1/outcomes", outcome("balance_paid", buyer, 71, 10))
    assert after.status_code == 409 and after.json["code"] == "outcome_order_closed"


def test_refund_outcomes_move_the_ledger(ledger_app, post, refund_body, buyer_with_star):
    buyer = buyer_with_star(4)
    for refund_id in (1, 2):
        assert (
            post("/v1/decisions", refund_body(buyer, 80, refund_id=refund_id)).json["decision"] == "approve"
        )
    returned = post("/v1/outcomes", outcome("goods_returned", buyer, 1))
    assert returned.status_code == 200 and returned.json["released"] == 80
    assert _reservation(ledger_app, buyer, 1).released_at is not None
    abuse = post("/v1/outcomes", outcome("refund_abuse", buyer, 2))
    assert abuse.status_code == 200 and abuse.json["released"] == 0
    held = _reservation(ledger_app, buyer, 2)
    assert held.outcome == "refund_abuse" and held.released_at is None
    too_much = post("/v1/outcomes", outcome("goods_not_returned", buyer, 2, 80.01))
    assert too_much.status_code == 409 and too_much.json["code"] == "outcome_exceeds_refund"
    nxt = post("/v1/decisions", refund_body(buyer, 80, refund_id=3)).json
    assert nxt["limits"]["quota_count_used"] == 2, "a returned fast refund still counts against the quota"


def test_every_accepted_outcome_is_stored_for_training(ledger_app, post, presale_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=4)
    declined = post("/v1/decisions", presale_body(buyer, 1000, 50, order_id=81)).json  # deposit below 10%
    assert declined["decision"] == "decline"
    sent = outcome("balance_paid", buyer, 81, "950.00", occurred_at="2025-06-20T10:00:00Z")
    response = post("/v1/outcomes", sent)
    assert response.status_code == 200 and response.json["released"] == 0, "nothing was held for it"
    with ledger_app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        row = conn.execute(select(OUTCOMES).where(OUTCOMES.c.outcome_id == sent["outcome_id"])).one()
    assert row.kind == "balance_paid" and row.buyer_id == buyer and row.ref_id == 81
    assert row.amount_minor == 950_00 and row.released_minor == 0
    assert row.payload == sent and str(row.occurred_at) == "2025-06-20 10:00:00"
    assert len(row.key_id) == 32 and len(row.fingerprint) == 64


def test_parallel_payments_never_pay_more_than_the_balance(ledger_app, presale_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=5)
    client = ledger_app.test_client()
    headers = {"X-API-Key": API_KEY}
    decided = client.post("/v1/decisions", json=presale_body(buyer, 1000, order_id=91), headers=headers)
    assert decided.json["decision"] == "approve"
    bodies = [outcome("balance_paid", buyer, 91, 600) for _ in range(10)]
    barrier = threading.Barrier(len(bodies))

    def pay(body):
        c = ledger_app.test_client()
        barrier.wait()
        return c.post("/v1/outcomes", json=body, headers=headers)

    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = [r.status_code for r in pool.map(pay, bodies)]
    assert sorted(statuses) == [200] + [409] * 9
    held = _reservation(ledger_app, buyer, 91)
    assert held.released_minor == 600_00 and held.released_at is None


def test_a_ledger_from_an_earlier_version_is_refused_with_a_clear_error(tmp_path):
    import sqlite3

    from serving.ledger.engine import make_engine
    from serving.ledger.store import Ledger, LedgerSchemaError

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the float-amount reservations table of earlier versions
        old.execute("CREATE TABLE reservations (reservation_id INTEGER PRIMARY KEY, amount FLOAT)")
    ledger = Ledger(make_engine(f"sqlite:///{path}"))
    with pytest.raises(LedgerSchemaError, match=r"reservations predates .*missing buyer_id"):
        ledger.create()
    ledger.close()


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2025-13-01T00:00:00Z"]
)
def test_occurred_at_out_of_range_is_400(post, moment):
    response = post("/v1/outcomes", outcome("balance_paid", 1, 1, 1, occurred_at=moment))
    assert response.status_code == 400 and response.json["field"] == "occurred_at"


def test_an_allowance_decline_holds_nothing_and_replays(
    ledger_app, policy_file, presale_body, buyer_with_star
):
    """The head prices every decision here; with the allowance tightened, a decline for the expected
    loss reserves nothing, replays as it was, and leaves the buyer's other hold as it was."""
    import yaml

    client = ledger_app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    buyer = buyer_with_star(5, nth=3)
    small = client.post("/v1/decisions", json=presale_body(buyer, 100, order_id=1)).json
    assert small["decision"] == "approve" and 0 < small["p_loss"] < 1, small
    doc = yaml.safe_load(policy_file.read_text())
    doc["services"]["presale_ship_before_balance"]["expected_loss_allowance"] = {3: 0.001, 4: 0.001, 5: 0.001}
    policy_file.write_text(yaml.safe_dump(doc))
    assert client.post("/v1/admin/reload", json={"parts": ["policy"]}).status_code == 200
    body = presale_body(buyer, 5000, order_id=2)
    large = client.post("/v1/decisions", json=body).json
    assert [d["code"] for d in large["declines"]] == ["expected_loss_above_allowance"], large
    assert (
        large["expected_loss"] > large["limits"]["expected_loss_allowance"] == pytest.approx(4.5)
    )  # 0.1% of the 4,500 balance
    assert held_exposure(ledger_app, buyer) == 90_00, "only the small order's balance is held"
    again = client.post("/v1/decisions", json=body).json
    assert again["replayed"] is True and again["decision_id"] == large["decision_id"]
    assert held_exposure(ledger_app, buyer) == 90_00
