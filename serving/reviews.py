"""Review screening: is a review being posted malicious? No HTTP here (``serving.http.api`` routes to it).

``POST /v1/reviews/assess`` takes the review (rating, text length, photos, the order's amount,
category and delivery) and its writer, scores the artifact's review head (``rating.review``) on the
writer's snapshot signals and the review's context, and recommends ``publish`` or
``hold_for_moderation`` by the policy's ``reviews`` thresholds, with up to ``max_reasons`` reasons.
The probability is the head's: that the review is removed as malicious (a seller reports it and
moderation confirms; ``docs/decisions.md`` says why that and not malice itself). A writer who
cannot be rated, a scoring failure, a model without a review head or a policy without a
``reviews`` section is answered ``publish`` (no probability in the first three) with the reason:
screening never silences a review it cannot judge. Every answer is logged in ``review_assessments`` with its
inputs and versions, idempotent on ``(calling key, request_id)`` as decisions are
(``serving.ledger.idempotency``); ``POST /v1/reviews/outcomes`` records what moderation found
(``removed_as_malicious`` or ``review_upheld``) about an assessed review, for the next training.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from features.contract import CATEGORIES
from rating.reasons import top_reasons
from rating.review import REVIEW_CONTEXT_TEXT, reference_context, review_context
from serving.decide import DEGRADED
from serving.ledger.idempotency import Refusal, fingerprint, key_reused
from serving.ledger.tables import REVIEW_ASSESSMENTS, REVIEW_OUTCOME_KINDS, REVIEW_OUTCOMES, utcnow
from serving.live import Live, Unrated
from serving.money import json_text
from serving.policy import ReviewPolicy
from serving.schema import AMOUNT, CURRENCY, MAX_ID, Field, RequestError, check_object

log = logging.getLogger(__name__)
PUBLISH, HOLD = "publish", "hold_for_moderation"
ACTIONS = (PUBLISH, HOLD)
NOT_SCREENED = "not_screened"
NO_REVIEW_HEAD = "review_head_unavailable"
REVIEW_UNKNOWN = "review_unknown"
OTHER_BUYER = "review_of_other_buyer"
DAY_S = 86400.0


def _id(name: str, description: str) -> Field:
    return Field(name, "integer", description, minimum=0, maximum=MAX_ID)


REVIEW = Field(
    "review",
    "object",
    "The review being posted.",
    fields=(
        _id("review_id", "Review id."),
        _id("order_id", "The reviewed order's id."),
        Field("rating", "integer", "Stars given, 1-5.", minimum=1, maximum=5),
        Field("text_length", "integer", "Characters of review text (0: none).", minimum=0, maximum=100_000),
        Field("photos", "integer", "Photos attached to the review.", minimum=0, maximum=100),
        Field(
            "order_amount",
            "number",
            "The reviewed order's amount, in `currency` units (a JSON number or a decimal string).",
            minimum=0,
            exclusive_minimum=True,
            maximum=AMOUNT,
        ),
        CURRENCY,
        Field("category", "string", "The reviewed order's product category.", enum=CATEGORIES),
        Field(
            "delivered_at",
            "datetime",
            "When the order was delivered, ISO 8601 (unknown: omit).",
            required=False,
        ),  # fmt: skip
        Field(
            "posted_at", "datetime", "When the review was posted, ISO 8601 (default: now).", required=False
        ),
    ),
)
ASSESS_BODY = Field(
    "body",
    "object",
    "A review to screen as it is posted.",
    fields=(
        Field(
            "request_id",
            "string",
            "Caller's idempotency key: a repeat returns the stored answer.",
            max_length=128,
        ),  # fmt: skip
        _id("buyer_id", "The review's writer."),
        REVIEW,
    ),
)
OUTCOME_BODY = Field(
    "body",
    "object",
    "What moderation found about an assessed review.",
    fields=(
        Field("outcome_id", "string", "Caller's idempotency key.", max_length=128),
        Field("kind", "string", "Removed as malicious, or upheld (kept).", enum=REVIEW_OUTCOME_KINDS),
        _id("buyer_id", "The review's writer."),
        _id("review_id", "The assessed review's id."),
        Field("occurred_at", "datetime", "When moderation decided, ISO 8601 (default: now).", required=False),
    ),
)


@dataclass(frozen=True)
class ReviewRequest:
    """A validated assessment request (``order_amount`` in minor units, instants naive UTC)."""

    request_id: str
    buyer_id: int
    review_id: int
    order_id: int
    rating: int
    text_length: int
    photos: int
    order_amount: int
    currency: str
    category: str
    delivered_at: datetime | None
    posted_at: datetime | None


@dataclass(frozen=True)
class ReviewOutcome:
    """A validated review outcome."""

    outcome_id: str
    kind: str
    buyer_id: int
    review_id: int
    occurred_at: datetime | None


@dataclass(frozen=True)
class Assessment:
    """The head's view of one review: the probability (None: not scored), the action and why."""

    p_removed: float | None
    action: str
    reasons: tuple[dict[str, Any], ...]
    unscored: dict[str, str] | None = None


def _object(
    body: Any, spec: Field, max_amount: float, decimals: int, currency: str | None = None
) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise RequestError("body", "must be a JSON object")
    return check_object(spec, body, "body", max_amount, decimals, currency)


def parse_assessment(body: Any, max_amount: float, currency: str, decimals: int = 2) -> ReviewRequest:
    """Validate a ``POST /v1/reviews/assess`` body.

    Raises:
        RequestError: Naming the first offending field.
    """
    d = _object(body, ASSESS_BODY, max_amount, decimals, currency)
    r = d["review"]
    posted, delivered = r.get("posted_at"), r.get("delivered_at")
    if posted is not None and delivered is not None and delivered > posted:
        raise RequestError("review.delivered_at", "must not be after review.posted_at")
    return ReviewRequest(
        d["request_id"], d["buyer_id"], r["review_id"], r["order_id"], r["rating"], r["text_length"],
        r["photos"], r["order_amount"], currency, r["category"], delivered, posted,
    )  # fmt: skip


def parse_review_outcome(body: Any, max_amount: float) -> ReviewOutcome:
    """Validate a ``POST /v1/reviews/outcomes`` body.

    Raises:
        RequestError: Naming the first offending field.
    """
    d = _object(body, OUTCOME_BODY, max_amount, 2)
    return ReviewOutcome(d["outcome_id"], d["kind"], d["buyer_id"], d["review_id"], d.get("occurred_at"))


def recommend(p: float | None, rating: int, policy: ReviewPolicy | None) -> str:
    """``hold_for_moderation`` when a screened review's probability reaches the policy's ``hold_above``,
    else ``publish`` (also when there is no probability or no review policy)."""
    if p is None or policy is None or rating > policy.screened_max_rating:
        return PUBLISH
    return HOLD if p >= policy.hold_above else PUBLISH


def _finding(code: str, text: str, contribution: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "text": text}
    if contribution is not None and math.isfinite(contribution):
        out["contribution"] = round(contribution, 6)
    return out


def review_inputs(request: ReviewRequest, now: datetime, decimals: int) -> np.ndarray:
    """The review head's context row (``rating.review``) of one request."""
    posted = request.posted_at or now
    days = (
        float("nan")
        if request.delivered_at is None
        else (posted - request.delivered_at).total_seconds() / DAY_S
    )
    return review_context(
        [request.rating], [request.text_length], [request.photos > 0], [days],
        [request.order_amount / 10.0**decimals], [request.category],
    )  # fmt: skip


def assess(request: ReviewRequest, live: Live, now: datetime) -> Assessment:
    """Score one review and recommend an action (``recommend``); never raises for a scoring failure.

    The reasons are the inputs that raised the head's log-odds most (exact TreeSHAP of the row):
    the writer's signals and the review's own context, never the volume of the writer's activity
    (the rating's ``never_reasons``, as for decisions).
    """
    policy = live.policy
    head = None if live.rating is None else live.rating.model.review_head
    try:
        rating = live.rate(request.buyer_id)
        if head is None or rating.row is None:
            text = "The model in force has no review head; the review is published unscreened."
            return Assessment(None, PUBLISH, (), {"code": NO_REVIEW_HEAD, "text": text})
        x = np.asarray(rating.row, np.float64)
        logit, contrib, names = head.explain(x, review_inputs(request, now, policy.decimals))
        never = live.rating.model.never_reasons()
        if never:
            contrib = np.where(head.never_mask(never), -np.inf, contrib)
    except Unrated as exc:
        return Assessment(None, PUBLISH, (), {"code": exc.code, "text": exc.text})
    except Exception as exc:  # noqa: BLE001 - a scoring failure publishes unscreened, it never raises
        log.exception("review %s: scoring failed", request.review_id)
        return Assessment(
            None, PUBLISH, (), {"code": DEGRADED, "text": f"scoring failed: {type(exc).__name__}"}
        )
    p = 1.0 / (1.0 + math.exp(-logit))
    texts = {**live.head_texts, **REVIEW_CONTEXT_TEXT}
    reasons = tuple(
        _finding(r.code, r.text, r.contribution)
        for r in top_reasons(contrib, names, texts, policy.max_reasons)
    )
    screened = policy.reviews is not None and request.rating <= policy.reviews.screened_max_rating
    unscored = None
    if policy.reviews is not None and not screened:
        unscored = {"code": NOT_SCREENED, "text": "Reviews with this rating are published without screening."}
    return Assessment(p, recommend(p, request.rating, policy.reviews), reasons, unscored)


def reviewer_risk(live: Live, buyer_id: int) -> float | None:
    """The review head's probability for a plain one-star review by this buyer
    (``rating.review.REFERENCE_REVIEW``): the reviewer-risk figure of a merchant page; None when the
    buyer cannot be rated or the model has no review head."""
    head = None if live.rating is None else live.rating.model.review_head
    if head is None:
        return None
    try:
        rating = live.rate(buyer_id)
    except Unrated:
        return None
    if rating.row is None:
        return None
    logit = head.row_logit(np.asarray(rating.row, np.float64), reference_context())
    return round(1.0 / (1.0 + math.exp(-logit)), 6)


def respond(request: ReviewRequest, assessment: Assessment, live: Live, assessment_id: str | None,
            as_of: str | None) -> dict[str, Any]:  # fmt: skip
    """The JSON body of an assessment (also what the log stores as outputs)."""
    policy = live.policy.reviews
    return {
        "assessment_id": assessment_id,
        "request_id": request.request_id,
        "buyer_id": request.buyer_id,
        "review_id": request.review_id,
        "p_removed": None if assessment.p_removed is None else round(assessment.p_removed, 6),
        "action": assessment.action,
        "hold_above": None if policy is None else policy.hold_above,
        "reasons": list(assessment.reasons),
        "unscored": assessment.unscored,
        "model_version": live.model_version,
        "policy_version": live.policy.version,
        "signals_as_of": as_of,
        "replayed": False,
    }


def _stored(conn: Any, table: Any, key_id: str, id_column: str, value: str) -> Any:
    c = table.c
    return conn.execute(
        select(c.outputs if table is REVIEW_ASSESSMENTS else c.kind, c.fingerprint).where(
            c.key_id == key_id, c[id_column] == value
        )
    ).first()


def _replay(stored: Any, request_fingerprint: str, what: str) -> dict[str, Any]:
    if stored.fingerprint != request_fingerprint:
        raise key_reused(what)
    body = json.loads(stored[0]) if isinstance(stored[0], str | bytes) else dict(stored[0])
    return body | {"replayed": True}


def handle_assessment(
    body: Any, live: Live, ledger: Any, max_amount: float, started: float, key_id: str = ""
) -> tuple[dict[str, Any], bool]:
    """Assess one ``POST /v1/reviews/assess`` body and log it.

    Returns:
        ``(answer, replayed)``; a repeated ``request_id`` with the same request returns the stored answer.

    Raises:
        RequestError: The body is invalid (400).
        Refusal: 422 the ``request_id`` was used with another request, 409 the first is in flight.
        Exception: The log is unavailable (nothing was recorded; the caller answers 503).
    """
    policy = live.policy
    request = parse_assessment(body, max_amount, policy.currency, policy.decimals)
    request_fingerprint = fingerprint(request, leave_out=("request_id",))
    now = utcnow()
    assessment = assess(request, live, now)
    as_of = None if live.snapshot is None or assessment.p_removed is None else live.snapshot.meta.as_of
    assessment_id = ledger.new_decision_id()
    out = respond(request, assessment, live, assessment_id, as_of)
    with ledger.claimed(key_id, request.request_id, "request_id", "request_id") as conn:
        stored = _stored(conn, REVIEW_ASSESSMENTS, key_id, "request_id", request.request_id)
        if stored is not None:
            return _replay(stored, request_fingerprint, "request_id"), True
        conn.execute(
            REVIEW_ASSESSMENTS.insert().values(
                assessment_id=assessment_id,
                key_id=key_id,
                request_id=request.request_id,
                fingerprint=request_fingerprint,
                created_at=now,
                buyer_id=request.buyer_id,
                review_id=request.review_id,
                rating=request.rating,
                p_removed=out["p_removed"],
                action=assessment.action,
                model_version=live.model_version,
                policy_version=policy.version,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                inputs=json.loads(json_text(body)),
                outputs=out,
            )
        )
    return out, False


def handle_review_outcome(body: Any, ledger: Any, max_amount: float, key_id: str = "") -> dict[str, Any]:
    """Record one ``POST /v1/reviews/outcomes`` body against the review log.

    Returns:
        ``{"outcome_id", "kind", "review_id", "replayed"}``.

    Raises:
        RequestError: The body is invalid (400).
        Refusal: 404 no assessment of this review, 409 the review was assessed for another buyer
            or the first request with this ``outcome_id`` is in flight, 422 the ``outcome_id`` was
            used with another outcome.
        Exception: The log is unavailable (nothing was recorded; the caller answers 503).
    """
    outcome = parse_review_outcome(body, max_amount)
    outcome_fingerprint = fingerprint(outcome, leave_out=("outcome_id",))
    result = {"outcome_id": outcome.outcome_id, "kind": outcome.kind, "review_id": outcome.review_id}
    a = REVIEW_ASSESSMENTS.c
    with ledger.claimed(key_id, outcome.outcome_id, "outcome_id", "outcome_id") as conn:
        stored = _stored(conn, REVIEW_OUTCOMES, key_id, "outcome_id", outcome.outcome_id)
        if stored is not None:
            if stored.fingerprint != outcome_fingerprint:
                raise key_reused("outcome_id")
            return result | {"replayed": True}
        writers = {
            row.buyer_id for row in conn.execute(select(a.buyer_id).where(a.review_id == outcome.review_id))
        }
        if not writers:
            raise Refusal(404, REVIEW_UNKNOWN, "no assessment of this review")
        if outcome.buyer_id not in writers:
            raise Refusal(409, OTHER_BUYER, "this review was assessed for another buyer")
        now = utcnow()
        conn.execute(
            REVIEW_OUTCOMES.insert().values(
                key_id=key_id,
                outcome_id=outcome.outcome_id,
                fingerprint=outcome_fingerprint,
                kind=outcome.kind,
                buyer_id=outcome.buyer_id,
                review_id=outcome.review_id,
                occurred_at=outcome.occurred_at or now,
                recorded_at=now,
                payload=json.loads(json_text(body)),
            )
        )
    return result | {"replayed": False}
