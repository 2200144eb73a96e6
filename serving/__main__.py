"""``python -m serving``: the development server, and API-key management.

    python -m serving                                   # development server on 127.0.0.1:8000
    python -m serving new-key --scopes decide,outcomes  # a fresh key and its SERVING_API_KEYS entry
    python -m serving hash-key KEY --scopes admin       # the entry of an existing key
    python -m serving retention --older-than-days 400 --out DIR  # export old decisions/outcomes, delete them
    python -m serving backtest --data DIR --from 2025-10-20 --to 2025-11-19 [--policy FILE]  # replay a window
    python -m serving propose --data DIR --from 2024-05-01 --to 2024-07-01 --out candidate.yaml  # search a policy
    python -m serving monitor --day 2025-03-02 --out data/monitor  # the daily drift, approvals, calibration

Both key commands read the server secret from ``SERVING_API_KEY_SECRET``. Production runs
gunicorn instead::

    gunicorn -c python:serving.http.gunicorn_conf "serving.http.app:create_app()"
"""

from __future__ import annotations

import argparse
import os
import sys

from serving.http.auth import MIN_SECRET_CHARS, SCOPES, key_entry, new_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving", description="Buyer trust decision service (dev server, API keys)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sub = parser.add_subparsers(dest="command")
    scopes_help = f"comma-separated scopes among {', '.join(SCOPES)} (default decide)"
    key = sub.add_parser("hash-key", help="print the SERVING_API_KEYS entry of KEY")
    key.add_argument("key")
    key.add_argument("--scopes", default="decide", help=scopes_help)
    new = sub.add_parser("new-key", help="print a new random key, then its SERVING_API_KEYS entry")
    new.add_argument("--scopes", default="decide", help=scopes_help)
    from serving.ledger import retention
    from serving.monitor import run as monitor
    from serving.offline import backtest, policy_search

    retention.add_arguments(
        sub.add_parser(
            "retention", help="export decisions and outcomes older than N days to parquet, delete them"
        )
    )
    backtest.add_arguments(
        sub.add_parser("backtest", help="replay a window of opportunities through the decision path")
    )
    policy_search.add_arguments(
        sub.add_parser("propose", help="propose a whole policy by backtest on a validation window")
    )
    monitor.add_arguments(
        sub.add_parser(
            "monitor", help="judge a day against the champion's reference: metrics, record, report"
        )
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "retention":
        from serving.ledger.retention import main as retention

        return retention(args)
    if args.command == "backtest":
        from serving.offline.backtest import run

        return run(args)
    if args.command == "monitor":
        from serving.monitor.run import run

        return run(args)
    if args.command == "propose":
        from serving.offline.policy_search import run

        return run(args)
    if args.command in ("hash-key", "new-key"):
        secret = os.environ.get("SERVING_API_KEY_SECRET", "")
        if len(secret) < MIN_SECRET_CHARS:
            print(
                f"set SERVING_API_KEY_SECRET (at least {MIN_SECRET_CHARS} characters, e.g. "
                "$(python -c 'import secrets; print(secrets.token_hex(32))')) to the service's secret",
                file=sys.stderr,
            )
            return 2
        key = args.key if args.command == "hash-key" else new_key()
        try:
            entry = key_entry(key, secret, [s.strip() for s in args.scopes.split(",") if s.strip()])
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        if args.command == "new-key":
            print(key)
        print(entry)
        return 0
    from serving.http.app import create_app

    create_app().run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
