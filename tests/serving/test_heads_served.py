"""The service head scored per request with the request's own context, and the expected-loss allowance."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rating.context import presale_context, refund_context
from rating.heads import LIGHTGBM
from serving.config import ServingConfig
from serving.handle import assess, handle_decision
from serving.http.metrics import Metrics
from serving.ledger.in_memory import MemoryLedger
from serving.live import request_context
from serving.schema import DecisionRequest, Order, Refund, parse_decision
from tests.serving.conftest import API_KEY
from training.heads import context_matrix

ALLOWANCE = {3: 0.02, 4: 0.05, 5: 0.1}


@pytest.fixture(scope="module")
def heads_model_uri(model_uri) -> str:
    return model_uri  # the service tests' model has both heads (conftest.py)


@pytest.fixture
def heads_client(make_app, config, heads_model_uri, tmp_path):
    policy = yaml.safe_load(Path(config["policy_path"]).read_text())
    policy["services"]["presale_ship_before_balance"]["expected_loss_allowance"] = ALLOWANCE
    path = tmp_path / "policy-allowance.yaml"
    path.write_text(yaml.safe_dump(policy))
    app = make_app({**config, "model_uri": heads_model_uri, "policy_path": str(path)})
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    return client


def test_same_buyer_small_presale_approved_large_declined_for_its_expected_loss(
    heads_client, presale_body, buyer_with_star
):
    buyer = buyer_with_star(5)
    small = heads_client.post("/v1/decisions", json=presale_body(buyer, 300, request_id="s", order_id=1)).json
    large = heads_client.post(
        "/v1/decisions", json=presale_body(buyer, 19000, request_id="l", order_id=2)
    ).json
    assert small["star"] == large["star"] == 5
    assert 0 < small["p_loss"] < large["p_loss"] < 1
    for answer, amount in ((small, 300), (large, 19000)):
        balance = amount * 0.9
        assert answer["expected_loss"] == pytest.approx(answer["p_loss"] * balance, abs=0.011)
        allowed = answer["limits"]["expected_loss_allowance"]
        assert allowed == pytest.approx(ALLOWANCE[5] * balance, abs=0.011)  # a share of the money at risk
        over = answer["expected_loss"] > allowed
        assert ("expected_loss_above_allowance" in [d["code"] for d in answer["declines"]]) is over
    assert small["decision"] == "approve" and large["decision"] == "decline"
    assert large["reasons"] and all("code" in r and "text" in r for r in large["reasons"])


def test_a_missing_context_field_is_a_400_naming_it(heads_client, presale_body, refund_body, buyer_with_star):
    body = presale_body(buyer_with_star(4), 300)
    del body["order"]["balance_due_at"]
    answer = heads_client.post("/v1/decisions", json=body)
    assert answer.status_code == 400 and answer.json["field"] == "order.balance_due_at"
    body = refund_body(buyer_with_star(4), 30)
    del body["refund"]["ordered_at"]
    answer = heads_client.post("/v1/decisions", json=body)
    assert answer.status_code == 400 and answer.json["field"] == "refund.ordered_at"


def test_refunds_are_priced_and_held_to_the_policy_allowance(heads_client, refund_body, buyer_with_star):
    answer = heads_client.post("/v1/decisions", json=refund_body(buyer_with_star(5), 30)).json
    limits = answer["limits"]
    assert 0 < answer["p_loss"] < 1 and answer["expected_loss"] == pytest.approx(
        answer["p_loss"] * 30, abs=0.011
    )
    share = limits["expected_loss_allowance_share"]  # the test policy's fast-refund allowance
    assert limits["expected_loss_allowance"] == pytest.approx(share * 30, abs=0.011)  # of the 30 refunded
    over = answer["expected_loss"] > limits["expected_loss_allowance"]
    assert ("expected_loss_above_allowance" in [d["code"] for d in answer["declines"]]) is over


def test_request_context_equals_the_training_context():
    now = pd.Timestamp("2025-06-01T00:00:00").to_pydatetime()
    due = pd.Timestamp("2025-06-18T00:00:00").to_pydatetime()
    ordered = pd.Timestamp("2025-05-20T12:00:00").to_pydatetime()
    presale = DecisionRequest(
        "presale_ship_before_balance", "r", 1, order=Order(7, 123456, "CNY", "electronics", 12345, due)
    )
    rows = pd.DataFrame(
        {
            "amount": [1234.56],
            "deposit": [123.45],
            "category": ["electronics"],
            "due_in_days": [17.0],
            "shipped": [True],
        }
    )
    np.testing.assert_allclose(
        request_context(presale, now, 2), context_matrix("presale_ship_before_balance", rows)
    )
    np.testing.assert_allclose(
        request_context(presale, now, 2), presale_context([1234.56], [123.45], ["electronics"], [17.0], [1.0])
    )
    refund = DecisionRequest(
        "fast_refund", "r", 1,
        refund=Refund(8, 7, 5000, "CNY", "damaged", "return_and_refund", 2, 20000, "apparel", ordered),
    )  # fmt: skip
    rows = pd.DataFrame(
        {"amount": [50.0], "order_amount": [200.0], "kind": ["return_and_refund"], "reason": ["damaged"],
         "photos": [2.0], "category": ["apparel"], "order_age_days": [11.5]}
    )  # fmt: skip
    np.testing.assert_allclose(request_context(refund, now, 2), context_matrix("fast_refund", rows))
    np.testing.assert_allclose(
        request_context(refund, now, 2),
        refund_context([50.0], [200.0], ["return_and_refund"], ["damaged"], [2], ["apparel"], [11.5]),
    )


def test_answers_cite_lightgbm_treeshap_and_price_as_before(
    heads_client, presale_body, refund_body, buyer_with_star
):
    """Every answer's reasons are what LightGBM's own TreeSHAP ranks (the per-leaf tables give the
    same attribution), and ``p_loss`` and the expected loss are what its contributions summed to."""
    live = heads_client.application.extensions["buyer_trust"].runtime.live
    config, ledger, metrics = ServingConfig(watch_interval_s=0), MemoryLedger(), Metrics()
    now = datetime(2026, 12, 7, 12)
    bodies = [
        presale_body(buyer_with_star(star, nth), amount, request_id=f"p{star}{nth}{amount}", order_id=i)
        for i, (star, nth, amount) in enumerate(
            (s, n, a) for s in (4, 5) for n in range(3) for a in (300, 4000, 19000)
        )
    ] + [
        refund_body(buyer_with_star(star, nth), amount, request_id=f"r{star}{nth}{amount}", refund_id=i)
        for i, (star, nth, amount) in enumerate(
            (s, n, a) for s in (4, 5) for n in range(3) for a in (30, 900)
        )
    ]
    seen, cited = set(), 0
    for body in bodies:
        answer = handle_decision(body, live, ledger, config, metrics, 0.0, "k", now).body
        request = parse_decision(body, config.max_amount, live.policy.currency, live.policy.decimals)
        rating = assess(request, live, now).rating
        lightgbm = live.head_risk(request, rating, now, LIGHTGBM)
        assert answer["p_loss"] == round(lightgbm.p_loss, 6)
        assert answer["expected_loss"] * 100 == pytest.approx(lightgbm.expected_loss, abs=1e-6)
        expected = lightgbm.reasons or rating.reasons  # nothing raised the head's risk: the rating's
        assert [r["code"] for r in answer["reasons"]] == [f.code for f in expected][: live.policy.max_reasons]
        seen.add(answer["decision"])
        cited += bool(lightgbm.reasons)
    assert seen == {"approve", "decline"} and cited > len(bodies) // 2
