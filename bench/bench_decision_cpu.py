"""The CPU one decision costs: a fixed script of decisions through ``serving.handle.handle_decision``
on the real app's objects (model, snapshot, policy) and a SQLite ledger in a temporary directory.

Measured two ways that a shared machine does not distort as much as wall time does:

* CPU time of this process per decision (``time.process_time``; the median and the mean), and
* with ``--callgrind``, run under ``valgrind --tool=callgrind --instr-atstart=no``, the instructions
  of exactly the measured loop (the loop is bracketed with callgrind's start/stop client requests
  through a three-line helper compiled with gcc into the temporary directory; the valgrind headers
  must be installed). Instruction counts repeat from run to run whatever the load; they weigh
  numpy's tight loops as much as the interpreter's branchy code, so read them beside CPU time.

The script is the same for every code version (seeded bodies, a fixed decision time, decision ids
counted from 0, background checkpoints off), so ``--dump PREFIX`` writes the answers and the
ledger's rows (``latency_ms`` left out) for a byte comparison of two versions:

    python bench/bench_decision_cpu.py --model-uri models:/buyer-trust-rating@champion \\
        --snapshot data/online/snapshot.parquet --tracking-uri sqlite:///mlruns/mlflow.db
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=cg.%p \\
        python bench/bench_decision_cpu.py ... --decisions 300 --callgrind
    callgrind_annotate cg.<pid>.1
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sqlite3
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.service.bodies import decision_bodies

MARKERS = """#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("decisions"); }
"""
WARM = 200  # decisions before the measured ones (imports, caches, the ledger's first pages)
NOW = datetime(2025, 7, 1, 12, 0, 0)  # every decision's time (naive UTC)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    p.add_argument("--snapshot", default="data/online/snapshot.parquet")
    p.add_argument("--decisions", type=int, default=3000, help="measured decisions (default 3000)")
    p.add_argument("--synchronous", default="NORMAL", help="ledger durability (default NORMAL: no fsync)")
    p.add_argument("--callgrind", action="store_true", help="bracket the loop for callgrind (see above)")
    p.add_argument("--dump", help="write PREFIX.answers and PREFIX.ledger")
    return p.parse_args(argv)


def _markers(workdir: Path) -> ctypes.CDLL:
    """The callgrind start/stop helper (no-ops outside valgrind)."""
    source, library = workdir / "markers.c", workdir / "markers.so"
    source.write_text(MARKERS)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return ctypes.CDLL(str(library))


def _dump(prefix: str, answers: list, database: Path) -> None:
    with open(f"{prefix}.answers", "w") as f:
        for a in answers:
            f.write(
                json.dumps({"replayed": a.replayed, "text": a.text, "body": a.body}, sort_keys=True) + "\n"
            )
    with sqlite3.connect(database) as conn, open(f"{prefix}.ledger", "w") as f:
        for table, order in (("decisions", "decision_id"), ("reservations", "reservation_id")):
            cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")  # noqa: S608 - constant names
            names = [c[0] for c in cursor.description]
            for row in cursor:
                record = {k: v for k, v in zip(names, row, strict=True) if k != "latency_ms"}
                f.write(json.dumps({"table": table} | record, sort_keys=True) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    from serving.handle import handle_decision
    from serving.http.app import close_app, create_app
    from serving.http.auth import SCOPES, demo_keys
    from serving.http.body import decode_json_object
    from serving.http.services import EXTENSION

    print(f"load average at start {tuple(round(x, 2) for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-decision-cpu-") as tmp:
        workdir = Path(tmp)
        markers = _markers(workdir) if args.callgrind else None
        _, keys = demo_keys(SCOPES)
        app = create_app(
            {
                "database_url": f"sqlite:///{workdir / 'ledger.db'}",
                "model_uri": args.model_uri,
                "mlflow_tracking_uri": args.tracking_uri,
                "snapshot": str(Path(args.snapshot).resolve()),
                "api_keys": keys["api_keys"],
                "api_key_secret": keys["api_key_secret"],
                "watch_interval_s": 0,
                "checkpoint_interval_s": 0,  # no background thread: its CPU would count
                "max_snapshot_age_s": 0,
                "sqlite_synchronous": args.synchronous,
            }
        )
        s = app.extensions[EXTENSION]
        live = s.runtime.live
        ids = iter(range(10**9))
        s.ledger.new_decision_id = lambda: str(uuid.UUID(int=next(ids), version=4))
        raws = decision_bodies(
            np.asarray(live.snapshot.buyer_ids), WARM + args.decisions, np.random.default_rng(0), "cpu"
        )
        raws += raws[WARM + 3 : WARM + 5]  # two replays of stored decisions
        bodies = [decode_json_object(r) for r in raws]
        for body in bodies[:WARM]:
            handle_decision(body, live, s.ledger, s.config, s.metrics, time.perf_counter(), "bench", NOW)
        answers, spent = [], []
        if markers is not None:
            markers.start()
        for body in bodies[WARM:]:
            started = time.process_time()
            answers.append(
                handle_decision(body, live, s.ledger, s.config, s.metrics, time.perf_counter(), "bench", NOW)
            )
            spent.append(time.process_time() - started)
        if markers is not None:
            markers.stop()
        us = np.array(spent) * 1e6
        print(
            f"{len(us)} decisions, synchronous={args.synchronous}: CPU time per decision median "
            f"{np.median(us):.1f} us, mean {us.mean():.1f} us (p10 {np.percentile(us, 10):.1f}, "
            f"p90 {np.percentile(us, 90):.1f})"
        )
        if args.dump:
            _dump(args.dump, answers, workdir / "ledger.db")
        close_app(app)
    print(f"load average at end {tuple(round(x, 2) for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
