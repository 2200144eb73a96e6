"""Each piece of one decision timed in-process (no HTTP) on the real app's objects, per ledger durability
(``bench/bench_serving.py --profile``)."""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.service.bodies import decision_bodies


def _timed(name: str, fn, items: list, table: list) -> list:
    """Run ``fn`` on every item; append ``(name, median, mean)`` CPU microseconds per item to ``table``.

    CPU time of this process (``time.process_time``: other jobs on the machine do not count, their
    cache traffic still does), per item, so the median is not moved by the odd item that waited or
    was preempted; the mean is what a throughput divides by."""
    gc.collect()
    out, spent = [], []
    for x in items:
        started = time.process_time()
        out.append(fn(x))
        spent.append(time.process_time() - started)
    table.append((name, float(np.median(spent)) * 1e6, float(np.mean(spent)) * 1e6))
    return out


def _profile_head(live, service: str, pairs: list, now, table: list) -> None:
    """One service head: ``Booster.predict`` contributions vs the single-row path and the per-leaf
    TreeSHAP tables (what ``head_risk`` uses), and all of ``head_risk``."""
    from rating.heads import TREESHAP
    from serving.live import request_context

    head = live.rating.model.heads.get(service)
    some = [p for p in pairs if p[0].service == service]
    if head is None or not some:
        return
    inputs = [
        head.inputs(np.asarray(b.row, np.float64), request_context(r, now, live.policy.decimals))
        for r, b in some
    ]
    contrib = head._compared("contrib")
    tables = head._table(TREESHAP)
    trees = head.base.num_trees()
    _timed(
        f"  {service}: Booster.predict(pred_contrib=True), {trees} trees",
        lambda x: head.base.predict(x, pred_contrib=True, num_threads=1),
        inputs,
        table,
    )
    _timed(f"  {service}: single-row contributions (C API)", lambda x: contrib(x[0]), inputs, table)
    _timed(f"  {service}: TreeSHAP from per-leaf tables", lambda x: tables.contributions(x[0]), inputs, table)
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
    priced = _timed(
        "rating and head, both services (assess)", lambda r: assess(r, live, now), requests, table
    )
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
                "checkpoint_interval_s": 0,  # no background thread: its CPU would count
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
        print(f"{'CPU time per item (process_time)':<72}{'median':>9}{'mean':>9}", flush=True)
        for name, median, mean in table:
            print(f"{name:<72}{median:>9.1f}{mean:>9.1f} us", flush=True)
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
