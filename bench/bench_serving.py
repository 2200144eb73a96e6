"""Serving benchmark: parse-only Flask vs the per-request decision path vs ``mlflow models serve``.

All targets run side by side under their production servers (two workers each) on this
machine; a small asyncio HTTP/1.1 client on 127.0.0.1 (bounded request counts, its own
garbage collection off while measuring) loads one at a time, in ``--rounds`` interleaved
rounds so that a noisy neighbour hits every target alike; figures are medians over rounds.

    (a) parse-only: a Flask endpoint that decodes the JSON body and answers (the floor any
        Flask service pays), under the same gunicorn settings as (b),
    (b) the per-request decision path, ``POST /v1/decisions`` of ``serving.http.app:create_app()``
        under ``gunicorn -c python:serving.http.gunicorn_conf`` (gevent workers): key check, strict
        body, validation, snapshot lookup, the service head scored with the request's own
        context and its exact TreeSHAP reasons, policy, one ledger transaction (SQLite WAL,
        ``synchronous=FULL``, the default: an fsync per decision inside the write lock),
    (b') the same with ``synchronous=GROUP`` (what a SQLite production box should run: as
        durable for an acknowledged decision, the fsync after the commit, shared),
    (d) the same service with the snapshot in Redis: the rating booster is evaluated per
        request on the buyer's row (per-request scoring),
    (c) ``mlflow models serve`` on the same model: one row of signals per request.

Per round and target: closed-loop throughput with ``--concurrency`` connections (p50, p99),
then an open-loop run at ``--rate`` requests/s (latency from each request's scheduled send
time, so queueing counts; "not sustained" with the rate achieved when the target finished
the run below 95% of ``--rate``); for (b) also the same open loop with ``--stalled`` clients
holding connections open mid-body (each reopened as soon as the server answers it 408). (c)
gets ``--mlflow-requests`` (it serves tens of requests per second). Goals (issue 9): (b)
>= 0.5x (a) in decisions/s; p99 of (b) <= 10 ms at 1,000 requests/s and <= 20 ms with 20
stalled clients; (d) >= 20x (c). The load average is printed at the start and the end:
the figures depend on it (two cores shared with the load generator).

    python bench/bench_serving.py --model-uri models:/buyer-trust-rating@champion \\
        --snapshot data/online/snapshot.parquet --tracking-uri sqlite:///mlruns/mlflow.db
    python bench/bench_serving.py --synthetic     # self-contained: a synthetic model (with heads) and snapshot
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


# ---------------------------------------------------------------- target (a): parse only


def parse_app():
    """The parse-only Flask app (gunicorn ``bench_serving:parse_app()``)."""
    import json as _json

    from flask import Flask, jsonify, request

    app = Flask("parse_only")

    @app.post("/v1/decisions")
    def decisions():
        body = _json.loads(request.get_data(cache=False))
        return jsonify({"decision": "decline", "request_id": body.get("request_id")})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app


# ---------------------------------------------------------------- load generator


@dataclass
class Result:
    """Latencies (seconds) and wall time of one run."""

    latencies: np.ndarray
    elapsed: float
    errors: int
    statuses: dict

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if len(self.latencies) else math.nan


def raw_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection that reopens when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(port: int, requests: list[bytes], concurrency: int) -> Result:
    """Send every request, ``concurrency`` at a time, each connection back to back."""
    latencies = np.empty(len(requests))
    statuses: dict[int, int] = {}
    errors = 0
    next_index = iter(range(len(requests)))

    async def user() -> None:
        nonlocal errors
        conn = Connection(port)
        for i in next_index:
            t = time.perf_counter()
            try:
                status = await conn.request(requests[i])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                conn.close()
                errors += 1
                status = 0
            latencies[i] = time.perf_counter() - t
            statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return Result(latencies, time.perf_counter() - started, errors, statuses)


async def open_loop(port: int, requests: list[bytes], rate: float, max_connections: int = 64) -> Result:
    """Send request i at ``i / rate`` seconds; latency counts from that scheduled time."""
    latencies = np.empty(len(requests))
    statuses: dict[int, int] = {}
    pool: list[Connection] = [Connection(port) for _ in range(max_connections)]
    idle = asyncio.Queue()
    for conn in pool:
        idle.put_nowait(conn)
    errors = 0

    async def send(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await idle.get()
        try:
            status = await conn.request(requests[i])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            errors += 1
            status = 0
        latencies[i] = time.perf_counter() - scheduled
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait(conn)

    tasks = []
    started = time.perf_counter()
    for i in range(len(requests)):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for conn in pool:
        conn.close()
    return Result(latencies, elapsed, errors, statuses)


# ---------------------------------------------------------------- servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server process group started for the benchmark and stopped after it."""

    def __init__(self, name: str, cmd: list[str], env: dict, port: int, health: str, log: Path) -> None:
        self.name, self.cmd, self.env, self.port, self.health, self.log = name, cmd, env, port, health, log
        self.proc = None

    def __enter__(self) -> Server:
        out = open(self.log, "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}{self.health}", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after 180 s; see {self.log}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def gunicorn(
    app: str, port: int, workers: int, worker_class: str | None, chdir: str | None = None
) -> list[str]:
    """The production gunicorn command (``serving/http/gunicorn_conf.py``) on ``port``."""
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:serving.http.gunicorn_conf", "-b", f"{HOST}:{port}"]
    cmd += ["-w", str(workers), "--log-level", "warning"]
    if worker_class:
        cmd += ["-k", worker_class]
    if chdir:
        cmd += ["--chdir", chdir]
    return cmd + [app]


async def hold_stalled(port: int, n: int, stop: asyncio.Event, body: bytes, api_key: str) -> int:
    """Keep ``n`` connections open, each stalled half-way through its body, until ``stop``.

    A connection the server answers (408 after its body timeout) or closes is replaced at
    once. Returns how many 408 answers were seen.
    """
    timeouts = 0
    head = (
        f"POST /v1/decisions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {api_key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one() -> None:
        nonlocal timeouts
        while not stop.is_set():
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(head + body[: len(body) // 2])
            waiter = asyncio.ensure_future(reader.read(65536))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done and waiter.result().startswith(b"HTTP/1.1 408"):
                timeouts += 1
            waiter.cancel()
            stopper.cancel()
            writer.close()

    await asyncio.gather(*(one() for _ in range(n)))
    return timeouts


async def open_loop_stalled(
    port: int, requests: list[bytes], rate: float, stalled: int, body: bytes, api_key: str
) -> Result:
    """``open_loop`` while ``stalled`` other clients hold connections open mid-body."""
    stop = asyncio.Event()
    holder = asyncio.ensure_future(hold_stalled(port, stalled, stop, body, api_key))
    await asyncio.sleep(0.5)  # all of them connected and stalled before measuring
    result = await open_loop(port, requests, rate)
    stop.set()
    result.statuses["408 (stalled clients)"] = await holder
    return result


# ---------------------------------------------------------------- inputs


HEAD_TREES = {"presale_ship_before_balance": 75, "fast_refund": 83}  # the default run b94db0f3 (Dec 2026)
PROXY_TREES = 118


def synthetic_heads(names: list[str], rng: np.random.Generator, n: int = 20000) -> dict:
    """Service heads of the champion's size (``HEAD_TREES``, the training parameters, categorical
    context, a proxy and an uplift for presales), fit on synthetic opportunities."""
    import lightgbm as lgb

    from rating.context import (
        CATEGORICAL,
        PRESALE_CONTEXT,
        REFUND_CONTEXT,
        TREATMENT,
        presale_context,
        refund_context,
    )
    from rating.heads import ServiceHead
    from training.heads import HEAD_PARAMS

    heads = {}
    for service, trees in HEAD_TREES.items():
        X = rng.gamma(1.0, 1.0, size=(n, len(names)))
        X[rng.random(X.shape) < 0.1] = np.nan
        amount = rng.uniform(10, 5000, n)
        category = rng.choice(["beauty", "apparel", "electronics", "home"], n)
        if service == "presale_ship_before_balance":
            ctx_names = PRESALE_CONTEXT
            ctx = presale_context(amount, amount * 0.1, category, rng.uniform(1, 40, n), rng.random(n) < 0.5)
        else:
            ctx_names = REFUND_CONTEXT
            ctx = refund_context(
                amount, amount * 1.5, rng.choice(["refund_only", "return_and_refund"], n),
                rng.choice(["damaged", "quality", "not_received"], n), rng.integers(0, 3, n), category,
                rng.uniform(0, 60, n),
            )  # fmt: skip
        logit = 0.5 * np.nan_to_num(X[:, :20], nan=1.0).sum(axis=1) / 4 + np.log(amount) / 3 - 6.0
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        all_names = [*names, *ctx_names]
        data = lgb.Dataset(
            np.hstack([X, ctx]), y, feature_name=all_names,
            categorical_feature=[c for c in ctx_names if c in CATEGORICAL],
        )  # fmt: skip
        base = lgb.train(HEAD_PARAMS, data, trees)
        proxy = None
        if service == "presale_ship_before_balance":
            proxy = lgb.train(HEAD_PARAMS, lgb.Dataset(X, (rng.random(n) < 0.1).astype(int)), PROXY_TREES)
        heads[service] = ServiceHead(
            service, list(names), list(ctx_names), base,
            TREATMENT if proxy is not None else None, proxy, (2.7, 0.9) if proxy is not None else (0.0, 0.0),
        )  # fmt: skip
    return heads


def synthetic_setup(workdir: Path, n_buyers: int, rounds: int = 300) -> tuple[str, Path]:
    """A real rating model over the registry's signals, fit on synthetic rows, and a snapshot (``--synthetic``).

    Sized like a production model (all registry signals, ``rounds`` trees, service heads of
    the champion's size) so the serving cost is representative before the trained champion exists.
    """
    from features.registry import signal_names
    from serving.publish.snapshot import FileWriter
    from training.model import DEFAULT_PARAMS, Dataset, fit_rating
    from training.package import save_rating

    names = list(signal_names())
    k = len(names)
    rng = np.random.default_rng(3)
    weights = rng.normal(0, 1.2, k) / np.sqrt(k)

    def rows(n: int) -> Dataset:
        X = rng.gamma(1.0, 1.0, size=(n, k)).astype(np.float32)
        X[rng.random((n, k)) < 0.1] = np.nan
        logit = (np.nan_to_num(X, nan=1.0) - 1.0) @ weights - 3.0
        return Dataset(X=X, y=(rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8))

    params = {
        **DEFAULT_PARAMS,
        "num_boost_round": rounds,
        "early_stopping_rounds": rounds,
        "min_data_in_leaf": 50,
    }
    monotone = [1 if w > 0 else -1 for w in weights]
    model = fit_rating(
        rows(40000), rows(20000), names, {n: f"Reason text for {n}" for n in names}, monotone, params
    )
    model.set_heads(synthetic_heads(names, rng))
    uri = save_rating(model, workdir / "model", rows(5).X)
    X = rows(n_buyers).X
    writer = FileWriter(workdir / "snapshot.parquet", names, "2025-06-01T00:00:00+00:00")
    writer.append(np.arange(n_buyers), X)
    writer.commit()
    return uri, workdir / "snapshot.parquet"


def decision_bodies(buyers: np.ndarray, n: int, rng: np.random.Generator, run: str) -> list[bytes]:
    """``n`` decision bodies over random buyers, half presale, half fast refund, unique request ids."""
    out = []
    for i in range(n):
        buyer = int(rng.choice(buyers))
        if i % 2 == 0:
            amount = float(rng.integers(50, 3000))
            body = {
                "request_id": f"{run}-{i}",
                "service": "presale_ship_before_balance",
                "buyer_id": buyer,
                "order": {
                    "order_id": i,
                    "amount": amount,
                    "currency": "CNY",
                    "category": "beauty",
                    "deposit_amount": round(amount * 0.1, 2),
                    "balance_due_at": "2030-11-11T00:00:00Z",
                },
            }
        else:
            body = {
                "request_id": f"{run}-{i}",
                "service": "fast_refund",
                "buyer_id": buyer,
                "refund": {
                    "refund_id": i,
                    "order_id": i,
                    "amount": float(rng.integers(10, 400)),
                    "reason": "damaged",
                    "kind": "return_and_refund",
                    "evidence_photos": 1,
                    "order_amount": 400.0,
                    "category": "apparel",
                    "ordered_at": "2025-06-01T00:00:00Z",
                },
            }
        out.append(json.dumps(body).encode())
    return out


def mlflow_bodies(
    snapshot, names: list[str], buyers: np.ndarray, n: int, rng: np.random.Generator
) -> list[bytes]:
    """``n`` one-row ``dataframe_split`` bodies of the chosen buyers' signals."""
    position = {name: j for j, name in enumerate(snapshot.meta.signal_names)}
    columns = [position[name] for name in names]
    cache: dict[int, bytes] = {}
    out = []
    for _ in range(n):
        buyer = int(rng.choice(buyers[:2000]))
        if buyer not in cache:
            row = snapshot.row(buyer)[columns]
            values = [None if not np.isfinite(v) else float(v) for v in row]
            cache[buyer] = json.dumps({"dataframe_split": {"columns": names, "data": [values]}}).encode()
        out.append(cache[buyer])
    return out


# ---------------------------------------------------------------- run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    p.add_argument("--snapshot", default="data/online/snapshot.parquet")
    p.add_argument("--synthetic", action="store_true", help="use a synthetic model and snapshot instead")
    p.add_argument("--synthetic-buyers", type=int, default=20000)
    p.add_argument("--requests", type=int, default=6000, help="requests per closed-loop run (default 6000)")
    p.add_argument(
        "--mlflow-requests",
        type=int,
        default=300,
        help="closed-loop requests for (c) per round (default 300)",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; figures are medians (default 3)"
    )
    p.add_argument("--concurrency", type=int, default=16, help="connections in the closed loop (default 16)")
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop rate, requests/s (default 1000)")
    p.add_argument("--rate-seconds", type=float, default=6.0, help="open-loop duration (default 6 s)")
    p.add_argument("--stalled", type=int, default=20, help="stalled clients during (b)'s second open loop")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2, one per core)")
    p.add_argument(
        "--worker-class",
        default=None,
        help="override the production worker class of serving/http/gunicorn_conf.py (gevent), e.g. sync",
    )
    p.add_argument("--synchronous", default="FULL", help="SERVING_SQLITE_SYNCHRONOUS for (b) (default FULL)")
    p.add_argument(
        "--group-synchronous",
        default="GROUP",
        help="durability of the extra target (b') and of (d) (default GROUP: fsync after commit, shared; "
        "'none' skips b')",
    )
    p.add_argument("--database-url", default=None, help="ledger for (b) (default: a fresh SQLite file)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for (d)")
    p.add_argument("--skip-redis", action="store_true", help="skip target (d)")
    p.add_argument("--skip-mlflow", action="store_true", help="skip target (c)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of the HTTP targets: time each piece of one decision in-process (microseconds)",
    )
    return p.parse_args(argv)


@dataclass
class Target:
    """One server under test and the requests it gets (each request is sent once)."""

    name: str
    server: Server
    requests: list[bytes]
    closed_n: int
    stalled: int = 0
    cursor: int = 0

    def take(self, n: int) -> list[bytes]:
        chunk = self.requests[self.cursor : self.cursor + n]
        if len(chunk) < n:
            raise RuntimeError(f"{self.name}: ran out of prepared requests")
        self.cursor += n
        return chunk


def measure(target: Target, args, stall_body: bytes, api_key: str) -> dict:
    """One round for one target: the closed loop, then the open loops."""
    gc.collect()
    gc.disable()  # the load generator's own collections (tens of ms) must not count as latency
    try:
        port, n_open = target.server.port, int(args.rate * args.rate_seconds)
        closed = asyncio.run(closed_loop(port, target.take(target.closed_n), args.concurrency))
        stalled = None
        opened = asyncio.run(open_loop(port, target.take(n_open), args.rate))
        if target.stalled:  # at --rate, or at half the closed-loop throughput when it cannot sustain that
            rate = min(args.rate, closed.throughput / 2)
            stalled = asyncio.run(
                open_loop_stalled(
                    port,
                    target.take(int(rate * args.rate_seconds)),
                    rate,
                    target.stalled,
                    stall_body,
                    api_key,
                )
            )
            stalled.statuses["rate/s"] = round(rate)
    finally:
        gc.enable()
    return {"closed": closed, "open": opened, "stalled": stalled}


def publish_redis(url: str, prefix: str, snapshot, names: list[str]) -> None:
    """Copy the file snapshot's rows (the model's signals) into Redis under ``prefix``."""
    from serving.publish.snapshot import RedisWriter

    position = {name: j for j, name in enumerate(snapshot.meta.signal_names)}
    columns = [position[name] for name in names]
    writer = RedisWriter(url, prefix, names, snapshot.meta.as_of)
    ids = np.asarray(snapshot.buyer_ids)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        writer.append(chunk, np.stack([snapshot.row(int(b))[columns] for b in chunk]))
    writer.commit()


def drop_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])


def _timed(name: str, fn, items: list, table: list) -> list:
    """Run ``fn`` on every item; append ``(name, microseconds per item)`` to ``table``."""
    gc.collect()
    started = time.perf_counter()
    out = [fn(x) for x in items]
    table.append((name, (time.perf_counter() - started) / len(items) * 1e6))
    return out


def _profile_head(live, service: str, pairs: list, now, table: list) -> None:
    """One service head: ``Booster.predict`` contributions vs the single-row path, and all of ``head_risk``."""
    from serving.live import request_context

    head = live.rating.model.heads.get(service)
    some = [p for p in pairs if p[0].service == service]
    if head is None or not some:
        return
    inputs = [
        head.inputs(np.asarray(b.row, np.float64), request_context(r, now, live.policy.decimals))
        for r, b in some
    ]
    contrib = head._predictors()["contrib"]
    trees = head.base.num_trees()
    _timed(
        f"  {service}: Booster.predict(pred_contrib=True), {trees} trees",
        lambda x: head.base.predict(x, pred_contrib=True, num_threads=1),
        inputs,
        table,
    )
    _timed(f"  {service}: single-row contributions (C API)", lambda x: contrib(x[0]), inputs, table)
    _timed(f"  {service}: head_risk", lambda p: live.head_risk(p[0], p[1], now), some, table)


def _profile_pieces(s, raws: list[bytes], table: list) -> None:
    """Each piece of the decision path but the ledger, on ``raws`` (encoded decision bodies)."""
    from serving.handle import assess, respond
    from serving.http.body import decode_json_object
    from serving.ledger.idempotency import fingerprint
    from serving.ledger.positions import Usage
    from serving.ledger.store import utcnow
    from serving.live import request_context
    from serving.money import json_text
    from serving.schema import parse_decision

    live = s.runtime.live
    policy = live.policy
    bodies = _timed("JSON body decode (strict)", decode_json_object, raws, table)
    requests = _timed(
        "validation (parse_decision)",
        lambda b: parse_decision(b, s.config.max_amount, policy.currency, policy.decimals),
        bodies,
        table,
    )
    _timed("idempotency fingerprint", lambda r: fingerprint(r, leave_out=("request_id",)), requests, table)
    ratings = _timed("snapshot lookup + rating (live.rate)", lambda r: live.rate(r.buyer_id), requests, table)
    now = utcnow().replace(tzinfo=None)
    pairs = list(zip(requests, ratings, strict=True))
    _timed(
        "  request context (rating.context)",
        lambda p: request_context(p[0], now, policy.decimals),
        pairs,
        table,
    )
    for service in ("presale_ship_before_balance", "fast_refund"):
        _profile_head(live, service, pairs, now, table)
    priced = _timed("rating and head, both services (assess)", lambda r: assess(r, live, now), requests, table)
    decisions = _timed("policy (decide)", lambda p: p.decide(policy, Usage()), priced, table)
    outs = _timed(
        "answer (respond)",
        lambda t: respond(t[0].request, t[1], t[0].rating, live, "id", t[0].head),
        list(zip(priced, decisions, strict=True)),
        table,
    )
    _timed("JSON answer (json.dumps)", lambda o: json.dumps(o, separators=(",", ":")), outs, table)
    _timed("logged inputs (json_text)", json_text, bodies, table)
    _timed(
        "metrics (decision + request)",
        lambda d: (
            s.metrics.decision("fast_refund", d.decision, [f.code for f in d.declines]),
            s.metrics.record_request("/v1/decisions", 200, 0.001),
        ),
        decisions,
        table,
    )


def _profile_ledger(s, sync: str, raws: list[bytes], table: list) -> None:
    """All of ``handle_decision`` and the ledger transaction alone."""
    from serving.handle import handle_decision
    from serving.http.body import decode_json_object

    live = s.runtime.live
    bodies = [decode_json_object(r) for r in raws]
    started = time.perf_counter()
    _timed(
        f"handle_decision, all of it, synchronous={sync}",
        lambda b: handle_decision(b, live, s.ledger, s.config, s.metrics, started, "profile"),
        bodies,
        table,
    )
    _timed(
        f"  of which the ledger transaction, synchronous={sync}",
        lambda i: _ledger_only(s.ledger, i),
        list(range(len(raws))),
        table,
    )


def profile(args, workdir: Path, model_uri: str, snapshot_path: Path, n: int = 2000) -> None:
    """Each piece of one decision, in-process (no HTTP), on the real app's objects, per ledger durability."""
    from serving.http.app import close_app, create_app
    from serving.http.auth import SCOPES, demo_keys
    from serving.http.services import EXTENSION

    _, keys = demo_keys(SCOPES)
    print(
        f"load average at start {tuple(round(x, 2) for x in os.getloadavg())}; model {model_uri}", flush=True
    )
    for sync in ("FULL", "GROUP", "NORMAL"):
        app = create_app(
            {
                "database_url": f"sqlite:///{workdir / f'profile-{sync}.db'}",
                "model_uri": model_uri,
                "mlflow_tracking_uri": args.tracking_uri,
                "snapshot": str(snapshot_path),
                "api_keys": keys["api_keys"],
                "api_key_secret": keys["api_key_secret"],
                "watch_interval_s": 0,
                "sqlite_synchronous": sync,
            }
        )
        s = app.extensions[EXTENSION]
        rng = np.random.default_rng(0)
        raws = decision_bodies(np.asarray(s.runtime.live.snapshot.buyer_ids), n, rng, f"profile-{sync}")
        table: list = []
        if sync == "FULL":
            _profile_pieces(s, raws, table)
        _profile_ledger(s, sync, raws[: n // 2], table)
        close_app(app)
        for name, us in table:
            print(f"{name:<72}{us:>9.1f} us", flush=True)
    print(f"load average at end {tuple(round(x, 2) for x in os.getloadavg())}")


def _ledger_only(ledger, i: int) -> None:
    """One decision transaction with a fixed row (no model): lock, read, insert, commit."""
    from serving.ledger.store import utcnow
    from serving.ledger.tables import DecisionRow

    request_id = f"ledger-{i}"
    with ledger.locked(10**9 + i, "profile", request_id) as tx:
        tx.read(request_id, 30, "fast_refund", i, "profile")
        tx.record(
            DecisionRow(
                decision_id=ledger.new_decision_id(),
                key_id="profile",
                request_id=request_id,
                fingerprint="-",
                created_at=utcnow(),
                service="fast_refund",
                buyer_id=10**9 + i,
                ref_id=i,
                decision="decline",
                star=3,
                score=600,
                p_bad=0.1,
                requested_minor=100,
                reserved_minor=0,
                model_version="m",
                policy_version="p",
                latency_ms=1.0,
                propensity=1.0,
                explored_minor=0,
                inputs="{}",
                outputs="{}",
            ),
            0,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    load_at_start = os.getloadavg()
    rng = np.random.default_rng(0)
    if args.synthetic:
        model_uri, snapshot_path = synthetic_setup(workdir, args.synthetic_buyers)
    else:
        model_uri, snapshot_path = args.model_uri, Path(args.snapshot)
    if args.profile:
        profile(args, workdir, model_uri, snapshot_path.resolve())
        return 0
    sys.path.insert(0, str(repo))
    import mlflow

    from rating.artifact import load_rating
    from serving.http.auth import SCOPES, demo_keys
    from serving.publish.snapshot import FileSnapshot

    api_key, keys = demo_keys(SCOPES)
    snapshot = FileSnapshot.load(snapshot_path)
    mlflow.set_tracking_uri(args.tracking_uri)
    names = load_rating(model_uri).model.signal_names
    warm = 500
    n_open = int(args.rate * args.rate_seconds)
    total = warm + args.rounds * (args.requests + 2 * n_open)
    run = uuid.uuid4().hex[:8]
    redis_prefix = f"bench-{run}:"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SERVING_")},
        "PYTHONPATH": str(repo),
        "MLFLOW_TRACKING_URI": args.tracking_uri,
        "SERVING_MODEL_URI": model_uri,
        "SERVING_SNAPSHOT": str(snapshot_path.resolve()),
        "SERVING_DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'serving.db'}",
        **({"SERVING_DATABASE_SCHEMA": f"bench_{run}"} if args.database_url else {}),
        "SERVING_API_KEYS": ",".join(keys["api_keys"]),
        "SERVING_API_KEY_SECRET": keys["api_key_secret"],
        "SERVING_WATCH_INTERVAL_S": "0",
        "SERVING_SQLITE_SYNCHRONOUS": args.synchronous,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each gunicorn makes its own
    group_env = env | {
        "SERVING_SQLITE_SYNCHRONOUS": args.group_synchronous,
        "SERVING_DATABASE_URL": f"sqlite:///{workdir / 'serving-group.db'}",
    }
    redis_env = env | {
        "SERVING_SQLITE_SYNCHRONOUS": args.group_synchronous
        if args.group_synchronous != "none"
        else args.synchronous,
        "SERVING_SNAPSHOT": args.redis,
        "SERVING_REDIS_PREFIX": redis_prefix,
        "SERVING_DATABASE_URL": f"sqlite:///{workdir / 'serving-redis.db'}",
    }
    key = {"X-API-Key": api_key}
    print(
        f"load average at start {tuple(round(x, 2) for x in load_at_start)}; {os.cpu_count()} cores; "
        f"model {model_uri}; {len(names)} signals; {snapshot.meta.n_buyers} buyers; "
        f"workers {args.workers} x {args.worker_class or 'gevent (serving/http/gunicorn_conf.py)'}; "
        f"SQLite synchronous={args.synchronous}; {args.rounds} rounds",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    ports = [free_port() for _ in range(5)]
    mlflow_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "-h", HOST]
    mlflow_cmd += ["-p", str(ports[2]), "--env-manager", "local", "-w", str(args.workers)]

    def bodies(tag: str) -> list[bytes]:
        return [
            raw_request("/v1/decisions", b, key)
            for b in decision_bodies(snapshot.buyer_ids, total, rng, run + tag)
        ]

    targets = [
        Target(
            "a parse-only",
            Server(
                "parse",
                gunicorn(
                    "bench_serving:parse_app()",
                    ports[0],
                    args.workers,
                    args.worker_class,
                    str(repo / "bench"),
                ),
                env,
                ports[0],
                "/healthz",
                workdir / "a.log",
            ),
            bodies("a"),
            args.requests,
        ),
        Target(
            "b decisions",
            Server(
                "decisions",
                gunicorn("serving.http.app:create_app()", ports[1], args.workers, args.worker_class),
                env,
                ports[1],
                "/readyz",
                workdir / "b.log",
            ),
            bodies("b"),
            args.requests,
            stalled=args.stalled,
        ),
    ]
    if args.group_synchronous != "none":
        targets.append(
            Target(
                f"b' {args.group_synchronous.lower()}",
                Server(
                    "decisions-group",
                    gunicorn("serving.http.app:create_app()", ports[4], args.workers, args.worker_class),
                    group_env,
                    ports[4],
                    "/readyz",
                    workdir / "b2.log",
                ),
                bodies("g"),
                args.requests,
                stalled=args.stalled,
            )
        )
    if not args.skip_redis:
        publish_redis(args.redis, redis_prefix, snapshot, names)
        targets.append(
            Target(
                "d per-request",
                Server(
                    "decisions-redis",
                    gunicorn("serving.http.app:create_app()", ports[3], args.workers, args.worker_class),
                    redis_env,
                    ports[3],
                    "/readyz",
                    workdir / "d.log",
                ),
                bodies("d"),
                args.requests,
            )
        )
    if not args.skip_mlflow:
        mlflow_requests = mlflow_bodies(
            snapshot, names, snapshot.buyer_ids, warm + args.rounds * args.mlflow_requests, rng
        )
        targets.append(
            Target(
                "c mlflow serve",
                Server("mlflow", mlflow_cmd, env, ports[2], "/ping", workdir / "c.log"),
                [raw_request("/invocations", b, {}) for b in mlflow_requests],
                args.mlflow_requests,
            )
        )
    stall_body = decision_bodies(snapshot.buyer_ids, 1, rng, run + "stall")[0]
    results: dict[str, list[dict]] = {t.name: [] for t in targets}
    try:
        with contextlib.ExitStack() as stack:
            for t in targets:  # all servers up side by side; only one is under load at a time
                stack.enter_context(t.server)
                asyncio.run(
                    closed_loop(t.server.port, t.take(warm if t.closed_n >= warm else 50), args.concurrency)
                )
            for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every target alike
                for t in targets:
                    results[t.name].append(measure(t, args, stall_body, api_key))
    finally:
        if not args.skip_redis:
            drop_redis(args.redis, redis_prefix)
    report(results, args, load_at_start)
    return 0


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _ms(value: float) -> str:
    return "saturated" if math.isnan(value) else f"{value:.2f} ms"


SUSTAINED = 0.95  # an open loop is sustained when the target answered at >= 95% of the offered rate
DURABILITY = {
    "FULL": "the default: an fsync per decision inside the SQLite write lock",
    "GROUP": "production's SQLite setting: as durable for an acknowledged decision, one fsync after "
    "the commit shared by concurrent decisions",
    "NORMAL": "NOT durable on power loss: no fsync per decision; for comparison only",
}


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def issue_figures(summary: dict, args, durability: dict[str, str]) -> None:
    """Issue 9 item 4: decisions/s of the per-request path, its ratio to parse-only, p99 at ``--rate``."""
    a = summary["a parse-only"]
    print(
        f"\nissue 9 item 4 (goals: >= 0.5x parse-only in decisions/s; p99 <= 10 ms at {args.rate:g} requests/s)"
    )
    print(f"  (a) parse-only Flask: {a['rps']:,.0f} requests/s")
    for name, row in summary.items():
        if name not in durability:
            continue
        mode = durability[name]
        ratio = row["rps"] / a["rps"]
        where = ", snapshot in Redis" if name.startswith("d") else ""
        print(
            f"  ({name.split()[0]}) per-request path, synchronous={mode} ({DURABILITY.get(mode, mode)}{where}):"
        )
        print(f"      {row['rps']:,.0f} decisions/s = {ratio:.2f}x parse-only   [{_verdict(ratio >= 0.5)}]")
        if row["open_rate"] >= SUSTAINED * args.rate:
            print(
                f"      p99 at {args.rate:g}/s: {row['open_p99']:.2f} ms (p50 {row['open_p50']:.2f} ms)   "
                f"[{_verdict(row['open_p99'] <= 10)}]"
            )
        else:
            print(
                f"      p99 at {args.rate:g}/s: not sustained (achieved {row['open_rate']:,.0f}/s; "
                f"p99 {row['open_p99']:,.0f} ms counting the queue)   [MISSED]"
            )


def report(results: dict[str, list[dict]], args, load_at_start) -> None:
    """Per target the median over rounds of each figure, and the goals."""
    print(
        f"\nclosed loop: {args.requests} requests, {args.concurrency} connections; open loop: {args.rate:g}/s "
        f"for {args.rate_seconds:g} s (and with {args.stalled} stalled clients for b); "
        f"median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'target':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'| open p50':>11}{'p99 ms':>9}{'rate/s':>8}"
        f"{'| stalled p50':>14}{'p99 ms':>9}  per-round req/s"
    )
    summary = {}
    for name, rounds in results.items():
        closed = [r["closed"] for r in rounds]
        opened = [r["open"] for r in rounds if r["open"] is not None]
        stalled = [r["stalled"] for r in rounds if r["stalled"] is not None]
        row = {
            "rps": _median([c.throughput for c in closed]),
            "open_rate": _median([o.throughput for o in opened]),
            "p50": _median([c.pct(50) for c in closed]),
            "p99": _median([c.pct(99) for c in closed]),
            "open_p50": _median([o.pct(50) for o in opened]),
            "open_p99": _median([o.pct(99) for o in opened]),
            "stalled_p50": _median([o.pct(50) for o in stalled]),
            "stalled_p99": _median([o.pct(99) for o in stalled]),
        }
        summary[name] = row
        errors = sum(c.errors for c in closed + opened + stalled)
        statuses: dict = {}
        for r in closed + opened + stalled:
            for k, v in r.statuses.items():
                if k != "rate/s":
                    statuses[k] = statuses.get(k, 0) + v
        row["stalled_rate"] = _median([o.statuses["rate/s"] for o in stalled])
        opened_text = f"{row['open_p50']:>11.2f}{row['open_p99']:>9.2f}{row['open_rate']:>8.0f}"
        stalled_text = f"{row['stalled_p50']:>14.2f}{row['stalled_p99']:>9.2f}" if stalled else f"{'-':>23}"
        print(
            f"{name:<16}{row['rps']:>10.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{opened_text}{stalled_text}  "
            f"{[round(c.throughput) for c in closed]} statuses {statuses} errors {errors}"
        )
    b = summary["b decisions"]
    durability = {"b decisions": args.synchronous}
    for name in summary:
        if name.startswith("b'"):
            durability[name] = args.group_synchronous
        if name.startswith("d "):
            durability[name] = (
                args.group_synchronous if args.group_synchronous != "none" else args.synchronous
            )
    issue_figures(summary, args, durability)
    print(
        f"\nload average at start {tuple(round(x, 2) for x in load_at_start)}, "
        f"at end {tuple(round(x, 2) for x in os.getloadavg())}"
    )
    print(
        f"(b) p99 at {b['stalled_rate']:.0f}/s with {args.stalled} stalled clients: {_ms(b['stalled_p99'])}   "
        f"goal <= 20 ms (at {args.rate:g}/s, or half its closed-loop throughput if lower)"
    )
    for name, row in summary.items():
        if name.startswith("b'"):
            print(
                f"({name.split()[0]}) p99 at {row['stalled_rate']:.0f}/s with {args.stalled} stalled clients: "
                f"{_ms(row['stalled_p99'])}"
            )
    if "d per-request" in summary and "c mlflow serve" in summary:
        d, c = summary["d per-request"], summary["c mlflow serve"]
        print(
            f"(d)/(c) throughput, per-request scoring (synchronous="
            f"{args.group_synchronous if args.group_synchronous != 'none' else args.synchronous}) "
            f"vs mlflow models serve: {d['rps'] / c['rps']:.1f}   goal >= 20"
        )
    if "c mlflow serve" in summary:
        print(f"(b)/(c) throughput: {b['rps'] / summary['c mlflow serve']['rps']:.1f}")


if __name__ == "__main__":
    sys.exit(main())
