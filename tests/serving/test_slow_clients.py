"""Slow and stalled clients against a real gunicorn (production settings): they get 408 after a
bounded wait and never slow anyone else's decisions."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid

import numpy as np

from .conftest import API_KEY

STALLED = 20
BODY_TIMEOUT_S = 1.5


def _stall(port: int, body: bytes) -> socket.socket:
    """Open a connection, send the headers and half the body, then say nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def test_stalled_clients_get_408_and_do_not_slow_others(gunicorn_server, presale_body, buyer_with_star):
    url = gunicorn_server(workers=2, body_timeout_s=BODY_TIMEOUT_S)
    port = int(url.rsplit(":", 1)[1])
    buyer = buyer_with_star(4)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def decide() -> float:
        body = json.dumps(presale_body(buyer, 100, request_id=uuid.uuid4().hex, order_id=7))
        t = time.perf_counter()
        conn.request("POST", "/v1/decisions", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - t
        assert response.status == 200, payload
        return elapsed

    for _ in range(30):  # warm up the code paths
        decide()
    opened = time.monotonic()
    stalled = [_stall(port, json.dumps(presale_body(buyer, 100)).encode()) for _ in range(STALLED)]
    latencies = []
    while time.monotonic() - opened < BODY_TIMEOUT_S * 0.8:  # all 20 are stalled meanwhile
        latencies.append(decide())
    p99 = float(np.percentile(latencies, 99)) * 1000
    assert len(latencies) >= 50, latencies
    print(f"p99 {p99:.2f} ms over {len(latencies)} decisions with {STALLED} stalled clients")
    assert p99 <= 20, f"p99 {p99:.1f} ms with {STALLED} stalled clients ({len(latencies)} requests)"

    for sock in stalled:
        status, head, body = _answer(sock)
        waited = time.monotonic() - opened
        assert status == 408, (status, body)
        assert head["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "request_timeout"
        assert waited < BODY_TIMEOUT_S + 3
        sock.close()
    assert decide() < 1.0  # the service is still answering
    conn.close()


def test_trickling_client_is_cut_off_at_the_deadline(gunicorn_server, presale_body, buyer_with_star):
    url = gunicorn_server(workers=1, body_timeout_s=1.0)
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps(presale_body(buyer_with_star(4), 100)).encode()
    sock = _stall(port, body)
    started = time.monotonic()
    sent = len(body) // 2
    sock.settimeout(0.2)
    answer = b""
    while time.monotonic() - started < 5 and not answer:  # one byte every 0.2 s: never a stall of 1 s
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            sock.sendall(body[sent : sent + 1])
            sent += 1
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 2.5
    sock.close()
