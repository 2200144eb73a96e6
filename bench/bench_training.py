"""Training benchmark: wall time at about 1M snapshot rows x ~300 signals, the share spent in
``lgb.train``, and peak RSS.

    python bench/bench_training.py --data /tmp/market_1m --rows 1000000

The snapshot matrix is built from a simulated export (``python -m simulator``); building it is
timed separately, as it is the feature benchmark's subject. Prints one block of figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.io import export_time, read_manifest
from features.registry import monotone_constraints, signals
from training.dataset import SNAPSHOTS, assemble
from training.evaluation.report import build_report
from training.evaluation.scorecard import OptBinningScorecard
from training.labels import usable_as_of
from training.model import DEFAULT_PARAMS, Dataset, fit_rating
from training.snapshots import default_split, month_starts


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return own / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="simulated export directory")
    p.add_argument("--rows", type=int, default=1_000_000, help="snapshot rows to train on (default 1M)")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}")

    manifest = read_manifest(args.data)
    exported_at = export_time(args.data)
    dates = [
        d
        for d in month_starts(pd.Timestamp(manifest["start"], tz="UTC"), exported_at)
        if usable_as_of(pd.Series([d]), exported_at).iloc[0]
    ]
    buyers_needed = int(
        args.rows / len(dates) * 1.15
    )  # buyers register over time; a margin keeps rows >= target
    t0 = time.perf_counter()
    frame = assemble(args.data, dates, max_buyers=min(buyers_needed, manifest["buyers"]))[SNAPSHOTS]
    t_build = time.perf_counter() - t0
    names = [s.name for s in signals()]
    split = default_split(dates)
    parts = split.assign(frame["as_of"])
    train, valid, test = (frame[parts == k] for k in ("train", "valid", "test"))
    d_train = Dataset(train[names].to_numpy(np.float32), train["bad_90d"].to_numpy())
    d_valid = Dataset(valid[names].to_numpy(np.float32), valid["bad_90d"].to_numpy())

    timings: dict[str, float] = {}
    t1 = time.perf_counter()
    model = fit_rating(
        d_train, d_valid, names, {}, monotone_constraints(names), DEFAULT_PARAMS, timings=timings
    )
    t_fit = time.perf_counter() - t1
    t2 = time.perf_counter()
    registry = signals()
    scorecard = OptBinningScorecard(names, [s.risk_direction for s in registry]).fit(d_train.X, d_train.y)
    build_report(
        model, scorecard, train.sample(n=min(200_000, len(train)), random_state=7), test, "bad_90d", None, {}
    )
    t_eval = time.perf_counter() - t2
    total = t_fit + t_eval
    print(
        f"snapshot rows {len(frame):,} (train {len(train):,}, valid {len(valid):,}, test {len(test):,}) x {len(names)} signals"
    )
    print(f"building the matrix (features + labels): {t_build:8.1f} s")
    print(
        f"lgb.train:                               {timings['lgb_train']:8.1f} s  ({model.booster.best_iteration} trees kept)"
    )
    print(f"calibration, star cuts, reason table:    {timings['calibrate_and_reasons']:8.1f} s")
    print(f"evaluation (scorecard, metrics, plots):  {t_eval:8.1f} s")
    print(
        f"training total (fit + evaluation):       {total:8.1f} s; lgb.train share {timings['lgb_train'] / total:.0%}"
    )
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
