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
        ``synchronous=FULL``: an fsync per decision inside the write lock),
    (b') the same with ``synchronous=GROUP`` (the service's default: as durable for an
        acknowledged decision, the fsync after the commit, shared),
    (d) the same service with the snapshot in Redis: the rating booster is evaluated per
        request on the buyer's row (per-request scoring),
    (c) ``mlflow models serve`` on the same model: one row of signals per request.

Per round and target: closed-loop throughput with ``--concurrency`` connections (p50, p99),
then an open-loop run at ``--rate`` requests/s (latency from each request's scheduled send
time, so queueing counts; "not sustained" with the rate achieved when the target finished
the run below 95% of ``--rate``); for (b) also the same open loop with ``--stalled`` clients
holding connections open mid-body (each reopened as soon as the server answers it 408). (c)
gets ``--mlflow-requests`` (it serves tens of requests per second). Goals: (b)
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
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from bench.service.bodies import decision_bodies, mlflow_bodies
from bench.service.load import Target, closed_loop, measure, raw_request
from bench.service.profiler import profile
from bench.service.redis_snapshot import drop_redis, publish_redis
from bench.service.report import report
from bench.service.servers import HOST, Server, free_port, gunicorn
from bench.synthetic import synthetic_setup

WARM = 500  # requests each target answers before the rounds (imports, caches, connections)


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


def server_envs(
    args, workdir: Path, model_uri: str, snapshot_path: Path, keys: dict, run: str
) -> dict[str, dict]:
    """The environment of each server: (a) and (b) as configured, (b') with ``--group-synchronous``, (d)
    with the snapshot in Redis under a prefix of this run."""
    repo = Path(__file__).resolve().parents[1]
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
    group = env | {
        "SERVING_SQLITE_SYNCHRONOUS": args.group_synchronous,
        "SERVING_DATABASE_URL": f"sqlite:///{workdir / 'serving-group.db'}",
    }
    redis = env | {
        "SERVING_SQLITE_SYNCHRONOUS": args.group_synchronous
        if args.group_synchronous != "none"
        else args.synchronous,
        "SERVING_SNAPSHOT": args.redis,
        "SERVING_REDIS_PREFIX": redis_prefix(run),
        "SERVING_DATABASE_URL": f"sqlite:///{workdir / 'serving-redis.db'}",
    }
    return {"env": env, "group": group, "redis": redis}


def redis_prefix(run: str) -> str:
    return f"bench-{run}:"


def build_targets(args, workdir: Path, envs: dict[str, dict], snapshot, names: list[str], model_uri: str,
                  api_key: str, run: str, rng: np.random.Generator) -> list[Target]:  # fmt: skip
    """The servers under test, in the order they are measured, each with the requests it will get."""
    env, group_env, redis_env = envs["env"], envs["group"], envs["redis"]
    n_open = int(args.rate * args.rate_seconds)
    total = WARM + args.rounds * (args.requests + 2 * n_open)
    key = {"X-API-Key": api_key}
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
                gunicorn("bench.service.servers:parse_app()", ports[0], args.workers, args.worker_class),
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
            snapshot, names, snapshot.buyer_ids, WARM + args.rounds * args.mlflow_requests, rng
        )
        targets.append(
            Target(
                "c mlflow serve",
                Server("mlflow", mlflow_cmd, env, ports[2], "/ping", workdir / "c.log"),
                [raw_request("/invocations", b, {}) for b in mlflow_requests],
                args.mlflow_requests,
            )
        )
    return targets


def run_rounds(targets: list[Target], args, stall_body: bytes, api_key: str) -> dict[str, list[dict]]:
    """Start every server side by side, warm each, then ``--rounds`` interleaved rounds of all of them."""
    results: dict[str, list[dict]] = {t.name: [] for t in targets}
    with contextlib.ExitStack() as stack:
        for t in targets:  # all servers up side by side; only one is under load at a time
            stack.enter_context(t.server)
            asyncio.run(
                closed_loop(t.server.port, t.take(WARM if t.closed_n >= WARM else 50), args.concurrency)
            )
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every target alike
            for t in targets:
                results[t.name].append(measure(t, args, stall_body, api_key))
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
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
    import mlflow

    from rating.artifact import load_rating
    from serving.http.auth import SCOPES, demo_keys
    from serving.publish.snapshot import FileSnapshot

    api_key, keys = demo_keys(SCOPES)
    snapshot = FileSnapshot.load(snapshot_path)
    mlflow.set_tracking_uri(args.tracking_uri)
    names = load_rating(model_uri).model.signal_names
    run = uuid.uuid4().hex[:8]
    envs = server_envs(args, workdir, model_uri, snapshot_path, keys, run)
    print(
        f"load average at start {tuple(round(x, 2) for x in load_at_start)}; {os.cpu_count()} cores; "
        f"model {model_uri}; {len(names)} signals; {snapshot.meta.n_buyers} buyers; "
        f"workers {args.workers} x {args.worker_class or 'gevent (serving/http/gunicorn_conf.py)'}; "
        f"SQLite synchronous={args.synchronous}; {args.rounds} rounds",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    targets = build_targets(args, workdir, envs, snapshot, names, model_uri, api_key, run, rng)
    if not args.skip_redis:
        publish_redis(args.redis, redis_prefix(run), snapshot, names)
    stall_body = decision_bodies(snapshot.buyer_ids, 1, rng, run + "stall")[0]
    try:
        results = run_rounds(targets, args, stall_body, api_key)
    finally:
        if not args.skip_redis:
            drop_redis(args.redis, redis_prefix(run))
    report(results, args, load_at_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
