"""Benchmark the simulator: wall time, peak RSS and rows per table at a given size.

    python bench/bench_simulator.py                      # 1M buyers x 24 months
    python bench/bench_simulator.py --buyers 50000 --months 24

The machine is shared with other engineers: the 1/5/15-minute load average at start is
printed so figures from a busy machine can be recognised.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from features import contract


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=1_000_000, help="buyers (default 1000000)")
    parser.add_argument("--months", type=int, default=24, help="months (default 24)")
    parser.add_argument("--seed", type=int, default=7, help="seed (default 7)")
    parser.add_argument("--shard-size", type=int, default=50_000, help="buyers per shard (default 50000)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: a temp dir, removed after)"
    )
    return parser.parse_args(argv)


def rows_per_table(out: Path) -> dict[str, int]:
    """Row counts from the parquet footers of every part."""
    return {
        name: sum(pq.ParquetFile(f).metadata.num_rows for f in sorted((out / name).glob("part-*.parquet")))
        for name in contract.TABLE_NAMES
    }


def bench(args: argparse.Namespace, out: Path) -> None:
    """Run the simulator as a child process on ``out`` and print the figures."""
    load = os.getloadavg()
    print(
        f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores (shared machine)"
    )
    print(
        f"simulating {args.buyers:,} buyers x {args.months} months, seed {args.seed}, shard size {args.shard_size:,}"
    )
    cmd = [sys.executable, "-m", "simulator", "--buyers", str(args.buyers), "--months", str(args.months),
           "--seed", str(args.seed), "--shard-size", str(args.shard_size), "--out", str(out), "--quiet"]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - began
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rows = rows_per_table(out)
    size = sum(f.stat().st_size for f in out.rglob("*.parquet"))
    print(f"wall time: {wall:.1f} s")
    print(
        f"peak RSS: simulator (children) {children_kb / 1024:.0f} MiB, benchmark (self) {self_kb / 1024:.0f} MiB"
    )
    print(f"output: {size / 2**20:.0f} MiB parquet")
    print("rows per table:")
    for name, n in rows.items():
        print(f"  {name:<15} {n:>14,}")
    print(f"  {'total':<15} {sum(rows.values()):>14,}  ({sum(rows.values()) / wall:,.0f} rows/s)")
    print("truth rows:")
    for f in sorted((out / "truth").glob("*.parquet")):
        print(f"  {f.stem:<22} {pq.ParquetFile(f).metadata.num_rows:>14,}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit code 0."""
    args = parse_args(argv)
    if args.out is not None:
        bench(args, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_simulator_") as tmp:
        bench(args, Path(tmp) / "market")
    return 0


if __name__ == "__main__":
    sys.exit(main())
