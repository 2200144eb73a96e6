"""Train the buyer trust rating: ``python training/train.py --help``.

Simulates the default marketplace when no data is given, builds monthly point-in-time
snapshots, trains LightGBM on the older ones, calibrates and cuts stars on the validation
window, evaluates on the latest window against the old rule, a scorecard and the oracle,
logs everything to MLflow, registers the rating and promotes it when it beats the champion.
The pipeline itself is ``training.run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from features import cluster
from training.evaluation.gate import PROMOTE_MODES
from training.labels import PER_OPPORTUNITY, TARGETS
from training.model import DEFAULT_PARAMS
from training.policy.backtest import SEARCH_DAYS
from training.run import DEFAULT_DATA, DEFAULT_MARKET, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python training/train.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"raw-table export directory; default {DEFAULT_DATA}, simulated "
        f"({DEFAULT_MARKET['buyers']:,} buyers x {DEFAULT_MARKET['months']} months) when missing",
    )
    p.add_argument(
        "--valid-from",
        type=pd.Timestamp,
        default=None,
        help="first as-of date of the validation window (default: the opening month of the latest presale "
        "season ending 90 days before the test window)",
    )
    p.add_argument(
        "--test-from",
        type=pd.Timestamp,
        default=None,
        help="first as-of date of the out-of-time test window (default: the opening month of the latest "
        "presale season; the window runs to the last usable snapshot)",
    )
    p.add_argument(
        "--target",
        choices=TARGETS,
        default=PER_OPPORTUNITY,
        help=f"label to model (default {PER_OPPORTUNITY}: bad outcomes per opportunity, weighted by exposure)",
    )
    p.add_argument(
        "--params",
        type=json.loads,
        default={},
        help="JSON overrides of the LightGBM parameters, e.g. '{\"num_leaves\": 63}'",
    )
    p.add_argument(
        "--experiment", default="buyer-trust-rating", help="MLflow experiment (default buyer-trust-rating)"
    )
    p.add_argument(
        "--register-name",
        default="buyer-trust-rating",
        help="registered model name (default buyer-trust-rating)",
    )
    p.add_argument(
        "--promote",
        choices=PROMOTE_MODES,
        default="auto",
        help="auto: champion only if better (default); never; force",
    )
    p.add_argument("--seed", type=int, default=7, help="seed for sampling and LightGBM (default 7)")
    p.add_argument(
        "--cache-dir",
        type=lambda v: Path(v) if v else None,
        default=Path("data/cache"),
        help="reuse snapshot matrices built from the same data and code here (default data/cache; '' disables)",
    )
    p.add_argument(
        "--max-buyers", type=int, default=None, help="train on a random subset of about this many buyers"
    )
    p.add_argument(
        "--no-stability",
        action="store_true",
        help="skip the second rating fit (another seed) that measures reason stability",
    )
    p.add_argument(
        "--decision-log",
        default=None,
        help="SQLAlchemy URL of the service's ledger database: the shipped-early presales it decided are "
        "weighted by 1/propensity (training.propensity)",
    )
    p.add_argument(
        "--ignore-propensities",
        action="store_true",
        help="read --decision-log's outcomes as the export has them, but weigh every presale 1 (the naive retrain)",
    )
    p.add_argument(
        "--policy-days",
        type=int,
        default=SEARCH_DAYS,
        help=f"days of the validation window the whole-policy search replays, and of the test window "
        f"that judges it (default {SEARCH_DAYS}; 0 skips the search: the candidate is the allowance proposal)",
    )
    cluster.add_argument(p)  # assembly per shard and the rating's booster on Dask; --cache-dir is not used
    args = p.parse_args(argv)
    unknown = set(args.params) - set(DEFAULT_PARAMS) - {"monotone_constraints"}
    if unknown:
        p.error(f"--params: unknown parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
