"""Benchmark the point-in-time signal builder against its goals and against DuckDB.

Cases (each in its own child process, so wall time and peak RSS are its own):
    a   1M buyers, one as-of date (the export date): ``python -m features build`` path.
    b   200k buyers x 12 monthly as-of dates: same path.
    compare-a / compare-b   25 representative signals on the same parquet files, by our
        builder (``build_signals`` with those signals, shard by shard, tables read with
        ``features.io.read_table``) and by DuckDB SQL, with the time ratio and a
        value-by-value check.

Goals on the team machine: (a) <= 180 s, (b) <= 300 s, ratio to DuckDB <= 1.5.

Usage::

    python bench/bench_features.py [--data-1m /tmp/market_1m] [--data-200k /tmp/market_200k]
                                   [--cases a,b,compare-a,compare-b]

Missing datasets are generated with the simulator (1M buyers takes a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"a": 180.0, "b": 300.0}
COMPARED = [
    "tenure_days_since_first",
    "logins_count_30d",
    "orders_count_30d",
    "orders_count_all",
    "spend_sum_365d",
    "order_amount_mean_365d",
    "order_amount_max_90d",
    "orders_days_since_last",
    "canceled_orders_count_90d",
    "cancel_rate_365d",
    "categories_distinct_365d",
    "refunds_count_90d",
    "refund_amount_sum_365d",
    "returns_not_shipped_count_365d",
    "refunds_rejected_count_365d",
    "balances_late_count_365d",
    "balance_days_late_max_365d",
    "reviews_malicious_count_365d",
    "rating_mean_365d",
    "disputes_lost_count_all",
    "cs_abusive_count_90d",
    "violations_severe_count_365d",
    "credit_score_last",
    "credit_score_min_90d",
    "bills_30dpd_count_365d",
]

DUCKDB_SQL = """
WITH s AS (SELECT buyer_id, as_of, epoch_us(as_of) AS t FROM spine),
b AS (
  SELECT s.buyer_id, s.as_of, (s.t - epoch_us(b.registered_at)) / {D} AS tenure_days_since_first
  FROM s JOIN read_parquet('{data}/buyers/*.parquet') b USING (buyer_id)),
ae AS (
  SELECT s.buyer_id, s.as_of, count(*) FILTER (WHERE e.ts >= s.t - 30 * {D}) AS logins_count_30d
  FROM s JOIN (SELECT buyer_id, epoch_us(ts) AS ts FROM read_parquet('{data}/account_events/*.parquet')
               WHERE event_type = 'login') e ON e.buyer_id = s.buyer_id AND e.ts < s.t
  GROUP BY s.buyer_id, s.as_of),
o AS (
  SELECT s.buyer_id, s.as_of,
    count(*) FILTER (WHERE o.c >= s.t - 30 * {D}) AS orders_count_30d,
    count(*) AS orders_count_all,
    coalesce(sum(o.amount) FILTER (WHERE o.c >= s.t - 365 * {D}), 0) AS spend_sum_365d,
    avg(o.amount) FILTER (WHERE o.c >= s.t - 365 * {D}) AS order_amount_mean_365d,
    max(o.amount) FILTER (WHERE o.c >= s.t - 90 * {D}) AS order_amount_max_90d,
    (any_value(s.t) - max(o.c)) / {D} AS orders_days_since_last,
    count(*) FILTER (WHERE o.x < s.t AND o.x >= s.t - 90 * {D}) AS canceled_orders_count_90d,
    count(*) FILTER (WHERE o.x < s.t AND o.x >= s.t - 365 * {D})
      / nullif(count(*) FILTER (WHERE o.c >= s.t - 365 * {D}), 0) AS cancel_rate_365d,
    count(DISTINCT o.category) FILTER (WHERE o.c >= s.t - 365 * {D}) AS categories_distinct_365d
  FROM s JOIN (SELECT buyer_id, epoch_us(created_at) AS c, epoch_us(canceled_at) AS x, amount, category
               FROM read_parquet('{data}/orders/*.parquet')) o ON o.buyer_id = s.buyer_id AND o.c < s.t
  GROUP BY s.buyer_id, s.as_of),
r AS (
  SELECT s.buyer_id, s.as_of,
    count(*) FILTER (WHERE r.q >= s.t - 90 * {D}) AS refunds_count_90d,
    coalesce(sum(r.amount) FILTER (WHERE r.q >= s.t - 365 * {D}), 0) AS refund_amount_sum_365d,
    count(*) FILTER (WHERE r.kind = 'return_and_refund' AND (r.rs IS NULL OR r.rs > r.q + 14 * {D})
                     AND r.q + 14 * {D} < s.t AND r.q + 14 * {D} >= s.t - 365 * {D}) AS returns_not_shipped_count_365d,
    count(*) FILTER (WHERE r.outcome = 'rejected' AND r.dec < s.t AND greatest(r.dec, r.q) >= s.t - 365 * {D})
      AS refunds_rejected_count_365d
  FROM s JOIN (SELECT buyer_id, epoch_us(requested_at) AS q, epoch_us(return_shipped_at) AS rs,
                      epoch_us(decided_at) AS dec, amount, kind, outcome
               FROM read_parquet('{data}/refunds/*.parquet')) r ON r.buyer_id = s.buyer_id AND r.q < s.t
  GROUP BY s.buyer_id, s.as_of),
p AS (
  SELECT s.buyer_id, s.as_of,
    count(*) FILTER (WHERE (p.paid IS NULL OR p.paid > p.due) AND greatest(p.due, p.dep) < s.t
                     AND greatest(p.due, p.dep) >= s.t - 365 * {D}) AS balances_late_count_365d,
    max((p.paid - p.due) / {D}) FILTER (WHERE p.paid > p.due AND greatest(p.paid, p.dep) < s.t
                     AND greatest(p.paid, p.dep) >= s.t - 365 * {D}) AS balance_days_late_max_365d
  FROM s JOIN (SELECT buyer_id, epoch_us(deposit_paid_at) AS dep, epoch_us(balance_due_at) AS due,
                      epoch_us(balance_paid_at) AS paid
               FROM read_parquet('{data}/presales/*.parquet')) p ON p.buyer_id = s.buyer_id AND p.dep < s.t
  GROUP BY s.buyer_id, s.as_of),
v AS (
  SELECT s.buyer_id, s.as_of,
    count(*) FILTER (WHERE v.rm < s.t AND v.rm >= s.t - 365 * {D}) AS reviews_malicious_count_365d,
    avg(v.rating) FILTER (WHERE v.c >= s.t - 365 * {D}) AS rating_mean_365d
  FROM s JOIN (SELECT buyer_id, epoch_us(created_at) AS c, epoch_us(removed_as_malicious_at) AS rm, rating
               FROM read_parquet('{data}/reviews/*.parquet')) v ON v.buyer_id = s.buyer_id AND v.c < s.t
  GROUP BY s.buyer_id, s.as_of),
d AS (
  SELECT s.buyer_id, s.as_of, count(*) FILTER (WHERE d.ruling = 'seller' AND d.cl < s.t) AS disputes_lost_count_all
  FROM s JOIN (SELECT buyer_id, epoch_us(opened_at) AS op, epoch_us(closed_at) AS cl, ruling
               FROM read_parquet('{data}/disputes/*.parquet')) d ON d.buyer_id = s.buyer_id AND d.op < s.t
  GROUP BY s.buyer_id, s.as_of),
cs AS (
  SELECT s.buyer_id, s.as_of, count(*) FILTER (WHERE c.abusive AND c.ts >= s.t - 90 * {D}) AS cs_abusive_count_90d
  FROM s JOIN (SELECT buyer_id, epoch_us(ts) AS ts, abusive FROM read_parquet('{data}/cs_contacts/*.parquet')) c
    ON c.buyer_id = s.buyer_id AND c.ts < s.t
  GROUP BY s.buyer_id, s.as_of),
vi AS (
  SELECT s.buyer_id, s.as_of,
    count(*) FILTER (WHERE v.severity >= 3 AND v.ts >= s.t - 365 * {D}) AS violations_severe_count_365d
  FROM s JOIN (SELECT buyer_id, epoch_us(ts) AS ts, severity FROM read_parquet('{data}/violations/*.parquet')) v
    ON v.buyer_id = s.buyer_id AND v.ts < s.t
  GROUP BY s.buyer_id, s.as_of),
cr AS (
  SELECT s.buyer_id, s.as_of, arg_max(c.score, c.ts) AS credit_score_last,
    min(c.score) FILTER (WHERE c.ts >= s.t - 90 * {D}) AS credit_score_min_90d
  FROM s JOIN (SELECT buyer_id, epoch_us(ts) AS ts, score FROM read_parquet('{data}/credit_scores/*.parquet')) c
    ON c.buyer_id = s.buyer_id AND c.ts < s.t
  GROUP BY s.buyer_id, s.as_of),
bl AS (
  SELECT s.buyer_id, s.as_of,
    count(*) FILTER (WHERE (bl.paid IS NULL OR bl.paid > bl.due + 30 * {D}) AND bl.due + 30 * {D} < s.t
                     AND bl.due + 30 * {D} >= s.t - 365 * {D}) AS bills_30dpd_count_365d
  FROM s JOIN (SELECT buyer_id, epoch_us(due_at) AS due, epoch_us(paid_at) AS paid
               FROM read_parquet('{data}/credit_bills/*.parquet')) bl ON bl.buyer_id = s.buyer_id AND bl.due < s.t
  GROUP BY s.buyer_id, s.as_of)
SELECT s.buyer_id, s.as_of, {columns}
FROM s
LEFT JOIN b USING (buyer_id, as_of) LEFT JOIN ae USING (buyer_id, as_of) LEFT JOIN o USING (buyer_id, as_of)
LEFT JOIN r USING (buyer_id, as_of) LEFT JOIN p USING (buyer_id, as_of) LEFT JOIN v USING (buyer_id, as_of)
LEFT JOIN d USING (buyer_id, as_of) LEFT JOIN cs USING (buyer_id, as_of) LEFT JOIN vi USING (buyer_id, as_of)
LEFT JOIN cr USING (buyer_id, as_of) LEFT JOIN bl USING (buyer_id, as_of)
"""
_ZERO_WHEN_NONE = ("count", "sum", "distinct")


def _dates(case: str) -> list[str]:
    if case.endswith("a"):
        return ["2025-01-01"]
    return [f"2024-{m:02d}-01" for m in range(2, 13)] + ["2025-01-01"]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_build(data: Path, dates: list[str]) -> dict:
    """Run the CLI build path in this process; report its figures."""
    from features import build_cli

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "signals.parquet"
        args = argparse.Namespace(data=data, as_of=",".join(dates), out=out, buyers_limit=None)
        started = time.perf_counter()
        code = build_cli.run(args)
        wall = time.perf_counter() - started
        import pyarrow.parquet as pq

        meta = pq.read_metadata(out)
        return {
            "exit": code,
            "wall_s": wall,
            "rows": meta.num_rows,
            "columns": meta.num_columns,
            "peak_rss_mib": _peak_rss_mib(),
            "out_mib": out.stat().st_size / 2**20,
        }


def child_compare(data: Path, dates: list[str]) -> dict:
    """Our builder and DuckDB SQL on the same files and spine, timed, then compared."""
    import duckdb
    import numpy as np
    import pandas as pd

    from features import build, io, registry

    signals = [registry.get(n) for n in COMPARED]
    tables_needed = sorted({s.table for s in signals} | {"buyers"})
    stamps = build.parse_dates(",".join(dates))
    started = time.perf_counter()
    read_s, parts = 0.0, []
    for k in io.shard_parts(data):
        t0 = time.perf_counter()
        tables = {name: io.read_table(data, name, part=k) for name in tables_needed}
        read_s += time.perf_counter() - t0
        parts.append(build.build_signals(tables, build.make_spine(tables["buyers"], stamps), signals))
    ours = pd.concat(parts, ignore_index=True)
    ours_s = time.perf_counter() - started

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    started = time.perf_counter()
    literal = ", ".join(f"TIMESTAMPTZ '{d} 00:00:00+00'" for d in dates)
    con.execute(
        f"CREATE TEMP TABLE spine AS SELECT b.buyer_id, d.as_of FROM read_parquet('{data}/buyers/*.parquet') b, "
        f"(SELECT unnest([{literal}]) AS as_of) d WHERE b.registered_at < d.as_of"
    )
    columns = ", ".join(
        f"coalesce({n}, 0) AS {n}" if registry.get(n).aggregation in _ZERO_WHEN_NONE else n for n in COMPARED
    )
    theirs = con.execute(DUCKDB_SQL.format(data=data, D=86_400_000_000, columns=columns)).df()
    duck_s = time.perf_counter() - started

    theirs["as_of"] = pd.to_datetime(theirs["as_of"], utc=True).astype("datetime64[us, UTC]")
    merged = ours.merge(
        theirs, on=["buyer_id", "as_of"], suffixes=("", "_duckdb"), how="outer", indicator=True
    )
    checks = {}
    for name in COMPARED:
        a = merged[name].to_numpy(dtype=float)
        b = merged[f"{name}_duckdb"].to_numpy(dtype=float)
        close = np.isclose(a, b, rtol=2e-6, atol=1e-3, equal_nan=True)
        checks[name] = {
            "mismatches": int((~close).sum()),
            "max_abs_diff": float(np.nanmax(np.abs(a - b), initial=0)),
        }
    return {
        "rows": len(ours),
        "duckdb_rows": len(theirs),
        "unmatched_rows": int((merged["_merge"] != "both").sum()),
        "ours_s": ours_s,
        "ours_read_s": read_s,
        "ours_compute_s": ours_s - read_s,
        "duckdb_s": duck_s,
        "ratio": ours_s / duck_s,
        "compute_ratio": (ours_s - read_s) / duck_s,
        "duckdb_threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "checks": checks,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _ensure(data: Path, buyers: int, seed: int) -> None:
    if (data / "manifest.json").exists():
        return
    print(f"generating {buyers:,} buyers into {data} ...", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "generate",
            "--buyers",
            str(buyers),
            "--months",
            "24",
            "--seed",
            str(seed),
            "--out",
            str(data),
            "--quiet",
        ],
        check=True,
    )


def _run_child(kind: str, data: Path, dates: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--data", str(data), "--as-of", ",".join(dates)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-1m", type=Path, default=Path("/tmp/market_1m"))
    parser.add_argument("--data-200k", type=Path, default=Path("/tmp/market_200k"))
    parser.add_argument("--cases", default="a,b,compare-a,compare-b")
    parser.add_argument("--child", choices=["build", "compare"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = child_build if args.child == "build" else child_compare
        print(json.dumps(run(args.data, args.as_of.split(","))))
        return 0

    print(
        f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores"
    )
    from features import registry

    print(f"signals: {len(registry.signals())}")
    cases = args.cases.split(",")
    data = {"a": args.data_1m, "b": args.data_200k}
    for case in sorted({c[-1] for c in cases}):
        _ensure(data[case], 1_000_000 if case == "a" else 200_000, 7 if case == "a" else 11)
    for case in cases:
        dates = _dates(case)
        where = f"{data[case[-1]]}, {len(dates)} as-of date(s)"
        if not case.startswith("compare"):
            r = _run_child("build", data[case], dates)
            verdict = "meets" if r["wall_s"] <= GOALS[case] else "MISSES"
            print(
                f"\n[{case}] {where}\n  wall {r['wall_s']:.1f} s ({verdict} goal {GOALS[case]:.0f} s), "
                f"rows {r['rows']:,} x {r['columns'] - 2} signals, {r['rows'] / r['wall_s']:,.0f} rows/s, "
                f"peak RSS {r['peak_rss_mib']:,.0f} MiB, output {r['out_mib']:,.0f} MiB"
            )
            continue
        r = _run_child("compare", data[case[-1]], dates)
        bad = {n: c for n, c in r["checks"].items() if c["mismatches"]}
        verdict = "meets" if r["ratio"] <= 1.5 else "MISSES"
        print(
            f"\n[{case}] {len(COMPARED)} signals, ours vs DuckDB ({r['duckdb_threads']} threads), {where}\n"
            f"  ours {r['ours_s']:.1f} s (read {r['ours_read_s']:.1f} s + compute {r['ours_compute_s']:.1f} s), "
            f"DuckDB {r['duckdb_s']:.1f} s; ratio {r['ratio']:.2f} ({verdict} goal 1.5), "
            f"compute-only ratio {r['compute_ratio']:.2f}\n"
            f"  rows ours {r['rows']:,}, DuckDB {r['duckdb_rows']:,}, unmatched {r['unmatched_rows']}; "
            f"values agree on {len(COMPARED) - len(bad)}/{len(COMPARED)} signals; peak RSS {r['peak_rss_mib']:,.0f} MiB"
        )
        for name, check in bad.items():
            print(f"  DIFFERS {name}: {check['mismatches']} rows, max abs diff {check['max_abs_diff']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
