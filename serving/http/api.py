"""The ``/v1`` routes: thin handlers over ``serving.handle`` and the ledger.

Every route needs an API key with the route's scope (``requires``; a route without one
needs ``admin``): 401 without a known key, 403 without the scope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from serving.handle import buyer_rating, handle_decision, handle_outcome
from serving.http.auth import HEADER
from serving.http.body import check_media_type, decode_json_object, read_body
from serving.http.problems import Problem, error_response
from serving.http.runtime import ALL_PARTS
from serving.http.services import services
from serving.ledger.idempotency import Refusal, key_id
from serving.policy import PolicyError
from serving.reviews import handle_assessment, handle_review_outcome, reviewer_risk
from serving.schema import BUYER_PATH, RequestError, parse_path_id

log = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/v1")


def requires(scope: str | None) -> Callable:
    """Mark a view as needing ``scope`` (None: any known key)."""

    def mark(view: Callable) -> Callable:
        view.scope = scope
        return view

    return mark


@api.before_request
def _authenticate():
    found = services().keys.match(request.headers.get(HEADER))
    if found is None:
        return error_response(401, "unauthorized", f"send a valid API key in the {HEADER} header")
    g.key_digest, scopes = found  # the caller's stored digest: idempotency ids are scoped to it
    view = current_app.view_functions.get(request.endpoint)
    needed = getattr(view, "scope", "admin")
    if needed is not None and needed not in scopes:
        return error_response(403, "forbidden", f"this API key lacks the {needed!r} scope")
    return None


def _body(optional: bool = False) -> dict[str, Any]:
    """The request's JSON object (``serving.http.body`` rules); ``{}`` for an absent optional body."""
    config = services().config
    if (
        optional
        and not request.content_length
        and "chunked" not in request.headers.get("Transfer-Encoding", "")
    ):
        return {}
    check_media_type(request.content_type)
    raw = read_body(request.environ, config.max_body_bytes, config.body_timeout_s)
    if optional and not raw:
        return {}
    return decode_json_object(raw)


@api.errorhandler(RequestError)
def _bad_request(exc: RequestError):
    return error_response(400, "invalid_request", exc.message, exc.field)


@api.errorhandler(Refusal)
def _refused(exc: Refusal):
    return error_response(exc.status, exc.code, exc.message)


@contextmanager
def _or_unavailable(what: str, ident: Any, detail: str) -> Iterator[None]:
    """Run one write to the ledger or log: the caller's own errors (``RequestError``, ``Refusal``)
    pass; any other failure recorded nothing, so it is logged and answered 503 ``ledger_unavailable``
    with ``Retry-After`` (the caller retries; checkout never sees a 500 for it)."""
    try:
        yield
    except (RequestError, Refusal):
        raise
    except Exception:  # noqa: BLE001 - nothing was recorded; the caller retries
        log.exception("%s %s: ledger unavailable", what, ident)
        raise Problem(503, "ledger_unavailable", detail, headers={"Retry-After": "5"}) from None


def _marked(response: Response, replayed: bool) -> Response:
    """``response`` with ``Idempotent-Replayed: true`` when it repeats a stored answer."""
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _now(s) -> datetime | None:
    """The replay clock's instant (naive UTC) when one is configured, else None (the system clock)."""
    if s.config.replay_clock_file is None:
        return None
    try:
        moment = datetime.fromisoformat(Path(s.config.replay_clock_file).read_text().strip())
    except (OSError, ValueError) as exc:
        raise Problem(503, "replay_clock_unreadable", f"replay clock: {exc}") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@api.post("/decisions")
@requires("decide")
def decisions():
    """Approve or decline a trust service for one order or refund."""
    s = services()
    answer = handle_decision(
        _body(), s.runtime.live, s.ledger, s.config, s.metrics, g.started, key_id(g.key_digest), _now(s)
    )
    response = Response(answer.text, mimetype="application/json") if answer.text else jsonify(answer.body)
    return _marked(response, answer.replayed)


@api.post("/outcomes")
@requires("outcomes")
def outcomes():
    """Record what happened after a decision and release the exposure it closes."""
    s = services()
    body = _body()
    with _or_unavailable("outcome", body.get("outcome_id"), "outcome not recorded; retry later"):
        result = handle_outcome(body, s.runtime.live, s.ledger, s.config, key_id(g.key_digest), _now(s))
    return jsonify(result)


@api.get("/buyers/<buyer_id>/rating")
@requires("decide")
def rating(buyer_id: str):
    """Stars, score and top reasons for a buyer-facing page; 404 naming ``buyer_id`` when the path
    holds no buyer id (``serving.schema.BUYER_PATH``: an integer 0..2^63-1)."""
    try:
        buyer = parse_path_id(BUYER_PATH, buyer_id)
    except RequestError as exc:
        raise Problem(404, "not_found", f"no such buyer: {exc.field} {exc.message}", exc.field) from None
    live = services().runtime.live
    return jsonify(buyer_rating(live, buyer) | {"reviewer_risk": reviewer_risk(live, buyer)})


@api.post("/reviews/assess")
@requires("decide")
def reviews_assess():
    """Screen a review as it is posted: publish, or hold it for moderation."""
    s = services()
    body = _body()
    with _or_unavailable("review assessment", body.get("request_id"), "review not assessed; retry later"):
        answer, replayed = handle_assessment(
            body, s.runtime.live, s.ledger, s.config.max_amount, g.started, key_id(g.key_digest)
        )
    return _marked(jsonify(answer), replayed)


@api.post("/reviews/outcomes")
@requires("outcomes")
def reviews_outcomes():
    """Record what moderation found about an assessed review."""
    s = services()
    body = _body()
    with _or_unavailable("review outcome", body.get("outcome_id"), "outcome not recorded; retry later"):
        result = handle_review_outcome(body, s.ledger, s.config.max_amount, key_id(g.key_digest))
    return jsonify(result)


@api.get("/model")
@requires(None)
def model():
    """The live model, policy and snapshot versions."""
    return jsonify(describe(services()))


@api.post("/admin/reload")
@requires("admin")
def reload():
    """Reload policy, snapshot and model in this worker (body ``{"parts": [...]}`` optional)."""
    body = _body(optional=True)
    unknown = sorted(set(body) - {"parts"})
    if unknown:
        raise RequestError(unknown[0], "unknown field")
    parts = body.get("parts", sorted(ALL_PARTS))
    if (
        not isinstance(parts, list)
        or not parts
        or any(not isinstance(p, str) or p not in ALL_PARTS for p in parts)
    ):
        raise RequestError("parts", f"must be a non-empty list of {', '.join(sorted(ALL_PARTS))}")
    try:
        services().runtime.reload(frozenset(parts))
    except PolicyError as exc:
        return error_response(409, "invalid_policy", str(exc))
    return jsonify(describe(services()))


def describe(s) -> dict[str, Any]:
    """Versions and state of the model, policy and snapshot in force."""
    live = s.runtime.live
    r = live.rating
    snap = live.snapshot
    return {
        "model": {
            "uri": s.config.model_uri,
            "name": None if r is None else r.name,
            "version": None if r is None else r.version,
            "run_id": None if r is None else r.run_id,
            "n_signals": None if r is None else len(r.model.signal_names),
            "error": live.model_error,
        },
        "policy": {"version": live.policy.version, "path": s.config.policy_path},
        "snapshot": {
            "location": s.config.snapshot,
            "kind": None if snap is None else snap.kind,
            "version": None if snap is None else snap.meta.version,
            "as_of": None if snap is None else snap.meta.as_of,
            "published_at": None if snap is None else snap.meta.published_at,
            "n_buyers": None if snap is None else snap.meta.n_buyers,
            "error": live.snapshot_problem(),
        },
    }
