"""Concurrent checkouts of one buyer never pass a limit: SQLite and the real PostgreSQL.

PostgreSQL must be running on 127.0.0.1:5432 (as on CI); the test fails, never skips,
when it is not. Each test uses its own schema and drops it afterwards.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from serving.ledger.tables import RESERVATIONS

N_REQUESTS = 50


def _app(make_app, config: dict, backend: str, schema: str):
    if backend == "postgresql":
        config = config | {
            "database_url": "postgresql://postgres@127.0.0.1:5432/test",
            "database_schema": schema,
        }
    app = make_app(config | {"db_pool_size": 10})
    app.extensions["buyer_trust"].ledger.ping()  # fails loudly if the database is not there
    return app


def _parallel(app, bodies: list[dict], statuses: tuple[int, ...] = (200,)) -> list[dict]:
    barrier = threading.Barrier(len(bodies))

    def post(body: dict) -> dict:
        client = app.test_client()
        barrier.wait()
        response = client.post("/v1/decisions", json=body, headers={"X-API-Key": "test-key"})
        assert response.status_code in statuses, response.json
        return response.json if response.status_code == 200 else {"status": response.status_code}

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_presales_never_overshoot_exposure(
    make_app, config, pg_schema, backend, presale_body, buyer_with_star
):
    app = _app(make_app, config, backend, pg_schema)
    ledger = app.extensions["buyer_trust"].ledger
    try:
        buyer = buyer_with_star(5)  # exposure limit 30000 in the test policy; each balance is 4500
        bodies = [presale_body(buyer, 5000, 500, order_id=1000 + i) for i in range(N_REQUESTS)]
        answers = _parallel(app, bodies)
        approved = [a for a in answers if a["decision"] == "approve"]
        declined = [a for a in answers if a["decision"] == "decline"]
        assert len(approved) == 30000 // 4500, [a["declines"] for a in declined][:3]
        assert all([d["code"] for d in a["declines"]] == ["exposure_limit_exceeded"] for a in declined)
        with ledger.engine.connect() as conn:
            held = conn.execute(
                select(func.sum(RESERVATIONS.c.amount_minor)).where(RESERVATIONS.c.buyer_id == buyer)
            ).scalar()
        assert held == len(approved) * 4500_00  # minor units
        assert held <= 30000_00
    finally:
        ledger.drop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_fast_refunds_respect_the_quota(
    make_app, config, pg_schema, backend, refund_body, buyer_with_star
):
    app = _app(make_app, config, backend, pg_schema)
    ledger = app.extensions["buyer_trust"].ledger
    try:
        buyer = buyer_with_star(4)  # 5 fast refunds per 30 days at 4 stars
        answers = _parallel(app, [refund_body(buyer, 20, refund_id=i) for i in range(20)])
        assert sum(a["decision"] == "approve" for a in answers) == 5
    finally:
        ledger.drop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_repeats_of_one_request_id_decide_once(
    make_app, config, pg_schema, backend, presale_body, buyer_with_star
):
    app = _app(make_app, config, backend, pg_schema)
    ledger = app.extensions["buyer_trust"].ledger
    try:
        body = presale_body(buyer_with_star(4), 1000, request_id="one-request")
        # 409 while the first is in flight, else the first's decision replayed
        answers = [a for a in _parallel(app, [body] * 20, (200, 409)) if "status" not in a]
        assert answers and len({a["decision_id"] for a in answers}) == 1
        assert sum(not a["replayed"] for a in answers) == 1
        with ledger.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(RESERVATIONS)).scalar() == 1
    finally:
        ledger.drop()
