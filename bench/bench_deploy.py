"""The product in the loop for a simulated year: wall time, and served loss beside the oracle, two retrain modes.

    python bench/bench_deploy.py --buyers 20000 --months 12 --retrain-every 3 --out /tmp/bench_deploy

Simulates the marketplace (``--history`` months), then runs ``python -m simulator deploy`` twice
from the same start: retraining with the decision log's propensities, and naively
(``--ignore-propensities``). The first champion is trained once and shared (its MLflow store is
copied into the naive run's folder before it starts). Prints the wall time of each loop with the
machine's load, and per month and service: money approved, truth-expected loss per unit with its
95% bootstrap interval, and the ratio to the oracle's expected loss at the same money.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from simulator.config import RunConfig
from simulator.deploy import FIRST_CHAMPION, deploy
from simulator.write import write_export


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--buyers", type=int, default=20_000)
    p.add_argument(
        "--history", type=int, default=28, help="months before the loop (default 28: it starts in May)"
    )
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--retrain-every", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--naive", action=argparse.BooleanOptionalAction, default=True, help="also run the naive retrain"
    )
    args = p.parse_args()

    market = args.out / "market"
    if not (market / "manifest.json").exists():
        write_export(RunConfig(buyers=args.buyers, months=args.history, seed=args.seed), market)
    modes = {"propensity": False, **({"naive": True} if args.naive else {})}
    figures = {}
    for mode, naive in modes.items():
        out = args.out / mode
        if naive and not (out / "mlruns").exists():  # share the first champion and the world
            out.mkdir(parents=True, exist_ok=True)
            shutil.copytree(args.out / "propensity" / FIRST_CHAMPION, out / "mlruns")
            shutil.copytree(args.out / "propensity" / "world", out / "world")
        load = os.getloadavg()[0]
        began = time.perf_counter()
        summary = deploy(market, out, args.months, args.retrain_every, naive, progress=print)
        wall = time.perf_counter() - began
        print(
            f"{mode}: {args.buyers:,} buyers, {args.months} months, retrain every {args.retrain_every} "
            f"({len(summary['retrains'])} retrains), {wall:.0f} s wall on {os.cpu_count()} cores, "
            f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; train.py reads the decision log: "
            f"{summary['train_reads_decision_log']}"
        )
        figures[mode] = pd.DataFrame(summary["figures"])
    cols = [
        "month",
        "service",
        "approvals",
        "money",
        "loss_per_unit",
        "loss_per_unit_lo",
        "loss_per_unit_hi",
        "loss_vs_oracle",
    ]
    table = pd.concat({m: f[cols] for m, f in figures.items()}, names=["mode"]).reset_index(level=0)
    with pd.option_context(
        "display.width", 200, "display.max_rows", 200, "display.float_format", "{:,.4f}".format
    ):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
