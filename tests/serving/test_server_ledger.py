"""Idempotency, outcomes and exact money against the real server: gunicorn with 2 worker
processes (production settings), on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.serving.conftest import API_KEY, PG_URL


def _post(url: str, path: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read(), parse_float=Decimal)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.mark.parametrize("backend", ["sqlite", "sqlite-full", "postgresql"])
def test_idempotency_outcomes_and_money_on_gunicorn(
    gunicorn_server, pg_schema, backend, presale_body, buyer_with_star
):
    settings = {
        "sqlite": {},  # GROUP by default: fsyncs on gevent's thread pool
        "sqlite-full": {"sqlite_synchronous": "FULL"},
        "postgresql": {"database_url": PG_URL, "database_schema": pg_schema},
    }[backend]
    url = gunicorn_server(workers=2, **settings)
    mine, other = buyer_with_star(4), buyer_with_star(5)

    # 40 concurrent requests with one request_id, half for another buyer, over 2 worker processes
    bodies = [presale_body(mine if i % 2 else other, 700, 70, request_id="race") for i in range(40)]
    barrier = threading.Barrier(len(bodies))

    def send(body):
        barrier.wait()
        return body, _post(url, "/v1/decisions", body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(send, bodies))
    assert {status for _, (status, _, _) in results} <= {200, 409, 422}
    ok = [(b, answer) for b, (status, _, answer) in results if status == 200]
    assert ok and len({a["decision_id"] for _, a in ok}) == 1
    assert all(a["buyer_id"] == b["buyer_id"] for b, a in ok), "another buyer's decision leaked"
    winner = ok[0][0]
    loser = next(b for b in bodies if b["buyer_id"] != winner["buyer_id"])
    status, headers, replay = _post(url, "/v1/decisions", winner)
    assert status == 200 and headers["Idempotent-Replayed"] == "true" and replay["replayed"] is True
    assert replay["decision_id"] == ok[0][1]["decision_id"]
    status, headers, problem = _post(url, "/v1/decisions", loser)
    assert status == 422 and problem["code"] == "idempotency_key_reused"
    assert headers["Content-Type"].startswith("application/problem+json")
    assert replay["decision_id"] not in json.dumps(problem)

    # outcomes checked against the ledger
    buyer = buyer_with_star(3)
    assert _post(url, "/v1/decisions", presale_body(buyer, 1000, 100, order_id=5))[2]["decision"] == "approve"

    def outcome(buyer_id, order_id, amount=None):
        body = {
            "outcome_id": uuid.uuid4().hex,
            "kind": "balance_paid",
            "buyer_id": buyer_id,
            "order_id": order_id,
        }
        return body if amount is None else body | {"amount": amount}

    assert _post(url, "/v1/outcomes", outcome(buyer, 404404, 1))[0] == 404
    assert _post(url, "/v1/outcomes", outcome(mine, 5, 1))[2]["code"] == "outcome_buyer_mismatch"
    status, _, paid = _post(url, "/v1/outcomes", outcome(buyer, 5, "250.25"))
    assert status == 200 and paid["released"] == Decimal("250.25")
    status, _, beyond = _post(url, "/v1/outcomes", outcome(buyer, 5, "649.76"))
    assert status == 409 and beyond["code"] == "outcome_exceeds_balance"
    probe = _post(url, "/v1/decisions", presale_body(buyer, 10, 1, order_id=6))[2]
    assert probe["limits"]["exposure_used"] == Decimal("649.75")

    # exact money: 30 approvals holding 0.09 each
    rich = buyer_with_star(5, nth=1)
    for i in range(30):
        body = presale_body(rich, 0, order_id=100 + i)
        body["order"].update(amount="0.10", deposit_amount="0.01")
        assert _post(url, "/v1/decisions", body)[2]["decision"] == "approve"
    body = presale_body(rich, 0, order_id=999)
    body["order"].update(amount="0.10", deposit_amount="0.01")
    assert _post(url, "/v1/decisions", body)[2]["limits"]["exposure_used"] == Decimal("2.70")


def test_durability_and_freshness_defaults_on_gunicorn(
    gunicorn_server, tmp_path, snapshot_rows, presale_body, buyer_with_star
):
    """The ledger file is in WAL mode (``synchronous`` is per connection: the app's own
    connections are checked in test_freshness.py); once the snapshot in force is older than
    max_snapshot_age_s (here: a stale one published meanwhile and picked up by the watcher),
    /readyz fails and decisions decline risk_service_degraded (200) in every worker."""
    import sqlite3
    import time
    from datetime import UTC, datetime, timedelta

    from serving.publish.snapshot import FileWriter
    from tests.serving.conftest import SIGNALS

    ids, X = snapshot_rows
    path = tmp_path / "fresh" / "snapshot.parquet"

    def publish(published_at: str | None) -> None:
        writer = FileWriter(path, SIGNALS, "2025-06-01T00:00:00+00:00", published_at=published_at)
        writer.append(ids, X)
        writer.commit()

    publish(None)  # now
    url = gunicorn_server(workers=2, snapshot=str(path), max_snapshot_age_s=3600, watch_interval_s=0.5)
    buyer = buyer_with_star(5)
    assert _post(url, "/v1/decisions", presale_body(buyer, 500, 50))[2]["decision"] == "approve"
    with sqlite3.connect(tmp_path / "gunicorn.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    time.sleep(1.1)  # a distinct file mtime
    publish((datetime.now(UTC) - timedelta(hours=2)).isoformat())
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/readyz", timeout=10)
        except urllib.error.HTTPError as error:
            assert error.code == 503 and "old" in json.loads(error.read())["checks"]["snapshot"]
            break
        assert time.monotonic() < deadline, "/readyz kept answering 200 on a stale snapshot"
        time.sleep(0.2)
    streak = 0  # until both workers' watchers have loaded it: then every answer is a degraded decline
    while streak < 8:
        status, _, answer = _post(url, "/v1/decisions", presale_body(buyer, 500, 50))
        assert status == 200
        degraded = [d["code"] for d in answer["declines"]] == ["risk_service_degraded"]
        assert degraded or answer["decision"] == "approve", answer
        streak = streak + 1 if degraded else 0
        assert time.monotonic() < deadline, "a worker kept deciding on the stale snapshot"
