"""``python -m serving.demo``: the development server with a demo API key and example calls.

The last step of the README demo. Uses the configured API keys when ``SERVING_API_KEYS`` is
set; otherwise makes a random server secret and a random key with every scope for this
process, prints the key, and prints ``curl`` calls for a buyer that is in the published snapshot. Production runs gunicorn (see docs/serving.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq

from serving.app import create_app
from serving.auth import SCOPES, demo_keys
from serving.config import load_config


def example_buyer(snapshot: str) -> int:
    """A buyer id from the file snapshot (the first row), or 1 when the snapshot is not a file."""
    if snapshot.startswith("redis://"):
        return 1
    try:
        column = pq.read_table(snapshot, columns=["buyer_id"]).column("buyer_id")
    except (OSError, KeyError):
        return 1
    return int(column[min(16, len(column) - 1)].as_py()) if len(column) else 1


def example_calls(base: str, key: str, buyer_id: int) -> str:
    """Shell lines a reader can paste to call the running service: the same buyer asks to ship a
    small and a large presale before the balance (the head prices each), and a fast refund."""
    now = datetime.now(UTC)
    due = (now + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ordered = (now - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def presale(n: int, order_id: int, amount: int) -> str:
        return (
            f'{{"request_id": "demo-{n}", "service": "presale_ship_before_balance", "buyer_id": {buyer_id}, '
            f'"order": {{"order_id": {order_id}, "amount": {amount}, "currency": "CNY", "category": "electronics", '
            f'"deposit_amount": {amount // 10}, "balance_due_at": "{due}"}}}}'
        )

    refund = (
        '{"request_id": "demo-3", "service": "fast_refund", '
        f'"buyer_id": {buyer_id}, "refund": {{"refund_id": 5001, "order_id": 9001, "amount": 120, '
        '"reason": "damaged", "kind": "return_and_refund", "evidence_photos": 2, '
        f'"order_amount": 300, "category": "apparel", "ordered_at": "{ordered}"}}}}'
    )
    order = presale(1, 9001, 300)
    big_order = presale(2, 9002, 4900)
    header = f"-H 'X-API-Key: {key}' -H 'Content-Type: application/json'"
    return "\n".join(
        [
            f"curl -s -X POST {base}/v1/decisions {header} -d '{order}'",
            f"curl -s -X POST {base}/v1/decisions {header} -d '{big_order}'",
            f"curl -s -X POST {base}/v1/decisions {header} -d '{refund}'",
            f"curl -s {base}/v1/buyers/{buyer_id}/rating -H 'X-API-Key: {key}'",
            f"curl -s {base}/readyz",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.demo", description=__doc__.splitlines()[0])
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
    print(f"\nDecision service on {base} (model {config.model_uri}, snapshot {config.snapshot}).", flush=True)
    print(
        f"Demo API key for this run: {key}\nTry:\n{example_calls(base, key, example_buyer(config.snapshot))}\n",
        flush=True,
    )
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
