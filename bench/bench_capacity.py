"""Measurements behind the capacity plan (docs/scale.md): raw and signal bytes per buyer, and the rating's fit time per row.

    python -m simulator --buyers 50000 --months 24 --shard-size 25000 --out /tmp/cap_m
    python -m features build --data /tmp/cap_m --as-of 2024-12-01 --out /tmp/cap_s1.parquet
    python bench/bench_capacity.py --data /tmp/cap_m --signals /tmp/cap_s1.parquet --rows 100000,200000,400000
    python bench/bench_capacity.py --data /tmp/cap_m --ledger postgresql://postgres@127.0.0.1:5432/test

Prints (1) each raw table's rows and parquet bytes on disk, per buyer of the export; (2) the
signal file's bytes per (buyer, date) row; (3) with ``--rows``, the rating's ``lgb.train``
(default parameters and monotone constraints, a fixed number of rounds and no early stopping,
so every size does the same work per row) on that many snapshot rows of the export: wall and
CPU seconds for the binning (``lgb.Dataset``) and for the rounds; (4) with ``--ledger``, the
PostgreSQL bytes one decision costs: ``--decisions`` requests of the serving bench's mix
(half presale, half fast refund, ``bench.service.bodies``) through the app (Flask test client, ``bench.synthetic``'s
model over every registry signal with 100 trees, the shipped policy) into a fresh schema, then the WAL written and
the ledger tables' size with indexes, per decision row; the schema is dropped afterwards.
Process CPU is what to extrapolate from on a shared machine; the load average is printed at
start and end.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.io import export_time, read_manifest
from features.registry import monotone_constraints, signals
from training.dataset import SNAPSHOTS, assemble
from training.model import DEFAULT_PARAMS, split_params
from training.snapshots import month_starts

ROWS_PER_DATE_GUESS = 45_000  # buyers registered at a snapshot date of a 50k-buyer export


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: the export, the signal file and the fit sizes."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="simulated export directory")
    p.add_argument("--signals", type=Path, help="a `python -m features build` output of that export")
    p.add_argument(
        "--rows", default="", help="comma-separated snapshot row counts to fit on (default: no fit)"
    )
    p.add_argument("--rounds", type=int, default=50, help="boosting rounds per fit (default 50)")
    p.add_argument(
        "--ledger", help="a PostgreSQL URL to measure the bytes per decision in (default: not measured)"
    )
    p.add_argument("--decisions", type=int, default=1000, help="requests for --ledger (default 1000)")
    return p.parse_args(argv)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread)."""
    t = os.times()
    return t.user + t.system


def raw_sizes(data: Path) -> None:
    """Print rows and parquet bytes per table, and per buyer of the export."""
    manifest = read_manifest(data)
    buyers = manifest["buyers"]
    print(f"raw tables of {data}: {buyers:,} buyers, {manifest['months']} months")
    print(f"  {'table':<16}{'rows':>12}{'rows/buyer':>12}{'bytes':>14}{'B/buyer':>10}{'B/row':>8}")
    total_rows = total_bytes = 0
    for table in manifest["tables"]:
        files = sorted((data / table).glob("*.parquet"))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        size = sum(f.stat().st_size for f in files)
        total_rows, total_bytes = total_rows + rows, total_bytes + size
        per_row = size / rows if rows else 0.0
        print(
            f"  {table:<16}{rows:>12,}{rows / buyers:>12.1f}{size:>14,}{size / buyers:>10,.0f}{per_row:>8.1f}"
        )
    print(
        f"  {'total':<16}{total_rows:>12,}{total_rows / buyers:>12.1f}{total_bytes:>14,}{total_bytes / buyers:>10,.0f}"
    )


def signal_sizes(path: Path) -> None:
    """Print the signal file's bytes per (buyer, date) row, on disk and as float32 in memory."""
    meta = pq.ParquetFile(path).metadata
    n_signals = meta.num_columns - 2  # buyer_id, as_of
    size = path.stat().st_size
    print(
        f"signals {path}: {meta.num_rows:,} rows x {n_signals} signals, {size:,} bytes on disk "
        f"= {size / meta.num_rows:,.0f} B per row; float32 in memory {n_signals * 4:,} B per row"
    )


def snapshot_matrix(data: Path, rows: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """At least ``rows`` labelled snapshot rows of the export (the latest usable dates), as float32."""
    manifest = read_manifest(data)
    dates = month_starts(pd.Timestamp(manifest["start"], tz="UTC"), export_time(data))
    wanted = dates[-min(len(dates), -(-rows // ROWS_PER_DATE_GUESS) + 1) :]
    frame = assemble(data, wanted)[SNAPSHOTS]
    frame = frame[frame["bad_90d"].notna()]
    if len(frame) < rows:
        raise ValueError(f"--rows {rows:,}: the export {data} has only {len(frame):,} usable snapshot rows")
    names = [s.name for s in signals()]
    return frame[names].to_numpy(np.float32), frame["bad_90d"].to_numpy(np.float32), names


def fit_scaling(data: Path, sizes: list[int], rounds: int) -> None:
    """Print the rating's binning and boosting time at each size (the same rounds each)."""
    import lightgbm as lgb

    t0, c0 = time.perf_counter(), cpu_seconds()
    X, y, names = snapshot_matrix(data, max(sizes))
    print(
        f"assembled {len(X):,} snapshot rows x {len(names)} signals in {time.perf_counter() - t0:.1f} s "
        f"wall, {cpu_seconds() - c0:.1f} s CPU"
    )
    params, _, _ = split_params(DEFAULT_PARAMS)
    params["monotone_constraints"] = monotone_constraints(names)
    rng = np.random.default_rng(7)
    print(
        f"  {'rows':>10}{'bin wall s':>12}{'bin CPU s':>11}{'fit wall s':>12}{'fit CPU s':>11}{'CPU us/row/round':>18}"
    )
    for n in sizes:
        pick = np.sort(rng.choice(len(X), size=n, replace=False))
        t1, c1 = time.perf_counter(), cpu_seconds()
        dtrain = lgb.Dataset(X[pick], y[pick], feature_name=names, params=params).construct()
        t2, c2 = time.perf_counter(), cpu_seconds()
        lgb.train(params, dtrain, num_boost_round=rounds)
        t3, c3 = time.perf_counter(), cpu_seconds()
        per = (c3 - c2) / n / rounds * 1e6
        print(f"  {n:>10,}{t2 - t1:>12.1f}{c2 - c1:>11.1f}{t3 - t2:>12.1f}{c3 - c2:>11.1f}{per:>18.3f}")


def ledger_bytes(url: str, n: int) -> None:
    """Print the WAL and the ledger tables' bytes per decision row of ``n`` requests to PostgreSQL."""
    import tempfile
    import uuid

    import psycopg

    from bench.service.bodies import decision_bodies
    from bench.synthetic import synthetic_setup
    from serving.app import close_app, create_app
    from serving.auth import SCOPES, demo_keys

    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        buyers = np.arange(3000)
        uri, snapshot = synthetic_setup(Path(tmp), len(buyers), rounds=100)
        key, keys = demo_keys(SCOPES)
        schema = f"bench_capacity_{uuid.uuid4().hex[:10]}"
        cfg = {"database_url": url, "database_schema": schema, "model_uri": uri, "watch_interval_s": 0}
        app = create_app(cfg | {"snapshot": str(snapshot)} | keys)
        sql_url = url.replace("postgresql+psycopg://", "postgresql://")
        try:
            client = app.test_client()
            bodies = decision_bodies(buyers, n, np.random.default_rng(0), uuid.uuid4().hex[:8])
            with psycopg.connect(sql_url, autocommit=True) as conn:
                start = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
                answers = [
                    client.post(
                        "/v1/decisions",
                        data=b,
                        headers={"X-API-Key": key, "Content-Type": "application/json"},
                    )
                    for b in bodies
                ]
                wal = int(conn.execute("select pg_current_wal_lsn() - %s::pg_lsn", (start,)).fetchone()[0])
                sizes = {
                    t: conn.execute(
                        f'select count(*), pg_total_relation_size(%s), coalesce(avg(pg_column_size(r.*)), 0) from "{schema}".{t} r',
                        (f'"{schema}".{t}',),
                    ).fetchone()
                    for t in ("decisions", "reservations", "buyer_locks")
                }
        finally:
            app.extensions["buyer_trust"].ledger.drop()
            close_app(app)
    codes: dict[str, int] = {}
    for a in answers:
        tag = a.json.get("decision") if a.status_code == 200 else f"{a.status_code} {a.json.get('code')}"
        codes[tag] = codes.get(tag, 0) + 1
    rows = sizes["decisions"][0]
    print(
        f"ledger {sql_url.split('@')[-1]}: {n:,} requests -> {codes}; WAL {wal:,} B = {wal / max(rows, 1):,.0f} B per decision row"
    )
    for table, (count, total, tuple_bytes) in sizes.items():
        print(
            f"  {table:<14}{count:>7,} rows  {total:>11,} B with indexes  {float(tuple_bytes):>6,.0f} B per tuple"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the measurements asked for and print them with the machine's load."""
    args = parse_args(argv)
    print(
        f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores {os.cpu_count()}"
    )
    raw_sizes(args.data)
    if args.signals:
        signal_sizes(args.signals)
    if args.rows:
        fit_scaling(args.data, [int(x) for x in args.rows.split(",")], args.rounds)
    if args.ledger:
        ledger_bytes(args.ledger, args.decisions)
    print(f"load average at end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
