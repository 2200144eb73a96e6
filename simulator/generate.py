"""``python -m simulator [generate] --buyers N --months M --seed S --out DIR``: write an export."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from features import cluster
from simulator import shifts
from simulator.config import RunConfig
from simulator.write import write_export


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``generate``."""
    parser.add_argument("--buyers", type=int, default=20_000, help="buyer accounts (default 20000)")
    parser.add_argument("--months", type=int, default=24, help="simulated months (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1),
                        help="first day of the period, a first of month (default 2023-01-01)")  # fmt: skip
    parser.add_argument("--shard-size", type=int, default=50_000, help="buyers per part (default 50000)")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="KIND@YYYY-MM[:STRENGTH]",
        help=f"declared shift from a month, repeatable; KIND one of {', '.join(shifts.KINDS)} (simulator.shifts)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    cluster.add_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Write the export; exit code 0, or 2 on an invalid configuration."""
    try:
        cfg = RunConfig(
            buyers=args.buyers,
            months=args.months,
            seed=args.seed,
            start=args.start,
            shard_size=args.shard_size,
            shifts=tuple(shifts.parse(spec) for spec in args.shift),
        )
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"shard {done}/{total} written ({time.perf_counter() - began:.1f}s)", file=sys.stderr)

    try:
        with cluster.connect(args.cluster) as client:
            manifest = write_export(cfg, args.out, progress, client)
    except cluster.ClusterError as exc:
        return cluster.failed(exc, f"nothing written to {args.out}", prefix="simulator: ")
    if not args.quiet:
        print(
            f"wrote {args.out} ({manifest['buyers']} buyers, exported_at {manifest['exported_at']})",
            file=sys.stderr,
        )
    return 0
