"""Per-app services shared by the blueprints, and the one error shape (RFC 9457 problem details)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

from flask import Response, current_app

from serving.auth import KeyCheck
from serving.config import ServingConfig
from serving.ledger import Ledger
from serving.metrics import Metrics
from serving.runtime import Runtime

EXTENSION = "buyer_trust"
PROBLEM_TYPE = "urn:buyer-trust:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


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


class Problem(Exception):
    """An error answer raised anywhere in a request; ``serving.app`` renders it with ``error_response``.

    Args:
        status: HTTP status (4xx or 5xx).
        code: Stable machine-readable code (``body_too_large``); also the end of the ``type`` URI.
        detail: Human-readable explanation of this occurrence.
        field: Dotted path of the offending field, when one is at fault.
        headers: Extra response headers (``Retry-After``...).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def problem_body(status: int, code: str, detail: str, field: str | None = None) -> dict:
    """The problem-details object: ``type``, ``title``, ``status``, ``detail``, ``code`` [, ``field``].

    ``type`` is ``urn:buyer-trust:problem:<code>``; ``title`` is the HTTP reason phrase of
    ``status`` (the same for every occurrence of a type, as RFC 9457 asks).
    """
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail, "code": code}
    if field:
        body["field"] = field
    return body


def error_response(
    status: int,
    code: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Response, int]:
    """Every error the service answers, as ``application/problem+json`` (RFC 9457).

    Args:
        status: HTTP status.
        code: Stable code (see ``docs/serving.md``, "Errors").
        detail: What went wrong, for a human.
        field: Dotted path of the offending request field, if any.
        headers: Extra response headers.

    Returns:
        The response and its status, as a Flask view returns them.
    """
    text = json.dumps(problem_body(status, code, detail, field), separators=(",", ":"))
    response = Response(text, status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response, status
