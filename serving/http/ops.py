"""Open operational routes: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from serving.http.metrics import CONTENT_TYPE
from serving.http.openapi import openapi_document
from serving.http.services import services

log = logging.getLogger(__name__)
ops = Blueprint("ops", __name__)


@ops.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify({"status": "ok"})


@ops.get("/readyz")
def readyz():
    """Ready to decide: model loaded, snapshot usable, database reachable (503 otherwise)."""
    s = services()
    live = s.runtime.live
    checks = {
        "model": live.model_error or "ok",
        "snapshot": live.snapshot_problem() or "ok",
        "policy": "ok",
    }
    try:
        s.ledger.ping()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness: database unreachable: %s", exc)
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"ready": ready, "checks": checks}), 200 if ready else 503


@ops.get("/metrics")
def metrics():
    """Prometheus text exposition: every worker's counters (``serving.http.metrics``)."""
    s = services()
    live = s.runtime.live
    snap = live.snapshot
    info = {
        "model_version": live.model_version or "none",
        "policy_version": live.policy.version,
        "snapshot_version": "none" if snap is None else snap.meta.version,
    }
    s.metrics.update_gauges(s.ledger, None if snap is None else snap.meta, info)
    return Response(s.metrics.render(), content_type=CONTENT_TYPE)


@ops.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API."""
    s = services()
    policy = s.runtime.live.policy
    return jsonify(openapi_document(policy.version, s.config.max_amount, policy.decimals, policy.currency))
