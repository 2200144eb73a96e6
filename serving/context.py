"""Per-app services shared by the blueprints, and the one JSON error shape."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response, current_app, jsonify

from serving.auth import KeyCheck
from serving.config import ServingConfig
from serving.ledger import Ledger
from serving.metrics import Metrics
from serving.runtime import Runtime

EXTENSION = "buyer_trust"


@dataclass(frozen=True)
class Services:
    """Everything the handlers need, stored once per app in ``app.extensions``."""

    config: ServingConfig
    runtime: Runtime
    ledger: Ledger
    metrics: Metrics
    keys: KeyCheck


def services() -> Services:
    """The current app's ``Services`` (inside a request or app context)."""
    return current_app.extensions[EXTENSION]


def error_response(status: int, error: str, message: str, field: str | None = None) -> tuple[Response, int]:
    """``{"error", "message"[, "field"]}`` with ``status``."""
    body = {"error": error, "message": message} | ({"field": field} if field else {})
    return jsonify(body), status
