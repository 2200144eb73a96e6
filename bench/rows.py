"""The rows the decision benchmarks fit and evaluate on (``bench/bench_decisions.py``, ``bench/bench_ceiling.py``),
and the options they share.

The rows ``training/train.py`` uses (the default split, one snapshot per buyer and label window), built
in two parts so that a large marketplace can be trained on a sample of its buyers and still be
evaluated on every buyer.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.dataset import assemble
from training.snapshots import TimeSplit, default_split, snapshot_dates


@dataclass(frozen=True)
class BenchRows:
    """The split, the frames through its validation window and the frames of its test window."""

    split: TimeSplit
    fitting: dict[str, pd.DataFrame]
    evaluation: dict[str, pd.DataFrame]


def bench_parser(description: str) -> argparse.ArgumentParser:
    """The options both decision benchmarks take: the export, the training sample, the seed, a JSON file."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--data", type=Path, default=Path("data/market"), help="export with truth/ (default data/market)"
    )
    p.add_argument(
        "--train-buyers", type=int, default=None, help="train on a random sample of about this many buyers"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p


def bench_rows(data: Path, train_buyers: int | None, seed: int, progress: Callable[[str], None]) -> BenchRows:
    """Frames through the validation window (of a random sample of about ``train_buyers`` buyers
    when given) and frames of the test window (every buyer), on the default split of ``data``."""
    dates = snapshot_dates(data)
    split = default_split(dates)
    progress("windows: " + ", ".join(f"{k} {v}" for k, v in split.params().items()))
    fitting = assemble(data, [d for d in dates if d <= split.valid_last], train_buyers, seed, progress, split)
    evaluation = assemble(data, [d for d in dates if d >= split.test_first], None, seed, progress, split)
    return BenchRows(split, fitting, evaluation)
