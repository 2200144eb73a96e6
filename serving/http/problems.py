"""The one error shape of every answer that is not a decision: RFC 9457 problem details."""

from __future__ import annotations

import json
from http import HTTPStatus

from flask import Response

PROBLEM_TYPE = "urn:buyer-trust:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error answer raised anywhere in a request; ``serving.http.app`` renders it with ``error_response``.

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
