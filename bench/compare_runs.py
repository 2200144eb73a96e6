"""Compare the latest finished run of two MLflow SQLite stores, metric by metric (timings aside).

    python bench/compare_runs.py /tmp/before.db /tmp/after.db

A change that should move no decision or figure must print ``identical`` here: every logged metric
of the run other than the step timings (``time_*_s``) equal to the last digit, the same names in
both, and the same logged parameters (``data`` aside: each run may read its own copy of an export).
Exit status 0 when identical, 1 otherwise (each difference printed).
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from pathlib import Path

IGNORED_PARAMS = ("data",)


def latest_run(db: Path) -> tuple[str, dict[str, float], dict[str, str]]:
    """``(run id, metrics, params)`` of the store's latest finished run (metrics' last values)."""
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no such MLflow store")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT run_uuid FROM runs WHERE status = 'FINISHED' ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise ValueError(f"{db}: no finished run")
        run = row[0]
        metrics = dict(conn.execute("SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run,)))
        params = dict(conn.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run,)))
    return run, metrics, params


def differences(a: dict, b: dict, skip: tuple[str, ...] = (), prefix_skip: str | None = None) -> list[str]:
    """Lines naming each key missing on one side or whose values differ (NaN equals NaN)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key in skip or (prefix_skip and key.startswith(prefix_skip) and key.endswith("_s")):
            continue
        if key not in a or key not in b:
            out.append(f"{key}: only in {'the first' if key in a else 'the second'}")
            continue
        x, y = a[key], b[key]
        same = x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        if not same:
            out.append(f"{key}: {x!r} != {y!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path, help="an MLflow SQLite file (mlflow.db)")
    p.add_argument("second", type=Path, help="another")
    args = p.parse_args(argv)
    run_a, metrics_a, params_a = latest_run(args.first)
    run_b, metrics_b, params_b = latest_run(args.second)
    lines = differences(metrics_a, metrics_b, prefix_skip="time_")
    lines += [f"param {line}" for line in differences(params_a, params_b, skip=IGNORED_PARAMS)]
    compared = sum(1 for k in metrics_a if not (k.startswith("time_") and k.endswith("_s")))
    print(f"runs {run_a[:8]} and {run_b[:8]}: {compared} metrics and {len(params_a)} params compared")
    for line in lines:
        print(f"  {line}")
    print("identical" if not lines else f"{len(lines)} difference(s)")
    return 0 if not lines else 1


if __name__ == "__main__":
    sys.exit(main())
