"""Review screening over HTTP: POST /v1/reviews/assess, its log and POST /v1/reviews/outcomes."""

from __future__ import annotations

import json

import pytest
import yaml
from sqlalchemy import select

from serving.ledger.tables import REVIEW_ASSESSMENTS, REVIEW_OUTCOMES
from serving.policy import ReviewPolicy, load_policy
from serving.reviews import HOLD, PUBLISH, recommend

from .conftest import UNKNOWN_BUYER

_counter = iter(range(10**6))


def _review_body(buyer_id: int, rating: int = 1, text_length: int = 300, photos: int = 1, **over) -> dict:
    n = next(_counter)
    review = {
        "review_id": 900_000 + n,
        "order_id": 800_000 + n,
        "rating": rating,
        "text_length": text_length,
        "photos": photos,
        "order_amount": "129.90",
        "category": "beauty",
        "delivered_at": "2026-11-30T08:00:00Z",
        "posted_at": "2026-12-02T10:00:00Z",
    }
    review |= over.pop("review", {})
    return {"request_id": f"review-{n}", "buyer_id": buyer_id, "review": review} | over


def _policy_with(policy_file, **reviews) -> None:
    doc = yaml.safe_load(policy_file.read_text())
    doc["reviews"] |= reviews
    policy_file.write_text(yaml.safe_dump(doc))


def test_recommendation_follows_the_policy_thresholds() -> None:
    policy = ReviewPolicy(screened_max_rating=2, moderation_capacity=0.1, hold_above=0.4)
    assert recommend(0.4, 1, policy) == HOLD and recommend(0.39, 1, policy) == PUBLISH
    assert recommend(0.9, 3, policy) == PUBLISH  # not screened
    assert recommend(None, 1, policy) == PUBLISH and recommend(0.9, 1, None) == PUBLISH


def test_the_policy_declares_review_screening(policy_file) -> None:
    reviews = load_policy(policy_file).reviews
    assert reviews is not None and 0 < reviews.moderation_capacity <= 1 and 0 <= reviews.hold_above <= 1


@pytest.mark.parametrize(
    ("reviews", "key"),
    [({"hold_above": 1.5}, "reviews.hold_above"), ({"moderation_capacity": 0}, "reviews.moderation_capacity"),
     ({"screened_max_rating": 6}, "reviews.screened_max_rating"), ({"typo": 1}, "reviews.typo")],
)  # fmt: skip
def test_bad_review_policy_names_the_key(policy_file, reviews, key) -> None:
    from serving.policy import PolicyError

    _policy_with(policy_file, **reviews)
    with pytest.raises(PolicyError, match=key.replace(".", r"\.")):
        load_policy(policy_file)


def test_assessment_scores_recommends_explains_and_logs(app, client, policy_file) -> None:
    body = _review_body(7)
    response = client.post("/v1/reviews/assess", json=body)
    assert response.status_code == 200, response.json
    d = response.json
    assert 0 < d["p_removed"] < 1 and d["action"] in (PUBLISH, HOLD) and d["unscored"] is None
    assert d["action"] == (HOLD if d["p_removed"] >= d["hold_above"] else PUBLISH)
    assert 1 <= len(d["reasons"]) <= 4 and all(r["contribution"] > 0 for r in d["reasons"])
    assert d["model_version"] and d["policy_version"] and d["signals_as_of"]
    ledger = app.extensions["buyer_trust"].ledger
    with ledger.engine.connect() as conn:
        row = conn.execute(select(REVIEW_ASSESSMENTS)).one()
    assert row.review_id == body["review"]["review_id"] and row.action == d["action"]
    assert row.p_removed == d["p_removed"] and row.policy_version == d["policy_version"]
    assert (json.loads(row.inputs) if isinstance(row.inputs, str) else row.inputs) == body
    assert row.latency_ms > 0


def test_the_review_itself_moves_the_probability(client) -> None:
    long_with_photos = client.post("/v1/reviews/assess", json=_review_body(7, 1, 400, 2)).json
    short_bare = client.post("/v1/reviews/assess", json=_review_body(7, 1, 5, 0)).json
    assert long_with_photos["p_removed"] > short_bare["p_removed"]


def test_threshold_from_the_policy_decides_the_action(client, policy_file) -> None:
    _policy_with(policy_file, hold_above=0.0)
    client.post("/v1/admin/reload", json={"parts": ["policy"]})
    assert client.post("/v1/reviews/assess", json=_review_body(7)).json["action"] == HOLD
    positive = client.post("/v1/reviews/assess", json=_review_body(7, rating=5)).json
    assert positive["action"] == PUBLISH and positive["unscored"]["code"] == "not_screened"
    _policy_with(policy_file, hold_above=1.0)
    client.post("/v1/admin/reload", json={"parts": ["policy"]})
    assert client.post("/v1/reviews/assess", json=_review_body(7)).json["action"] == PUBLISH


def test_unknown_writer_is_published_unscored(client) -> None:
    d = client.post("/v1/reviews/assess", json=_review_body(UNKNOWN_BUYER)).json
    assert d["p_removed"] is None and d["action"] == PUBLISH and d["unscored"]["code"] == "thin_file"


def test_repeated_request_id_replays_or_refuses(client) -> None:
    body = _review_body(7)
    first = client.post("/v1/reviews/assess", json=body)
    again = client.post("/v1/reviews/assess", json=body)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json | {"replayed": True}
    other = client.post("/v1/reviews/assess", json=body | {"buyer_id": 8})
    assert other.status_code == 422 and other.json["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["review"].update(rating=0), "review.rating"),
        (lambda b: b["review"].update(rating=6), "review.rating"),
        (lambda b: b["review"].pop("text_length"), "review.text_length"),
        (lambda b: b["review"].update(category="toys"), "review.category"),
        (lambda b: b["review"].update(order_amount="1.234"), "review.order_amount"),
        (lambda b: b["review"].update(currency="USD"), "review.currency"),
        (lambda b: b["review"].update(delivered_at="2026-12-03T00:00:00Z"), "review.delivered_at"),
        (lambda b: b["review"].update(extra=1), "review.extra"),
        (lambda b: b.pop("request_id"), "request_id"),
    ],
)
def test_bad_assessment_bodies_are_400_naming_the_field(client, mutate, field) -> None:
    body = _review_body(7)
    mutate(body)
    response = client.post("/v1/reviews/assess", json=body)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json" and response.json["field"] == field


def test_review_routes_need_their_scopes(app) -> None:
    bare = app.test_client()
    assert bare.post("/v1/reviews/assess", json=_review_body(7)).status_code == 401
    assert bare.post("/v1/reviews/outcomes", json={}).status_code == 401


def test_outcomes_are_checked_against_the_log_and_idempotent(app, client) -> None:
    body = _review_body(7)
    client.post("/v1/reviews/assess", json=body)
    review_id = body["review"]["review_id"]
    outcome = {"outcome_id": "o-1", "kind": "removed_as_malicious", "buyer_id": 7, "review_id": review_id}
    first = client.post("/v1/reviews/outcomes", json=outcome)
    assert first.status_code == 200 and first.json["replayed"] is False
    assert client.post("/v1/reviews/outcomes", json=outcome).json["replayed"] is True
    reused = client.post("/v1/reviews/outcomes", json=outcome | {"kind": "review_upheld"})
    assert reused.status_code == 422
    unknown = client.post("/v1/reviews/outcomes", json=outcome | {"outcome_id": "o-2", "review_id": 1})
    assert unknown.status_code == 404 and unknown.json["code"] == "review_unknown"
    other = client.post("/v1/reviews/outcomes", json=outcome | {"outcome_id": "o-3", "buyer_id": 8})
    assert other.status_code == 409
    bad = client.post("/v1/reviews/outcomes", json=outcome | {"outcome_id": "o-4", "kind": "deleted"})
    assert bad.status_code == 400 and bad.json["field"] == "kind"
    upheld = client.post(
        "/v1/reviews/outcomes", json=outcome | {"outcome_id": "o-5", "kind": "review_upheld"}
    )
    assert upheld.status_code == 200
    ledger = app.extensions["buyer_trust"].ledger
    with ledger.engine.connect() as conn:
        kinds = sorted(r.kind for r in conn.execute(select(REVIEW_OUTCOMES)))
    assert kinds == ["removed_as_malicious", "review_upheld"]


def test_buyer_rating_carries_the_reviewer_risk(client, ids) -> None:
    rated = client.get("/v1/buyers/7/rating").json
    assert 0 < rated["reviewer_risk"] < 1
    assert client.get(f"/v1/buyers/{UNKNOWN_BUYER}/rating").json["reviewer_risk"] is None


def test_assessment_and_outcome_on_both_databases(ledger_app) -> None:
    from .conftest import API_KEY

    client = ledger_app().test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    body = _review_body(9)
    first = client.post("/v1/reviews/assess", json=body)
    assert first.status_code == 200 and first.json["p_removed"] is not None
    assert client.post("/v1/reviews/assess", json=body).json["replayed"] is True
    outcome = {
        "outcome_id": "o-db",
        "kind": "review_upheld",
        "buyer_id": 9,
        "review_id": body["review"]["review_id"],
    }
    assert client.post("/v1/reviews/outcomes", json=outcome).status_code == 200


def test_scoring_failure_publishes_unscored_and_is_logged(app, client, monkeypatch) -> None:
    head = app.extensions["buyer_trust"].runtime.live.rating.model.review_head

    def fail(*_args):
        raise RuntimeError("booster gone")

    monkeypatch.setattr(head, "explain", fail)
    response = client.post("/v1/reviews/assess", json=_review_body(7))
    assert response.status_code == 200
    d = response.json
    assert (
        d["p_removed"] is None and d["action"] == PUBLISH and d["unscored"]["code"] == "risk_service_degraded"
    )
    with app.extensions["buyer_trust"].ledger.engine.connect() as conn:
        assert conn.execute(select(REVIEW_ASSESSMENTS.c.action)).scalar_one() == PUBLISH


def test_the_volume_of_activity_is_never_a_review_reason(app, client, monkeypatch) -> None:
    """A hold cites what raised the review's risk, never how much its writer does (as decisions): the
    rating's ``never_reasons`` are masked even where they raise the review's log-odds most."""
    model = app.extensions["buyer_trust"].runtime.live.rating.model
    head = model.review_head
    never = frozenset(head.signal_names[:2])  # the tests' model has no catalogue: declare two
    monkeypatch.setattr(model, "never_reasons", lambda: never)
    explain = head.explain

    def volume_first(signals, context, *args):
        logit, contrib, names = explain(signals, context, *args)
        contrib = contrib.copy()
        for i, name in enumerate(names):  # the declared volume signals the strongest reasons
            if name in never:
                contrib[i] = 10.0 + i
        return logit, contrib, names

    monkeypatch.setattr(head, "explain", volume_first)
    d = client.post("/v1/reviews/assess", json=_review_body(7)).json
    assert d["reasons"] and not {r["code"] for r in d["reasons"]} & never
    monkeypatch.setattr(model, "never_reasons", lambda: frozenset())  # the control: cited when not declared
    d = client.post("/v1/reviews/assess", json=_review_body(7)).json
    assert {r["code"] for r in d["reasons"][:2]} == never
