"""Serving benchmark: parse-only Flask vs the full decision path vs ``mlflow models serve``.

Each target runs under its production server on this machine, one after the other in one
run, and gets the same load from a small asyncio HTTP/1.1 client (bounded request counts,
127.0.0.1 only):

    (a) parse-only: a Flask endpoint under gunicorn that decodes the JSON body and answers
        (the floor any Flask service pays),
    (b) ``POST /v1/decisions`` of ``serving.app:create_app()`` under gunicorn: validation,
        snapshot lookup, rating, reasons, policy, one ledger transaction (SQLite WAL),
    (c) ``mlflow models serve`` on the same model: one row of signals per request.

For each: closed-loop throughput with ``--concurrency`` connections (p50, p99), then, if
the target sustains it, an open-loop run at ``--rate`` requests/s (latency measured from
each request's scheduled time, so queueing counts). (c) gets ``--mlflow-requests`` (it
serves tens of requests per second). Goals: (b) >= 7x (c) throughput, (b) >= 0.6x (a), p99 of (b)
<= 10 ms at 1,000 requests/s.

    python bench/bench_serving.py --model-uri models:/buyer-trust-rating@champion \\
        --snapshot data/online/snapshot.parquet
    python bench/bench_serving.py --synthetic     # self-contained: a synthetic model and snapshot
"""

from __future__ import annotations

import argparse
import asyncio
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
API_KEY = "bench-key"


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
    app: str, port: int, workers: int, worker_class: str, threads: int, chdir: str | None = None
) -> list[str]:
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"{HOST}:{port}", "-k", worker_class]
    if worker_class == "gthread":
        cmd += ["--threads", str(threads)]
    cmd += ["--log-level", "warning", "--keep-alive", "30", "--worker-tmp-dir", "/dev/shm"]
    if chdir:
        cmd += ["--chdir", chdir]
    return cmd + [app]


# ---------------------------------------------------------------- inputs


def synthetic_setup(workdir: Path, n_buyers: int, rounds: int = 300) -> tuple[str, Path]:
    """A real rating model over the registry's signals, fit on synthetic rows, and a snapshot (``--synthetic``).

    Sized like a production model (all registry signals, ``rounds`` trees) so the serving
    cost is representative before the trained champion exists.
    """
    from features.registry import signal_names
    from serving.snapshot import FileWriter
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
    p.add_argument("--requests", type=int, default=20000, help="requests per closed-loop run (default 20000)")
    p.add_argument(
        "--mlflow-requests", type=int, default=1000, help="closed-loop requests for (c) (default 1000)"
    )
    p.add_argument("--concurrency", type=int, default=16, help="connections in the closed loop (default 16)")
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop rate, requests/s (default 1000)")
    p.add_argument("--rate-seconds", type=float, default=10.0, help="open-loop duration (default 10 s)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2, one per core)")
    p.add_argument(
        "--worker-class", default="gthread", choices=["sync", "gthread"], help="gunicorn worker class"
    )
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker (default 4)")
    p.add_argument("--checkpoint-interval", default=None, help="SERVING_CHECKPOINT_INTERVAL_S for (b)")
    p.add_argument("--skip-mlflow", action="store_true", help="skip target (c)")
    return p.parse_args(argv)


def run_target(
    server: Server, bodies: list[bytes], path: str, headers: dict, args, closed_n: int, warm: int = 500
) -> dict:
    """Warm up, run the closed loop, then the open loop at ``args.rate`` if the target can sustain it."""
    reqs = [raw_request(path, b, headers) for b in bodies]
    n_open = int(args.rate * args.rate_seconds)
    with server:
        asyncio.run(closed_loop(server.port, reqs[:warm], args.concurrency))
        gc.collect()
        gc.disable()  # the load generator's own collections (tens of ms) must not count as latency
        try:
            closed = asyncio.run(closed_loop(server.port, reqs[warm : warm + closed_n], args.concurrency))
            opened = None
            if closed.throughput >= 1.1 * args.rate:
                chunk = reqs[warm + closed_n : warm + closed_n + n_open]
                opened = asyncio.run(open_loop(server.port, chunk, args.rate))
        finally:
            gc.enable()
    return {"closed": closed, "open": opened}


def main(argv=None) -> int:
    args = parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    rng = np.random.default_rng(0)
    if args.synthetic:
        model_uri, snapshot_path = synthetic_setup(workdir, args.synthetic_buyers)
    else:
        model_uri, snapshot_path = args.model_uri, Path(args.snapshot)
    sys.path.insert(0, str(repo))
    from serving.config import hash_api_key
    from serving.snapshot import FileSnapshot

    snapshot = FileSnapshot.load(snapshot_path)
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    import mlflow

    from rating.artifact import load_rating

    mlflow.set_tracking_uri(args.tracking_uri)
    names = load_rating(model_uri).model.signal_names
    total = 500 + args.requests + int(args.rate * args.rate_seconds)
    run = uuid.uuid4().hex[:8]
    bodies = decision_bodies(snapshot.buyer_ids, total, rng, run)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SERVING_")},
        "PYTHONPATH": str(repo),
        "MLFLOW_TRACKING_URI": args.tracking_uri,
        "SERVING_MODEL_URI": model_uri,
        "SERVING_SNAPSHOT": str(snapshot_path.resolve()),
        "SERVING_DATABASE_URL": f"sqlite:///{workdir / 'serving.db'}",
        "SERVING_API_KEY_HASHES": hash_api_key(API_KEY),
        "SERVING_WATCH_INTERVAL_S": "0",
        **({"SERVING_CHECKPOINT_INTERVAL_S": args.checkpoint_interval} if args.checkpoint_interval else {}),
    }
    key = {"X-API-Key": API_KEY}
    print(
        f"load average {os.getloadavg()}; {os.cpu_count()} cores; model {model_uri}; {len(names)} signals; "
        f"{snapshot.meta.n_buyers} buyers; workers {args.workers} x {args.worker_class}"
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    results = {}
    port = free_port()
    g = gunicorn(
        "bench_serving:parse_app()", port, args.workers, args.worker_class, args.threads, str(repo / "bench")
    )
    server = Server("parse", g, env, port, "/healthz", workdir / "a.log")
    results["a parse-only"] = run_target(server, bodies, "/v1/decisions", key, args, args.requests)
    port = free_port()
    g = gunicorn("serving.app:create_app()", port, args.workers, args.worker_class, args.threads)
    server = Server("decisions", g, env, port, "/readyz", workdir / "b.log")
    bodies_b = decision_bodies(snapshot.buyer_ids, total, rng, run + "b")
    results["b decisions"] = run_target(server, bodies_b, "/v1/decisions", key, args, args.requests)
    if not args.skip_mlflow:
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "-h",
            HOST,
            "-p",
            str(port),
        ]
        cmd += ["--env-manager", "local", "-w", str(args.workers)]
        server = Server("mlflow", cmd, env, port, "/ping", workdir / "c.log")
        bodies_c = mlflow_bodies(snapshot, names, snapshot.buyer_ids, total, rng)
        results["c mlflow serve"] = run_target(
            server, bodies_c, "/invocations", {}, args, args.mlflow_requests, warm=50
        )
    report(results, args)
    return 0


def report(results: dict, args) -> None:
    print(
        f"\nclosed loop: {args.requests} requests, {args.concurrency} connections; open loop: {args.rate:g}/s "
        f"for {args.rate_seconds:g} s"
    )
    print(f"{'target':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'| open p50':>11}{'p99 ms':>9}  statuses")
    for name, r in results.items():
        c, o = r["closed"], r["open"]
        opened = f"{o.pct(50):>11.2f}{o.pct(99):>9.2f}" if o is not None else f"{'saturated':>20}"
        errors = c.errors + (o.errors if o is not None else 0)
        print(
            f"{name:<16}{c.throughput:>10.0f}{c.pct(50):>9.2f}{c.pct(99):>9.2f}{opened}  "
            f"{dict(sorted(c.statuses.items()))} errors {errors}"
        )
    a, b = results["a parse-only"]["closed"], results["b decisions"]["closed"]
    print(f"\n(b)/(a) throughput: {b.throughput / a.throughput:.2f}   goal >= 0.6")
    if "c mlflow serve" in results:
        c = results["c mlflow serve"]["closed"]
        print(f"(b)/(c) throughput: {b.throughput / c.throughput:.1f}   goal >= 7")
    opened = results["b decisions"]["open"]
    p99 = f"{opened.pct(99):.2f} ms" if opened is not None else "saturated"
    print(f"(b) p99 at {args.rate:g}/s: {p99}   goal <= 10 ms")


if __name__ == "__main__":
    sys.exit(main())
