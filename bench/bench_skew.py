"""Train/serve skew of the service heads: each opportunity priced as training prices it and as the service does.

    python bench/bench_skew.py                                   # data/market, the champion, 4 busiest test days
    python bench/bench_skew.py --model-uri runs:/<run id>/rating --days 6

Takes the opportunities (presale deposits, refund requests) of the ``--days`` busiest days of the
default split's test window, prices each with the head as training does (signals as of the day's
snapshot, ``training.evaluation.skew.trained_probability``) and as the service does (that day's snapshot
published by ``serving.publish``, loaded by ``serving.live``, one request at a time), and prints
per service the median, the 90th percentile of ``|log(p_served / p_trained)|`` and the share moved by
more than 20%, beside the goal (``training.evaluation.skew.SKEW_GOAL``); then the same against the head priced on
the signals of the decision instant (how head rows were built before they took the day's snapshot).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from bench.machine import describe
from serving.config import load_config
from serving.live import load_model
from training.evaluation.skew import (
    SKEW_GOAL,
    busiest_days,
    measure,
    opportunity_rows,
    summarise,
    trained_probability,
)
from training.snapshots import default_split, snapshot_dates

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "serving" / "policy.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = load_config({"watch_interval_s": 0})
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/market"), help="raw export (default data/market)")
    p.add_argument(
        "--model-uri", default=defaults.model_uri, help=f"rating artifact (default {defaults.model_uri})"
    )
    p.add_argument(
        "--tracking-uri", default=defaults.mlflow_tracking_uri, help="MLflow store of the model URI"
    )
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file the service loads")
    p.add_argument(
        "--days", type=int, default=4, help="busiest test-window days to publish and price (default 4)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(describe(args.data))
    split = default_split(snapshot_dates(args.data))
    rows = opportunity_rows(args.data)
    both = pd.concat([r[["signals_as_of"]] for r in rows.values()], ignore_index=True)
    days = busiest_days(both, split.test_first, both["signals_as_of"].max(), args.days)
    print(
        f"test window from {split.test_first.date()}; snapshot days {', '.join(str(d.date()) for d in days)}"
    )
    skew, priced = measure(
        args.data, rows, days, args.model_uri, args.tracking_uri, args.policy,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )  # fmt: skip
    for result in skew.values():
        verdict = "met" if result.median <= SKEW_GOAL else "MISSED"
        print(f"  {result}  (goal median <= {SKEW_GOAL}: {verdict})")
    print(
        "the same opportunities with the signals of the decision instant (head rows before the daily snapshot):"
    )
    model = load_model(
        load_config({"model_uri": args.model_uri, "mlflow_tracking_uri": args.tracking_uri})
    ).model
    instant = {s: r.assign(signals_as_of=r["as_of"]) for s, r in priced.items()}
    for service, p in trained_probability(args.data, model, instant).items():
        print(f"  {summarise(service, p, priced[service]['p_served'].to_numpy())}")
    print(f"wall {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
