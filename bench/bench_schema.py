"""Schemathesis with every check against the served OpenAPI document: cases and failures per operation.

    python bench/bench_schema.py                      # 500 cases per operation and phase
    python bench/bench_schema.py --max-examples 50 --json /tmp/schema.json

Serves the decision service on 127.0.0.1 in this process (a werkzeug server thread; a tiny real
model over registry signals with both service heads and the review head, a snapshot of 3,000
buyers, the shipped policy, an SQLite ledger, all in a temporary folder) and runs ``schemathesis run
--checks all --max-examples N`` against its ``/openapi.json``: every phase (examples, coverage,
fuzzing, stateful), positive and negative data; ``bench/schema_hooks.py`` drops the generated bodies
that break a rule between two fields (JSON Schema cannot state one), and a schema-valid request may be
answered 422 when the generator reused its idempotency key. Prints, per operation, the cases run and the cases
that failed a check with the checks they failed, then schemathesis' own summary; exits 1 when a case
failed. ``tests/serving/test_contract.py`` runs the same document with fewer cases in the suite.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
POLICY = HERE.parent / "serving" / "policy.yaml"
# A schema-valid request may still get 422: its request_id or outcome_id was used before with another
# request (the generators repeat "0"); the document says so. Every other status is the default's.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""
POLICY_SIGNALS = [  # the signals the shipped policy's rules read
    "balances_unpaid_7d_count_365d",
    "balances_overdue_open",
    "violations_confirmed_fraud_count_all",
    "reviews_malicious_count_365d",
]
BUYERS = 3000
KEY, SECRET = "bench-key", "bench-secret-0123456789abcdef"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--max-examples", type=int, default=500, help="cases per operation and phase (default 500)"
    )
    p.add_argument("--seed", type=int, default=1, help="schemathesis' seed (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def serve(root: Path) -> tuple[object, str]:
    """Start the service on a free port of 127.0.0.1; returns the server and its base URL."""
    from werkzeug.serving import make_server

    from bench.tiny import save_tiny_rating, synthetic_dataset
    from features.registry import signal_names
    from serving.app import create_app
    from serving.auth import SCOPES, key_entry
    from serving.snapshot import FileWriter

    names = [n for n in signal_names() if n not in POLICY_SIGNALS][:8] + POLICY_SIGNALS
    with warnings.catch_warnings():  # MLflow's hints about saving a pyfunc
        warnings.simplefilter("ignore")
        uri = save_tiny_rating(root / "rating", names, seed=0, heads=True, review=True)
    writer = FileWriter(root / "snapshot.parquet", names, "2025-06-01T00:00:00+00:00")
    writer.append(np.arange(BUYERS, dtype=np.int64), synthetic_dataset(names, BUYERS, seed=11).X)
    writer.commit()
    app = create_app(
        {
            "database_url": f"sqlite:///{root / 'ledger.db'}",
            "model_uri": uri,
            "snapshot": str(root / "snapshot.parquet"),
            "policy_path": str(POLICY),
            "api_keys": [key_entry(KEY, SECRET, SCOPES)],
            "api_key_secret": SECRET,
            "watch_interval_s": 0,
        }
    )
    logging.getLogger().setLevel(logging.WARNING)  # one line per request and per reload otherwise
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="bench-schema-server", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def per_operation(events: Path) -> dict[str, dict]:
    """Cases run and cases failed per operation (``METHOD /path``), from schemathesis' NDJSON events."""
    out: dict[str, dict] = collections.defaultdict(
        lambda: {"cases": 0, "failed": 0, "checks": collections.Counter()}
    )
    for line in events.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        for case_id, node in recorder.get("cases", {}).items():
            case = node["value"]
            op = out[f"{case['method']} {case['path']}"]
            op["cases"] += 1
            failed = {
                c["name"] for c in recorder.get("checks", {}).get(case_id, []) if c["status"] == "failure"
            }
            op["failed"] += bool(failed)
            op["checks"].update(failed)
    return {name: {**v, "checks": dict(v["checks"])} for name, v in sorted(out.items())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at start (1/5/15 min): {load}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server, url = serve(root)
        events = root / "events.ndjson"
        config = root / "schemathesis.toml"
        config.write_text(CONFIG)
        cmd = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
            "run", f"{url}/openapi.json", "--checks", "all",
            "--max-examples", str(args.max_examples), "--seed", str(args.seed), "-H", f"X-API-Key: {KEY}",
            "--report", "ndjson", "--report-ndjson-path", str(events), "--no-color",
        ]  # fmt: skip
        with urllib.request.urlopen(f"{url}/openapi.json") as answer:
            paths = json.load(answer)["paths"]
        operations = {f"{method.upper()} {path}" for path, methods in paths.items() for method in methods}
        started = time.perf_counter()
        try:
            hooks = {
                "SCHEMATHESIS_HOOKS": "bench.schema_hooks",
            }
            run = subprocess.run(  # in the temporary folder: schemathesis keeps its crash cache in its cwd
                cmd, capture_output=True, text=True, check=False, env=os.environ | hooks, cwd=root
            )
        finally:
            server.shutdown()
        seconds = time.perf_counter() - started
        figures = per_operation(events) if events.exists() else {}
    print(
        f"schemathesis --checks all --max-examples {args.max_examples} --seed {args.seed}: {seconds:.0f} s\n"
    )
    print(f"{'operation':36s} {'cases':>7s} {'failed':>7s}  checks failed")
    documented = {name: op for name, op in figures.items() if name in operations}
    other = [op for name, op in figures.items() if name not in operations]
    rows = [*documented.items()]
    if other:  # the unsupported_method check: a method a path does not declare must get 405
        merged = {
            "cases": sum(o["cases"] for o in other),
            "failed": sum(o["failed"] for o in other),
            "checks": dict(sum((collections.Counter(o["checks"]) for o in other), collections.Counter())),
        }
        rows.append((f"other methods ({len(other)} path+method)", merged))
    for name, op in rows:
        checks = ", ".join(f"{c} x{n}" for c, n in sorted(op["checks"].items())) or "-"
        print(f"{name:36s} {op['cases']:7,d} {op['failed']:7,d}  {checks}")
    print(
        f"{'all':36s} {sum(o['cases'] for o in figures.values()):7,d} {sum(o['failed'] for o in figures.values()):7,d}"
    )
    for header in ("=== FAILURES", "=== SUMMARY"):  # schemathesis' own report, from its first section
        if header in run.stdout:
            print("\n" + run.stdout[run.stdout.rfind("\n", 0, run.stdout.find(header)) + 1 :].rstrip())
            break
    else:
        print("\n" + run.stdout[-3000:] + run.stderr[-3000:])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at end (1/5/15 min): {load}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"max_examples": args.max_examples, "seconds": seconds, "operations": figures}, indent=2
            )
        )
    failed = sum(o["failed"] for o in figures.values())
    return 1 if failed or run.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
