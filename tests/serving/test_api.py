"""The HTTP API through the Flask test client, on a real tiny rating model and a file snapshot."""

from __future__ import annotations

import json

import pytest

from .conftest import TEST_POLICY_VERSION, held_exposure


def test_health_routes_are_open(app):
    bare = app.test_client()
    assert bare.get("/healthz").status_code == 200
    ready = bare.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"model": "ok", "snapshot": "ok", "policy": "ok", "database": "ok"}
    assert bare.get("/metrics").status_code == 200
    doc = bare.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert "/v1/decisions" in doc["paths"]
    body = doc["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    presale = doc["components"]["schemas"][
        body["discriminator"]["mapping"]["presale_ship_before_balance"].split("/")[-1]
    ]
    number, text = presale["properties"]["order"]["properties"]["amount"]["anyOf"]
    assert number["exclusiveMinimum"] == 0 and text["type"] == "string"


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
def test_v1_needs_an_api_key(app, presale_body, key):
    client = app.test_client()
    headers = {} if key is None else {"X-API-Key": key}
    for method, path in [("post", "/v1/decisions"), ("post", "/v1/outcomes"), ("get", "/v1/model")]:
        response = getattr(client, method)(path, json=presale_body(5), headers=headers)
        assert response.status_code == 401
        assert response.json["code"] == "unauthorized"
    assert client.get("/v1/buyers/5/rating", headers=headers).status_code == 401


def test_approve_presale(client, presale_body, buyer_with_star):
    buyer = buyer_with_star(5)
    response = client.post("/v1/decisions", json=presale_body(buyer, 500))
    assert response.status_code == 200
    d = response.json
    assert d["decision"] == "approve", d
    assert d["star"] == 5 and 350 <= d["score"] <= 950 and 0 < d["p_bad"] < 1
    assert d["declines"] == []
    assert d["limits"]["exposure_used"] == 0
    assert d["limits"]["exposure_requested"] == pytest.approx(450)
    assert len(d["reasons"]) <= 4 and all(r["contribution"] > 0 for r in d["reasons"])
    assert d["model_version"] and d["policy_version"] == TEST_POLICY_VERSION
    assert d["decision_id"] and d["signals_as_of"] == "2025-06-01T00:00:00+00:00"


def test_low_star_declined_with_reasons(client, presale_body, buyer_with_star):
    d = client.post("/v1/decisions", json=presale_body(buyer_with_star(1), 500)).json
    assert d["decision"] == "decline"
    assert [x["code"] for x in d["declines"]] == ["stars_below_minimum"]
    assert d["reasons"], "a declined buyer is told which signals raised the risk"


def test_hard_decline_and_flag(client, presale_body, refund_body, ids):
    d = client.post("/v1/decisions", json=presale_body(ids["unpaid"], 100)).json
    assert "unpaid_balance_365d" in [x["code"] for x in d["declines"]]
    d = client.post("/v1/decisions", json=refund_body(ids["fraud"], 20)).json
    assert "confirmed_fraud" in [x["code"] for x in d["declines"]]
    d = client.post("/v1/decisions", json=presale_body(ids["reviewer"], 100)).json
    assert [f["code"] for f in d["flags"]] == ["suspected_malicious_reviewer"]


def test_unknown_buyer_is_a_thin_file_decline(client, presale_body, ids):
    response = client.post("/v1/decisions", json=presale_body(ids["unknown"]))
    assert response.status_code == 200
    d = response.json
    assert d["decision"] == "decline" and d["star"] is None
    assert [x["code"] for x in d["declines"]] == ["thin_file"]
    assert d["decision_id"], "thin-file declines are logged too"


def test_exposure_reserved_and_released_by_outcome(client, presale_body, buyer_with_star):
    buyer = buyer_with_star(3)  # exposure limit 1500 at 3 stars (tests/serving/policy.yaml)
    first = client.post("/v1/decisions", json=presale_body(buyer, 1000, order_id=11)).json
    assert first["decision"] == "approve", first
    second = client.post("/v1/decisions", json=presale_body(buyer, 1000, order_id=12)).json
    assert [x["code"] for x in second["declines"]] == ["exposure_limit_exceeded"]
    assert second["limits"]["exposure_used"] == pytest.approx(900)
    outcome = {"outcome_id": "o-1", "kind": "balance_paid", "buyer_id": buyer, "order_id": 11, "amount": 900}
    released = client.post("/v1/outcomes", json=outcome)
    assert released.status_code == 200
    assert released.json == {
        "outcome_id": "o-1",
        "kind": "balance_paid",
        "released": pytest.approx(900),
        "replayed": False,
    }
    assert client.post("/v1/outcomes", json=outcome).json["replayed"] is True
    third = client.post("/v1/decisions", json=presale_body(buyer, 1000, order_id=12)).json
    assert third["decision"] == "approve", third


def test_redeciding_the_same_order_replaces_its_reservation(app, client, presale_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=1)
    for _ in range(3):  # new request ids, same order: the order's balance is held once
        d = client.post("/v1/decisions", json=presale_body(buyer, 1000, order_id=21)).json
        assert d["decision"] == "approve", d
        assert d["limits"]["exposure_used"] == 0  # what the buyer holds besides this order
        assert held_exposure(app, buyer) == 900_00, "the ledger holds the order's balance once"


def test_fast_refund_quota(client, refund_body, buyer_with_star):
    buyer = buyer_with_star(3, nth=2)  # 2 fast refunds per 30 days at 3 stars
    got = [client.post("/v1/decisions", json=refund_body(buyer, 50, refund_id=i)).json for i in range(3)]
    assert [d["decision"] for d in got] == ["approve", "approve", "decline"]
    assert [x["code"] for x in got[2]["declines"]] == ["quota_count_exceeded"]
    returned = {"outcome_id": "g-1", "kind": "goods_returned", "buyer_id": buyer, "refund_id": 0}
    assert client.post("/v1/outcomes", json=returned).json["released"] == pytest.approx(50)
    again = client.post("/v1/decisions", json=refund_body(buyer, 50, refund_id=9)).json
    assert [x["code"] for x in again["declines"]] == ["quota_count_exceeded"], (
        "quotas count grants, not open ones"
    )


def test_decision_row_holds_inputs_outputs_versions_latency(app, client, presale_body, buyer_with_star):
    body = presale_body(buyer_with_star(4), 800)
    out = client.post("/v1/decisions", json=body).json
    from sqlalchemy import select

    from serving.ledger.tables import DECISIONS

    with app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        row = conn.execute(select(DECISIONS).where(DECISIONS.c.request_id == body["request_id"])).one()
    assert row.inputs == body and row.outputs == out
    assert row.policy_version == TEST_POLICY_VERSION and row.model_version == out["model_version"]
    assert row.latency_ms > 0 and row.star == out["star"] and row.decision == out["decision"]


def test_buyer_rating_route(client, buyer_with_star, ids):
    d = client.get(f"/v1/buyers/{buyer_with_star(2)}/rating").json
    assert d["rated"] is True and d["star"] == 2 and d["reasons"]
    assert set(d["reasons"][0]) == {"code", "text", "contribution"}
    unknown = client.get(f"/v1/buyers/{ids['unknown']}/rating")
    assert unknown.status_code == 200
    assert unknown.json["rated"] is False and unknown.json["reason"]["code"] == "thin_file"


def test_model_route_reports_versions(client, model_uri):
    d = client.get("/v1/model").json
    assert d["model"]["uri"] == model_uri and d["model"]["n_signals"] == 12 and d["model"]["error"] is None
    assert d["policy"]["version"] == TEST_POLICY_VERSION
    assert d["snapshot"]["kind"] == "file" and d["snapshot"]["n_buyers"] == 3000


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("request_id"), "request_id"),
        (lambda b: b.update(service="ship_now"), "service"),
        (lambda b: b.update(buyer_id="12"), "buyer_id"),
        (lambda b: b.update(buyer_id=True), "buyer_id"),
        (lambda b: b.update(buyer_id=-1), "buyer_id"),
        (lambda b: b.update(buyer_id=2**64), "buyer_id"),
        (lambda b: b["order"].update(amount=-5), "order.amount"),
        (lambda b: b["order"].update(amount=0), "order.amount"),
        (lambda b: b["order"].update(amount=1e12), "order.amount"),
        (lambda b: b["order"].update(amount="1OO"), "order.amount"),
        (lambda b: b["order"].update(amount=100.001), "order.amount"),
        (lambda b: b["order"].update(deposit_amount=600), "order.deposit_amount"),
        (lambda b: b["order"].update(currency="USD"), "order.currency"),
        (lambda b: b["order"].update(category="cars"), "order.category"),
        (lambda b: b["order"].pop("order_id"), "order.order_id"),
        (lambda b: b["order"].update(coupon=1), "order.coupon"),
        (lambda b: b.update(order=[1, 2]), "order"),
        (lambda b: b.pop("order"), "order"),
        (lambda b: b.update(refund={}), "refund"),
        (lambda b: b.update(extra=1), "extra"),
        (lambda b: b.update(request_id="x" * 129), "request_id"),
        (lambda b: b.update(request_id="a\x00b"), "request_id"),
    ],
)
def test_bad_decision_bodies_are_400_naming_the_field(client, presale_body, mutate, field):
    body = presale_body(5, 500)
    mutate(body)
    response = client.post("/v1/decisions", json=body)
    assert response.status_code == 400, response.json
    assert response.json["field"] == field, response.json


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"[]", b"null", b"\xff\xfe", b"[" * 10000, b'"text"', b"1e400"],
    ids=["empty", "open-brace", "text", "list", "null", "bad-utf8", "deep-nesting", "string", "huge-number"],
)
def test_malformed_json_is_400(client, raw):
    response = client.post("/v1/decisions", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json["field"] == "body"


def test_nan_amount_is_400(client, presale_body):
    body = json.dumps(presale_body(5, 500)).replace('"amount": 500', '"amount": NaN', 1)
    assert "NaN" in body
    response = client.post("/v1/decisions", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["field"] == "order.amount"


def test_oversized_body_is_413(client):
    assert client.post("/v1/decisions", data=b"x" * 20000, content_type="application/json").status_code == 413


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"outcome_id": "o", "kind": "balance_paid", "buyer_id": 1}, "order_id"),
        (
            {"outcome_id": "o", "kind": "balance_paid", "buyer_id": 1, "order_id": 1, "refund_id": 2},
            "refund_id",
        ),
        ({"outcome_id": "o", "kind": "paid", "buyer_id": 1, "order_id": 1}, "kind"),
        (
            {"outcome_id": "o", "kind": "goods_returned", "buyer_id": 1, "refund_id": 1, "occurred_at": "x"},
            "occurred_at",
        ),
    ],
)
def test_bad_outcomes_are_400(client, body, field):
    response = client.post("/v1/outcomes", json=body)
    assert response.status_code == 400 and response.json["field"] == field


def test_unknown_routes_and_methods_are_json(client):
    assert client.get("/v1/nothing").status_code == 404
    response = client.get("/v1/decisions")
    assert response.status_code == 405 and response.json["code"] == "method_not_allowed"


def test_metrics_count_decisions(app, client, presale_body, buyer_with_star):
    client.post("/v1/decisions", json=presale_body(buyer_with_star(5), 100))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert (
        'buyer_trust_decisions_total{decision="approve",reason="none",service="presale_ship_before_balance"} 1.0'
        in text
    )
    assert 'buyer_trust_request_seconds_bucket{le="+Inf",route="/v1/decisions"} 1.0' in text
    assert "buyer_trust_info{" in text
