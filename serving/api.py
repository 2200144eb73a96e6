"""The ``/v1`` routes: thin handlers over ``serving.handle`` and the ledger. API key required."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from serving.auth import HEADER
from serving.context import error_response, services
from serving.handle import buyer_rating, handle_decision
from serving.policy import PolicyError
from serving.runtime import ALL_PARTS
from serving.schema import RequestError, parse_json, parse_outcome

log = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/v1")


@api.before_request
def _authenticate():
    if not services().keys.allows(request.headers.get(HEADER)):
        return error_response(401, "unauthorized", f"send a valid API key in the {HEADER} header")
    return None


def _body() -> Any:
    return parse_json(request.get_data(cache=False))


@api.errorhandler(RequestError)
def _bad_request(exc: RequestError):
    return error_response(400, "invalid_request", exc.message, exc.field)


@api.post("/decisions")
def decisions():
    """Approve or decline a trust service for one order or refund."""
    s = services()
    answer = handle_decision(_body(), s.runtime.live, s.ledger, s.config, s.metrics, g.started)
    response = Response(answer.text, mimetype="application/json") if answer.text else jsonify(answer.body)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@api.post("/outcomes")
def outcomes():
    """Record what happened after a decision and release the exposure it closes."""
    s = services()
    outcome = parse_outcome(_body(), s.config.max_amount)
    try:
        result = s.ledger.record_outcome(outcome)
    except Exception:  # noqa: BLE001 - nothing was recorded; the caller retries
        log.exception("outcome %s: ledger unavailable", outcome.outcome_id)
        response, _ = error_response(503, "ledger_unavailable", "outcome not recorded; retry later")
        response.headers["Retry-After"] = "5"
        return response, 503
    return jsonify(result)


@api.get("/buyers/<int:buyer_id>/rating")
def rating(buyer_id: int):
    """Stars, score and top reasons for a buyer-facing page."""
    return jsonify(buyer_rating(services().runtime.live, buyer_id))


@api.get("/model")
def model():
    """The live model, policy and snapshot versions."""
    return jsonify(describe(services()))


@api.post("/admin/reload")
def reload():
    """Reload policy, snapshot and model in this worker (body ``{"parts": [...]}`` optional)."""
    raw = request.get_data(cache=False)
    body = parse_json(raw) if raw.strip() else {}
    parts = body.get("parts", sorted(ALL_PARTS)) if isinstance(body, dict) else None
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
            "n_buyers": None if snap is None else snap.meta.n_buyers,
            "error": live.snapshot_error,
        },
    }
