"""Degraded mode: database down, model missing, snapshot missing or mismatched, scoring failing.

In each case checkout gets a 200 decline with an explicit reason, and ``/readyz`` says why.
"""

from __future__ import annotations

import numpy as np
import pytest

from serving.publish.snapshot import FileWriter

from .conftest import held_exposure

KEY = {"X-API-Key": "test-key"}


def codes(answer: dict) -> list[str]:
    return [d["code"] for d in answer["declines"]]


def test_database_unreachable_declines_degraded(make_app, config, presale_body, buyer_with_star, caplog):
    app = make_app(
        config | {"database_url": "postgresql://postgres@127.0.0.1:1/none", "db_busy_timeout_ms": 1000}
    )
    client = app.test_client()
    response = client.post("/v1/decisions", json=presale_body(buyer_with_star(5)), headers=KEY)
    assert response.status_code == 200
    answer = response.json
    assert answer["decision"] == "decline" and codes(answer) == ["risk_service_degraded"]
    assert answer["decision_id"] is None
    assert "ledger unavailable" in caplog.text
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["database"].startswith("unreachable")
    outcome = {"outcome_id": "o", "kind": "balance_paid", "buyer_id": 1, "order_id": 1}
    assert client.post("/v1/outcomes", json=outcome, headers=KEY).status_code == 503
    assert 'buyer_trust_degraded_total{cause="database"' in client.get("/metrics").get_data(as_text=True)


def test_database_lost_after_start(app, client, presale_body, buyer_with_star, tmp_path):
    assert client.post("/v1/decisions", json=presale_body(buyer_with_star(5))).json["decision"] == "approve"
    ledger = app.extensions["buyer_trust"].ledger
    (tmp_path / "serving.db").unlink()
    (tmp_path / "serving.db").mkdir()  # the file is now a directory: every connection fails
    ledger.engine.dispose()
    answer = client.post("/v1/decisions", json=presale_body(buyer_with_star(5), order_id=2)).json
    assert codes(answer) == ["risk_service_degraded"]


def test_model_missing_declines_degraded_and_is_logged(
    make_app, config, tmp_path, presale_body, buyer_with_star
):
    app = make_app(config | {"model_uri": str(tmp_path / "no-model")})
    client = app.test_client()
    answer = client.post("/v1/decisions", json=presale_body(buyer_with_star(5)), headers=KEY).json
    assert answer["decision"] == "decline" and codes(answer) == ["risk_service_degraded"]
    assert answer["decision_id"], "a degraded decline is still logged when the database is up"
    ready = client.get("/readyz").json
    assert ready["ready"] is False and ready["checks"]["model"] != "ok"
    assert client.get("/v1/model", headers=KEY).json["model"]["error"]
    rating = client.get(f"/v1/buyers/{buyer_with_star(5)}/rating", headers=KEY)
    assert rating.status_code == 200 and rating.json["reason"]["code"] == "risk_service_degraded"


def test_no_snapshot_is_a_thin_file_decline(make_app, config, tmp_path, presale_body, buyer_with_star):
    app = make_app(config | {"snapshot": str(tmp_path / "absent.parquet")})
    client = app.test_client()
    answer = client.post("/v1/decisions", json=presale_body(buyer_with_star(5)), headers=KEY).json
    assert codes(answer) == ["thin_file"]
    assert client.get("/readyz").status_code == 503


def test_snapshot_without_the_models_signals_declines_degraded(
    make_app, config, tmp_path, presale_body, snapshot_rows
):
    path = tmp_path / "other.parquet"
    writer = FileWriter(path, [f"x{i}" for i in range(3)], "2025-06-01T00:00:00+00:00")
    writer.append(snapshot_rows[0][:10], snapshot_rows[1][:10, :3])
    writer.commit()
    app = make_app(config | {"snapshot": str(path)})
    client = app.test_client()
    answer = client.post("/v1/decisions", json=presale_body(5), headers=KEY).json
    assert codes(answer) == ["risk_service_degraded"]
    assert "lacks" in client.get("/readyz").json["checks"]["snapshot"]


def test_redis_unreachable_declines_degraded(make_app, config, presale_body):
    app = make_app(config | {"snapshot": "redis://127.0.0.1:1/0"})
    answer = app.test_client().post("/v1/decisions", json=presale_body(5), headers=KEY).json
    assert codes(answer) == ["risk_service_degraded"]


def test_scoring_exception_declines_degraded(client, presale_body, buyer_with_star, monkeypatch):
    from serving.live import Live

    def broken(self, buyer_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(Live, "rate", broken)
    response = client.post("/v1/decisions", json=presale_body(buyer_with_star(5)))
    assert response.status_code == 200 and codes(response.json) == ["risk_service_degraded"]


@pytest.mark.parametrize("failure", ["raises", "not_a_number"])
def test_head_scoring_failure_declines_degraded(
    app, client, presale_body, refund_body, buyer_with_star, monkeypatch, failure
):
    """The rating is fine but pricing the opportunity with the service head fails (an exception, or
    a log-odds that is not a number): 200, a logged degraded decline that holds nothing, counted."""
    from rating.heads import ServiceHead

    def broken(self, signals, context):
        if failure == "raises":
            raise RuntimeError("boom")
        return float("nan"), np.zeros(len(self.signal_names) + len(self.context_names)), []

    monkeypatch.setattr(ServiceHead, "explain", broken)
    buyer = buyer_with_star(5)
    for body in (presale_body(buyer, 500), refund_body(buyer, 50)):
        response = client.post("/v1/decisions", json=body)
        assert response.status_code == 200, response.json
        answer = response.json
        assert answer["decision"] == "decline" and codes(answer) == ["risk_service_degraded"], answer
        assert answer["decision_id"], "the degraded decline is logged"
    assert held_exposure(app, buyer) == 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "buyer_trust_degraded_total{" in metrics
    rating = client.get(f"/v1/buyers/{buyer}/rating")
    assert rating.status_code == 200 and rating.json["rated"] is True, "the rating does not need the head"


def test_a_head_scoring_failure_is_counted_as_the_heads(client, presale_body, buyer_with_star, monkeypatch):
    from rating.heads import ServiceHead

    def broken(self, signals, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(ServiceHead, "explain", broken)
    assert codes(client.post("/v1/decisions", json=presale_body(buyer_with_star(5))).json) == [
        "risk_service_degraded"
    ]
    assert 'buyer_trust_degraded_total{cause="head"} 1.0' in client.get("/metrics").get_data(as_text=True)
