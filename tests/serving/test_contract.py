"""Contract tests: schemathesis generates requests from the served OpenAPI document (valid and
invalid bodies, parameters and keys) and checks every answer against it: never a 5xx, only
documented statuses, the documented media types and schemas.

The suite runs ``CONTRACT_EXAMPLES`` (default 60) cases per operation and mode in-process
(WSGI), and a sixth of that over HTTP against a real gunicorn; the issue's 500 per route:
``CONTRACT_EXAMPLES=500 python -m pytest tests/serving/test_contract.py``. Every check schemathesis
has (``--checks all``: also schema-valid bodies accepted, schema-invalid ones refused, unsupported
methods, ignored auth...) runs through ``bench/bench_schema.py``: 10 cases per operation here, 500
in the bench.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


# A hang guard, not a speed limit: every operation's cases run inside this one test item (about a
# minute on a quiet 2-core machine; more than the suite's 300 s per test beside two busy loops).
@pytest.mark.timeout(1200)
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


def test_every_schemathesis_check_passes_on_the_served_document():
    bench = Path(__file__).parents[2] / "bench" / "bench_schema.py"
    run = subprocess.run(
        [sys.executable, str(bench), "--max-examples", "10"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    table = run.stdout.split("checks failed", 1)[1]
    for operation in (
        "POST /v1/decisions",
        "POST /v1/outcomes",
        "POST /v1/reviews/assess",
        "GET /v1/buyers/",
    ):
        assert operation in table
    assert table.split("\nall ", 1)[1].split()[1] == "0"  # cases failed, over every operation
