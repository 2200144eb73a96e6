"""Strict input: media type, encoding, JSON objects only, duplicates, non-finite numbers, blank ids,
body size (announced and chunked); every error is problem+json with a stable code."""

from __future__ import annotations

import io
import json

import pytest

from serving.http.body import decode_json_object
from serving.http.problems import Problem

from .conftest import API_KEY

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith(code)
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None, "application/json; charset=utf-16"],
)
def test_only_application_json_is_accepted(client, presale_body, content_type):
    data = json.dumps(presale_body(5)).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/v1/decisions", data=data, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")


def test_json_with_utf8_charset_is_accepted(client, presale_body):
    data = json.dumps({"kind": "nonsense"}).encode()
    response = client.post("/v1/outcomes", data=data, content_type="application/json; charset=UTF-8")
    assert_problem(response, 400, "invalid_request")  # got past the media type, to the fields


def test_utf16_body_is_rejected(client, presale_body):
    data = json.dumps(presale_body(5)).encode("utf-16")
    assert_problem(
        client.post("/v1/decisions", data=data, content_type="application/json"), 400, "invalid_encoding"
    )


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_only_objects(client, raw):
    response = client.post("/v1/decisions", data=raw, content_type="application/json")
    assert_problem(response, 400, "not_an_object", "body")


@pytest.mark.parametrize("raw", [b"", b"{", b"\xef\xbb\xbf{}", b'{"a": 1} x'])
def test_malformed(client, raw):
    response = client.post("/v1/decisions", data=raw, content_type="application/json")
    assert_problem(response, 400, "malformed_json", "body")


def test_duplicate_keys_name_the_field(client, presale_body):
    body = presale_body(5)
    text = json.dumps(body)
    top = text.replace('"buyer_id":', '"buyer_id": 7, "buyer_id":', 1)
    assert_problem(
        client.post("/v1/decisions", data=top, content_type="application/json"),
        400,
        "duplicate_key",
        "buyer_id",
    )
    nested = text.replace('"amount":', '"amount": 1, "amount":', 1)
    assert_problem(
        client.post("/v1/decisions", data=nested, content_type="application/json"),
        400,
        "duplicate_key",
        "order.amount",
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_name_the_field(client, presale_body, constant):
    text = json.dumps(presale_body(5)).replace('"deposit_amount": 50.0', f'"deposit_amount": {constant}')
    assert constant in text
    response = client.post("/v1/decisions", data=text, content_type="application/json")
    assert_problem(response, 400, "non_finite_number", "order.deposit_amount")


@pytest.mark.parametrize("request_id", ["", " ", "\t\n", "   "])
def test_blank_request_id_is_400(client, presale_body, request_id):
    response = client.post("/v1/decisions", json=presale_body(5, request_id=request_id))
    assert_problem(response, 400, "invalid_request", "request_id")


@pytest.mark.parametrize("outcome_id", ["", "  "])
def test_blank_outcome_id_is_400(client, outcome_id):
    body = {"outcome_id": outcome_id, "kind": "balance_paid", "buyer_id": 5, "order_id": 1}
    assert_problem(client.post("/v1/outcomes", json=body), 400, "invalid_request", "outcome_id")


def test_announced_oversized_body_is_413(client, app):
    limit = app.extensions["buyer_trust"].config.max_body_bytes
    data = b'{"pad": "' + b"x" * limit + b'"}'
    assert_problem(
        client.post("/v1/decisions", data=data, content_type="application/json"), 413, "body_too_large"
    )


def test_chunked_oversized_body_is_413(client, app):
    limit = app.extensions["buyer_trust"].config.max_body_bytes
    data = b'{"pad": "' + b"x" * (2 * limit) + b'"}'
    response = client.post(
        "/v1/decisions",
        input_stream=io.BytesIO(data),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    assert_problem(response, 413, "body_too_large")


def test_chunked_small_body_is_read(client):
    data = json.dumps({"outcome_id": "o", "kind": "nonsense", "buyer_id": 5}).encode()
    response = client.post(
        "/v1/outcomes",
        input_stream=io.BytesIO(data),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    assert_problem(response, 400, "invalid_request", "kind")


def test_framework_errors_are_problems_too(client):
    assert_problem(client.get("/v1/nowhere"), 404, "not_found")
    response = client.get("/v1/decisions")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_problem(client.get("/v1/buyers/abc/rating"), 404, "not_found")


@pytest.mark.parametrize("segment", [str(2**63), "9" * 30, "1" * 5000, "-1", "1.5", "abc", "\u0663"])
def test_a_path_buyer_id_outside_int64_is_not_a_buyer(client, segment):
    body = assert_problem(client.get(f"/v1/buyers/{segment}/rating"), 404, "not_found", "buyer_id")
    assert str(2**63 - 1) in body["detail"] or "non-negative integer" in body["detail"]


def test_the_largest_path_buyer_id_is_a_buyer(client, app):
    from serving.http.openapi import openapi_document

    assert client.get(f"/v1/buyers/{2**63 - 1}/rating").json["rated"] is False  # unknown, not refused
    assert client.get("/v1/buyers/0007/rating").json["buyer_id"] == 7
    (parameter,) = openapi_document("v", 1e7)["paths"]["/v1/buyers/{buyer_id}/rating"]["get"]["parameters"]
    assert parameter["schema"]["minimum"] == 0 and parameter["schema"]["maximum"] == 2**63 - 1


def test_reload_body_is_optional_but_strict(client):
    assert client.post("/v1/admin/reload").status_code == 200
    assert_problem(
        client.post("/v1/admin/reload", data="{}", content_type="text/plain"), 415, "unsupported_media_type"
    )
    response = client.post("/v1/admin/reload", json={"parts": ["policy"], "extra": 1})
    assert_problem(response, 400, "invalid_request", "extra")


def test_decode_is_strict_about_nesting_and_paths():
    with pytest.raises(Problem) as err:
        decode_json_object(b'{"a": [{"b": 1, "b": 2}]}')
    assert err.value.code == "duplicate_key" and err.value.field == "a[0].b"
    with pytest.raises(Problem) as err:
        decode_json_object(b"[" * 100_000)
    assert err.value.code == "malformed_json"
    assert decode_json_object('{"name": "caf\u00e9"}'.encode()) == {"name": "caf\u00e9"}


def test_strict_input_on_a_real_gunicorn(gunicorn_server, config, presale_body):
    """The same rules over real HTTP (production gunicorn settings): status, code, media type."""
    import http.client

    from serving.http.auth import key_entry

    from .conftest import KEY_SECRET

    decide_only = "k-decide-only"
    url = gunicorn_server(
        workers=1,
        api_keys=[*config["api_keys"], key_entry(decide_only, KEY_SECRET, ["decide"])],
    )
    host, port = url.removeprefix("http://").split(":")

    def post(path: str, body, headers: dict, chunked: bool = False) -> tuple[int, str, dict]:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("POST", path, body=body, headers=headers, encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type"), json.loads(response.read())
        finally:
            conn.close()

    key = {"X-API-Key": API_KEY}
    good = json.dumps(presale_body(5))
    status, media, body = post("/v1/decisions", good, key | {"Content-Type": "text/plain"})
    assert (status, media, body["code"]) == (415, "application/problem+json", "unsupported_media_type")
    status, _, body = post("/v1/decisions", good.encode("utf-16"), key | {"Content-Type": "application/json"})
    assert (status, body["code"]) == (400, "invalid_encoding")
    dup = good.replace('"buyer_id":', '"buyer_id": 1, "buyer_id":', 1)
    status, _, body = post("/v1/decisions", dup, key | {"Content-Type": "application/json"})
    assert (status, body["code"], body["field"]) == (400, "duplicate_key", "buyer_id")
    blank = json.dumps(presale_body(5, request_id="  "))
    status, _, body = post("/v1/decisions", blank, key | {"Content-Type": "application/json"})
    assert (status, body["field"]) == (400, "request_id")
    chunks = (b'{"pad": "' + b"x" * 65536 for _ in range(32))  # 2 MB, no Content-Length
    status, _, body = post("/v1/decisions", chunks, key | {"Content-Type": "application/json"}, chunked=True)
    assert (status, body["code"]) == (413, "body_too_large")
    status, _, body = post("/v1/admin/reload", b"", {"X-API-Key": decide_only})
    assert (status, body["code"]) == (403, "forbidden")
    status, _, body = post("/v1/admin/reload", b"", key)
    assert status == 200, body
