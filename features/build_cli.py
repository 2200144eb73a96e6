"""``python -m features build``: write the signal matrix of an export to one parquet file.

In process, shards are built in turn (:func:`features.build.build_shards`); with
``--cluster`` each shard is a Dask task and the device index a shuffle
(:mod:`features.build_cluster`); the output is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from features import build_cluster, cluster, registry
from features.build import build_shards, build_signals, empty_spine, parse_dates, to_arrow
from features.validate import ContractError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m features build``."""
    parser.add_argument("--data", required=True, type=Path, help="raw export directory")
    parser.add_argument(
        "--as-of", required=True, help="snapshot date(s), comma-separated, e.g. 2024-01-01,2024-02-01"
    )
    parser.add_argument("--out", required=True, type=Path, help="output parquet file")
    parser.add_argument("--buyers-limit", type=int, default=None, help="only the first N buyers")
    cluster.add_argument(parser)


def write_signals(
    data_dir: str | Path,
    as_of: Sequence[pd.Timestamp],
    out: Path,
    limit: int | None = None,
    log: Callable[[str], None] | None = None,
    client: Any = None,
    processes: int | None = None,
) -> int:
    """Build the signal matrix shard by shard and write it to ``out``; return the row count.

    The file is written under a temporary name next to ``out`` and renamed when complete,
    so ``out`` is either the whole result or untouched. In-process, shards are built in
    turn (:func:`features.build.build_shards`); with a Dask ``client`` each shard is a task
    (:mod:`features.build_cluster`) and the parts are appended in shard order: the same
    rows in the same order, one row group per shard either way.

    Args:
        data_dir: Raw export.
        as_of: Snapshot instants.
        out: Output parquet file (its folder is created).
        limit: Only the first ``limit`` buyers (in-process only).
        log: Optional callable taking a progress line.
        client: A ``distributed.Client`` (``None``: in-process).
        processes: In-process only: processes each shard is split over (default ``local_processes()``).

    Raises:
        ValueError: If ``limit`` is given with a ``client``.
        features.validate.ContractError: If the export breaks the contract.
        features.cluster.WorkerLost: If a cluster task was lost with its workers too often.
    """
    if client is not None and limit is not None:
        raise ValueError("limit: not supported on a cluster (the first N buyers are a sequential cut)")
    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = out.with_name(f".{out.name}.{token}.tmp")
    staging = out.with_name(f".{out.name}.{token}.parts")
    writer, rows = None, 0
    try:
        if client is None:
            tables = (to_arrow(frame) for frame in build_shards(data_dir, as_of, limit, log, processes))
        else:
            staging.mkdir()
            tables = build_cluster.build_parts(client, data_dir, as_of, staging, log)
        with contextlib.closing(tables):  # on failure, stop (and cancel) the remaining parts now
            for table in tables:
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += table.num_rows
        if writer is None:
            pq.write_table(to_arrow(build_signals({}, empty_spine())), tmp)
        else:
            writer.close()
            writer = None
        tmp.rename(out)
        return rows
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """Build the signal matrix and write it to ``args.out``; return the exit code.

    0 on success, 1 if the export breaks the contract or cluster workers were lost, 2 on
    bad arguments or an unusable ``--cluster``.
    """
    try:
        dates = parse_dates(args.as_of)
    except ValueError as err:
        print(f"--as-of: {err}", file=sys.stderr)
        return 2
    spec = getattr(args, "cluster", None)
    if spec is not None and args.buyers_limit is not None:
        print("--buyers-limit: not supported with --cluster", file=sys.stderr)
        return 2
    try:
        with cluster.connect(spec) as client:
            rows = write_signals(
                args.data, dates, args.out, args.buyers_limit, lambda m: print(m, file=sys.stderr), client
            )
    except ContractError as err:
        print(err, file=sys.stderr)
        return 1
    except cluster.ClusterError as err:
        return cluster.failed(err, f"{args.out} not written")
    print(f"wrote {rows} rows x {len(registry.signals())} signals to {args.out}")
    return 0
