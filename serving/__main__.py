"""``python -m serving``: the development server; ``python -m serving hash-key KEY``: an API-key digest.

Production runs gunicorn instead::

    gunicorn -w 2 -b 0.0.0.0:8000 --worker-tmp-dir /dev/shm "serving.app:create_app()"
"""

from __future__ import annotations

import argparse
import sys

from serving.config import hash_api_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving", description="Buyer trust decision service (dev server)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sub = parser.add_subparsers(dest="command")
    key = sub.add_parser("hash-key", help="print the sha256 digest to put in SERVING_API_KEY_HASHES")
    key.add_argument("key")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "hash-key":
        print(hash_api_key(args.key))
        return 0
    from serving.app import create_app

    create_app().run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
