"""``python -m features validate DIR``: check a raw-table export against the data contract.

The command-line edge of :mod:`features.validate`: it reads the export shard by shard
through :mod:`features.io` (which runs the pure checks) and prints what it found.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from features import io
from features.validate import ContractError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``python -m features validate DIR [--exported-at ISO] [--part K]``."""
    parser.add_argument("data_dir", help="Export directory: <table>.parquet, <table>/ parts, or <table>.csv.")
    parser.add_argument(
        "--exported-at",
        default=None,
        help="Export time, ISO-8601 (naive = UTC). Default: manifest.json exported_at, else now.",
    )
    parser.add_argument(
        "--part", type=int, default=None, help="Validate only this shard (default: all, one by one)."
    )


def run(args: argparse.Namespace) -> int:
    """Validate an export shard by shard (``features.io.validate_export``); print an OK line (exit 0)
    or every problem (exit 2). A folder export is loaded one part at a time, so memory stays bounded
    by the largest shard."""
    if not Path(args.data_dir).is_dir():
        print(f"FAILED {args.data_dir}: not a directory")
        return 2
    try:
        available = io.shard_parts(args.data_dir)
        exported_at = io.export_time(args.data_dir, args.exported_at)
    except ValueError as err:
        print(f"FAILED {args.data_dir}: {err}")
        return 2
    if args.part is not None and args.part not in available:
        print(f"FAILED {args.data_dir}: no part {args.part}; parts are {available}")
        return 2
    parts = available if args.part is None else [args.part]
    try:
        rows = io.validate_export(args.data_dir, exported_at, None if args.part is None else parts)
    except ContractError as err:
        print(
            f"FAILED {args.data_dir}: {len(err.problems)} problem(s) (exported_at {exported_at.isoformat()})"
        )
        for p in err.problems:
            print(f"  - {p}")
        return 2
    print(
        f"OK {args.data_dir}: {len(rows)} tables, {sum(rows.values()):,} rows in {len(parts)} shard(s) "
        f"(exported_at {exported_at.isoformat()}; "
        + ", ".join(f"{name} {n:,}" for name, n in rows.items())
        + ")"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m features.validate_cli DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m features.validate_cli", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    # Re-import so that this module's names are those of features.validate_cli, not a __main__ copy.
    from features.validate_cli import main as _main

    raise SystemExit(_main())
