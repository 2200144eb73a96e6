"""Slow and stalled clients against a real gunicorn (production settings): they get 408 after a
bounded wait and never slow anyone else's decisions."""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
import uuid

from .conftest import API_KEY

STALLED = 20
BODY_TIMEOUT_S = 3.0  # long enough that a loaded machine decides several times meanwhile


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


def _decide_while_stalled(
    url: str, body_timeout_s: float, presale_body, buyer: int
) -> tuple[list[float], list]:
    """Stall ``STALLED`` clients half-way through their bodies, then decide one presale after another
    on a connection of its own until the stalled clients are about to time out.

    Returns:
        Each decision's seconds (``inf`` when it got no answer in ``body_timeout_s``), and the
        stalled sockets (still open).
    """
    port = int(url.rsplit(":", 1)[1])
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def decide(conn: http.client.HTTPConnection) -> float:
        body = json.dumps(presale_body(buyer, 100, request_id=uuid.uuid4().hex, order_id=7))
        t = time.perf_counter()
        try:
            conn.request("POST", "/v1/decisions", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except OSError:
            return math.inf
        assert response.status == 200, payload
        return time.perf_counter() - t

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=body_timeout_s)
    for _ in range(5):  # warm up the code paths
        assert decide(conn) < math.inf
    opened = time.monotonic()
    stalled = [_stall(port, json.dumps(presale_body(buyer, 100)).encode()) for _ in range(STALLED)]
    latencies = []
    while time.monotonic() - opened < body_timeout_s * 0.6:  # all of them are stalled meanwhile
        latencies.append(decide(conn))
        if latencies[-1] == math.inf:
            break
    conn.close()
    return latencies, stalled


def _unaffected(latencies: list[float], body_timeout_s: float) -> bool:
    """Decisions went on while the clients stalled: several answered, none waited for a stalled
    client's timeout (a third of it is a margin a loaded 2-core machine keeps; the speed itself
    is bench/bench_serving.py's, p99 with 20 stalled clients)."""
    return len(latencies) >= 5 and max(latencies) < body_timeout_s / 3


def test_stalled_clients_get_408_and_do_not_slow_others(gunicorn_server, presale_body, buyer_with_star):
    url = gunicorn_server(workers=2, body_timeout_s=BODY_TIMEOUT_S)
    opened = time.monotonic()
    latencies, stalled = _decide_while_stalled(url, BODY_TIMEOUT_S, presale_body, buyer_with_star(4))
    assert _unaffected(latencies, BODY_TIMEOUT_S), (
        f"{len(latencies)} decisions, slowest {max(latencies):.3f} s"
    )
    for sock in stalled:
        status, head, body = _answer(sock)
        waited = time.monotonic() - opened
        assert status == 408, (status, body)
        assert head["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "request_timeout"
        assert waited < BODY_TIMEOUT_S + 10  # cut off at the deadline, not left hanging
        sock.close()


def test_the_check_fails_when_stalled_clients_hold_the_workers(
    gunicorn_server, presale_body, buyer_with_star
):
    """The same check against workers a stalled client does hold (gunicorn's sync workers, one
    connection at a time): it fails, so it tests the behaviour and not the machine's speed."""
    url = gunicorn_server(
        workers=2, args=("-k", "sync", "--graceful-timeout", "1"), body_timeout_s=BODY_TIMEOUT_S
    )
    latencies, stalled = _decide_while_stalled(url, BODY_TIMEOUT_S, presale_body, buyer_with_star(4))
    for sock in stalled:
        sock.close()
    assert not _unaffected(latencies, BODY_TIMEOUT_S), latencies


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
    assert time.monotonic() - started < 4.5  # an absolute deadline: the trickle never extends it
    sock.close()
