"""Contract tests: schemathesis generates requests from the served OpenAPI document (valid and
invalid bodies, parameters and keys) and checks every answer against it: never a 5xx, only
documented statuses, the documented media types and schemas.

The suite runs ``CONTRACT_EXAMPLES`` (default 60) cases per operation and mode in-process
(WSGI), and a sixth of that over HTTP against a real gunicorn; the issue's 500 per route:
``CONTRACT_EXAMPLES=500 python -m pytest tests/serving/test_contract.py``.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import API_KEY

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "60"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_answer_is_documented(case):
    case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)


@pytest.fixture
def live_schema(gunicorn_server):
    """The document served by a real gunicorn (production settings), calls over HTTP."""
    url = gunicorn_server(workers=2)
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


live = schemathesis.pytest.from_fixture("live_schema")


@live.parametrize()
@settings(
    max_examples=max(EXAMPLES // 6, 5),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_answer_is_documented_on_gunicorn(case):
    case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)
