"""Idempotency keys (IETF Idempotency-Key draft, Stripe): scoped to the calling key, fingerprinted.

Same id + same request: the stored answer, marked as a replay. Same id + another request:
422 revealing nothing of the first. Same id while the first is in flight: 409. On SQLite and
on the real PostgreSQL (127.0.0.1:5432; fails, never skips, when it is not there).
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

import serving.handle
from serving.http.auth import SCOPES, key_entry
from serving.ledger.idempotency import InFlight, Refusal
from serving.ledger.tables import DECISIONS, OUTCOMES
from tests.serving.conftest import API_KEY, KEY_SECRET

OTHER_KEY = "another-caller-key"


@pytest.fixture
def backend_app(ledger_app):
    """An app with two API keys, on SQLite or PostgreSQL; its tables dropped afterwards."""
    return ledger_app(
        api_keys=[key_entry(API_KEY, KEY_SECRET, SCOPES), key_entry(OTHER_KEY, KEY_SECRET, SCOPES)]
    )


def _post(app, body, key=API_KEY, path="/v1/decisions"):
    return app.test_client().post(path, json=body, headers={"X-API-Key": key})


def _count(app, table) -> int:
    with app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_same_id_same_request_is_a_marked_replay(backend_app, presale_body, buyer_with_star):
    body = presale_body(buyer_with_star(4), 800, request_id="r-same")
    first = _post(backend_app, body)
    assert first.status_code == 200 and first.json["replayed"] is False
    assert "Idempotent-Replayed" not in first.headers
    second = _post(backend_app, body)
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json == first.json | {"replayed": True}
    assert _count(backend_app, DECISIONS) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda b, other: b.update(buyer_id=other),
        lambda b, other: b["order"].update(order_id=4242),
        lambda b, other: b["order"].update(amount=801),
        lambda b, other: b["order"].update(deposit_amount="80.01"),
        lambda b, other: b.update(
            service="fast_refund",
            order=None,
            refund={
                "refund_id": 1,
                "order_id": 1,
                "amount": 50,
                "reason": "damaged",
                "kind": "return_and_refund",
                "evidence_photos": 1,
                "order_amount": 50,
                "category": "apparel",
                "ordered_at": "2025-06-01T00:00:00Z",
            },
        ),
    ],
    ids=["buyer", "order", "amount", "deposit", "service"],
)
def test_same_id_other_request_is_422_revealing_nothing(backend_app, presale_body, buyer_with_star, change):
    buyer, other = buyer_with_star(4), buyer_with_star(5)
    body = presale_body(buyer, 800, request_id="r-reused")
    first = _post(backend_app, body).json
    changed = presale_body(buyer, 800, request_id="r-reused")
    change(changed, other)
    changed = {k: v for k, v in changed.items() if v is not None}
    response = _post(backend_app, changed)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["code"] == "idempotency_key_reused" and problem["status"] == 422
    text = response.get_data(as_text=True)
    for secret in (first["decision_id"], first["decision"], str(first["score"]), str(buyer)):
        assert secret not in text
    assert _count(backend_app, DECISIONS) == 1


def test_request_ids_are_scoped_to_the_calling_key(backend_app, presale_body, buyer_with_star):
    mine = presale_body(buyer_with_star(4), 800, request_id="r-scoped")
    theirs = presale_body(buyer_with_star(5), 900, request_id="r-scoped")
    first = _post(backend_app, mine)
    other = _post(backend_app, theirs, key=OTHER_KEY)
    assert other.status_code == 200 and other.json["replayed"] is False
    assert other.json["decision_id"] != first.json["decision_id"]
    assert _post(backend_app, mine).json["replayed"] is True
    with backend_app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        keys = conn.execute(select(DECISIONS.c.key_id)).scalars().all()
    assert len(set(keys)) == 2
    assert all(API_KEY not in k and OTHER_KEY not in k and len(k) == 32 for k in keys), (
        "a key id, never the key"
    )


def test_same_id_in_flight_is_409(backend_app, presale_body, buyer_with_star, monkeypatch):
    """The first request is held inside its transaction; a repeat (or a different body) gets 409."""
    entered, release = threading.Event(), threading.Event()
    real_decide = serving.handle.decide

    def slow_decide(*args, **kwargs):
        entered.set()
        release.wait(10)
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(serving.handle, "decide", slow_decide)
    body = presale_body(buyer_with_star(4), 800, request_id="r-flight")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, backend_app, body)
        assert entered.wait(10)
        monkeypatch.setattr(serving.handle, "decide", real_decide)
        again = _post(backend_app, body)
        other = _post(backend_app, presale_body(buyer_with_star(5), 800, request_id="r-flight"))
        release.set()
        done = first.result(10)
    assert again.status_code == 409 and again.json["code"] == "idempotency_request_in_flight"
    assert other.status_code == 409
    assert done.status_code == 200 and done.json["replayed"] is False
    after = _post(backend_app, body)
    assert after.json["replayed"] is True and after.json["decision_id"] == done.json["decision_id"]


def test_parallel_reuse_decides_once_and_never_leaks(backend_app, presale_body, buyer_with_star):
    """40 concurrent requests with one id, half of them for another buyer: one decision, no leak."""
    buyers = [buyer_with_star(4), buyer_with_star(5)]
    bodies = [presale_body(buyers[i % 2], 700, request_id="r-race") for i in range(40)]
    barrier = threading.Barrier(len(bodies))

    def post(body):
        client = backend_app.test_client()
        barrier.wait()
        return body, client.post("/v1/decisions", json=body, headers={"X-API-Key": API_KEY})

    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(post, bodies))
    assert {r.status_code for _, r in results} <= {200, 409, 422}
    ok = [(b, r.json) for b, r in results if r.status_code == 200]
    assert ok, "someone must have been decided"
    assert len({a["decision_id"] for _, a in ok}) == 1
    assert sum(not a["replayed"] for _, a in ok) <= 1
    assert all(a["buyer_id"] == b["buyer_id"] for b, a in ok), "another buyer's decision leaked"
    winner = ok[0][1]["buyer_id"]
    assert all(r.status_code != 200 for b, r in results if b["buyer_id"] != winner)
    assert _count(backend_app, DECISIONS) == 1


def test_outcome_ids_follow_the_same_rules(backend_app, presale_body, buyer_with_star):
    buyer = buyer_with_star(3)
    assert _post(backend_app, presale_body(buyer, 1000, order_id=31)).json["decision"] == "approve"
    outcome = {
        "outcome_id": "o-same",
        "kind": "balance_paid",
        "buyer_id": buyer,
        "order_id": 31,
        "amount": 300,
    }
    first = _post(backend_app, outcome, path="/v1/outcomes")
    assert first.status_code == 200 and first.json == {
        "outcome_id": "o-same",
        "kind": "balance_paid",
        "released": 300,
        "replayed": False,
    }
    again = _post(backend_app, outcome, path="/v1/outcomes")
    assert again.status_code == 200 and again.json == first.json | {"replayed": True}
    reused = _post(backend_app, outcome | {"amount": 400}, path="/v1/outcomes")
    assert reused.status_code == 422 and reused.json["code"] == "idempotency_key_reused"
    assert "300" not in reused.get_data(as_text=True)
    # another key may use the same outcome id: it is a new outcome (and pays 400 more)
    theirs = _post(backend_app, outcome | {"amount": 400}, key=OTHER_KEY, path="/v1/outcomes")
    assert theirs.status_code == 200 and theirs.json["released"] == 400 and theirs.json["replayed"] is False
    assert _count(backend_app, OUTCOMES) == 2


def _hold_claim(path: str, ready, release) -> None:
    claims = InFlight(path)
    with claims.claim("key", "r-1", "request_id"):
        ready.set()
        release.wait(10)


def test_in_flight_claims_are_seen_by_other_processes(tmp_path):
    """SQLite workers are processes: a claim held in one is a 409 in another, and freed when it ends."""
    path = str(tmp_path / "ledger.db-inflight")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_claim, args=(path, ready, release))
    child.start()
    try:
        assert ready.wait(10)
        claims = InFlight(path)
        with pytest.raises(Refusal) as refused, claims.claim("key", "r-1", "request_id"):
            pass
        assert refused.value.status == 409
        with claims.claim("key", "r-2", "request_id"):  # other ids are free
            pass
        with claims.claim("other-key", "r-1", "request_id"):  # and the same id of another key
            pass
    finally:
        release.set()
        child.join(10)
    with claims.claim("key", "r-1", "request_id"):
        pass
    claims.close()
