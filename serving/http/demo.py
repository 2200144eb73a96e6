"""``python -m serving.http.demo``: the development server with a demo API key and example calls.

The last step of the README demo. Uses the configured API keys when ``SERVING_API_KEYS`` is
set; otherwise makes a random server secret and a random key with every scope for this
process, prints the key, and prints ``curl`` calls for a buyer of the published snapshot whose
small presale the served model and policy approve and whose large one they decline (found
without writing to the ledger). Production runs gunicorn (see docs/serving.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq

from serving.config import load_config
from serving.decide import EXPECTED_LOSS_ABOVE_ALLOWANCE
from serving.handle import assess
from serving.http.app import create_app
from serving.http.auth import SCOPES, demo_keys
from serving.http.services import EXTENSION
from serving.ledger.positions import Usage
from serving.live import Live
from serving.schema import parse_decision

SMALL, LARGE = 300, 4900
"""The demo presale's two amounts (CNY): the same buyer, the same electronics order, due in 20 days."""
CANDIDATES = 2000
"""Snapshot rows searched for a buyer whose two presales get different answers."""


def snapshot_buyers(snapshot: str, limit: int = CANDIDATES) -> list[int]:
    """The first ``limit`` buyer ids of a file snapshot (none when it is Redis or unreadable)."""
    if snapshot.startswith("redis://"):
        return []
    try:
        column = pq.read_table(snapshot, columns=["buyer_id"]).column("buyer_id")
    except (OSError, KeyError):
        return []
    return [int(b) for b in column.slice(0, limit).to_pylist()]


def presale_body(n: int, buyer_id: int, order_id: int, amount: int, due: str) -> dict:
    """A demo presale request: an electronics order with a 10% deposit."""
    return {
        "request_id": f"demo-{n}",
        "service": "presale_ship_before_balance",
        "buyer_id": buyer_id,
        "order": {
            "order_id": order_id, "amount": amount, "currency": "CNY", "category": "electronics",
            "deposit_amount": amount // 10, "balance_due_at": due,
        },
    }  # fmt: skip


def example_buyer(live: Live | None, buyer_ids: list[int], max_amount: float, now: datetime) -> int:
    """The first of ``buyer_ids`` whose small demo presale the policy approves and whose large one it
    declines on the head's expected loss (a buyer with nothing outstanding: the head prices the two
    amounts); else one whose large presale is declined for another limit (an amount cap); else the
    first rated one; else 1. Nothing is written: the policy runs on the served model, not the ledger."""
    if live is None or not buyer_ids:
        return buyer_ids[0] if buyer_ids else 1
    due = _stamp(now + timedelta(days=20))
    rated = contrast = None
    for buyer_id in buyer_ids:
        small, large = (
            assess(request, live, now.replace(tzinfo=None))
            for request in (
                parse_decision(presale_body(0, buyer_id, 1, amount, due), max_amount, live.policy.currency,
                               live.policy.decimals)
                for amount in (SMALL, LARGE)
            )
        )  # fmt: skip
        if small.rating is None:
            continue
        rated = buyer_id if rated is None else rated
        small, large = small.decide(live.policy, Usage()), large.decide(live.policy, Usage())
        if small.decision == "approve" and large.decision == "decline":
            if any(d.code == EXPECTED_LOSS_ABOVE_ALLOWANCE for d in large.declines):
                return buyer_id
            contrast = buyer_id if contrast is None else contrast
    return next(b for b in (contrast, rated, buyer_ids[0]) if b is not None)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def example_calls(base: str, key: str, buyer_id: int, now: datetime | None = None) -> str:
    """Shell lines a reader can paste to call the running service: the same buyer asks to ship a
    small and a large presale before the balance (the head prices each), a fast refund, and a one-star
    review the buyer posts (screened by the review head)."""
    now = now or datetime.now(UTC)
    due = _stamp(now + timedelta(days=20))
    ordered = _stamp(now - timedelta(days=6))
    refund = (
        '{"request_id": "demo-3", "service": "fast_refund", '
        f'"buyer_id": {buyer_id}, "refund": {{"refund_id": 5001, "order_id": 9001, "amount": 120, '
        '"reason": "damaged", "kind": "return_and_refund", "evidence_photos": 2, '
        f'"order_amount": 300, "category": "apparel", "ordered_at": "{ordered}"}}}}'
    )
    order = json.dumps(presale_body(1, buyer_id, 9001, SMALL, due))
    big_order = json.dumps(presale_body(2, buyer_id, 9002, LARGE, due))
    review = (
        f'{{"request_id": "demo-review-1", "buyer_id": {buyer_id}, "review": {{"review_id": 7001, '
        '"order_id": 9001, "rating": 1, "text_length": 240, "photos": 2, "order_amount": 300, '
        f'"category": "apparel", "delivered_at": "{_stamp(now - timedelta(days=2))}"}}}}'
    )
    header = f"-H 'X-API-Key: {key}' -H 'Content-Type: application/json'"
    return "\n".join(
        [
            f"curl -s -X POST {base}/v1/decisions {header} -d '{order}'",
            f"curl -s -X POST {base}/v1/decisions {header} -d '{big_order}'",
            f"curl -s -X POST {base}/v1/decisions {header} -d '{refund}'",
            f"curl -s -X POST {base}/v1/reviews/assess {header} -d '{review}'",
            f"curl -s {base}/v1/buyers/{buyer_id}/rating -H 'X-API-Key: {key}'",
            f"curl -s {base}/readyz",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.http.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    args = parser.parse_args(argv)
    overrides: dict = {}
    key = "<your key>"
    if not os.environ.get("SERVING_API_KEYS"):
        key, overrides = demo_keys(SCOPES)
    config = load_config(overrides)
    app = create_app(config)
    base = f"http://{args.host}:{args.port}"
    now = datetime.now(UTC)
    live = app.extensions[EXTENSION].runtime.live
    buyer = example_buyer(live, snapshot_buyers(config.snapshot), config.max_amount, now)
    print(f"\nDecision service on {base} (model {config.model_uri}, snapshot {config.snapshot}).", flush=True)
    print(f"Demo API key for this run: {key}\nTry:\n{example_calls(base, key, buyer, now)}\n", flush=True)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
