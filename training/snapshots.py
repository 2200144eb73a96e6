"""Snapshot dates and their split by as-of time (the spine itself is ``features.build.make_spine``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.labels import HORIZON

MIN_HISTORY = pd.DateOffset(months=3)


def month_starts(start: pd.Timestamp, exported_at: pd.Timestamp) -> list[pd.Timestamp]:
    """Month starts with at least ``MIN_HISTORY`` of history and a fully observed label window."""
    earliest = start + MIN_HISTORY
    first = pd.Timestamp(year=earliest.year, month=earliest.month, day=1, tz="UTC")
    if first < earliest:
        first = first + pd.DateOffset(months=1)
    dates = pd.date_range(first, exported_at - HORIZON, freq="MS", tz="UTC")
    return list(dates)


@dataclass(frozen=True)
class TimeSplit:
    """As-of boundaries: train < valid_from <= valid < test_from <= test."""

    valid_from: pd.Timestamp
    test_from: pd.Timestamp

    def __post_init__(self) -> None:
        if not self.valid_from < self.test_from:
            raise ValueError(f"valid_from {self.valid_from} must precede test_from {self.test_from}")

    def assign(self, as_of: pd.Series) -> pd.Series:
        """'train', 'valid' or 'test' for each as-of time."""
        part = np.where(as_of < self.valid_from, "train", np.where(as_of < self.test_from, "valid", "test"))
        return pd.Series(part, index=as_of.index)


def default_split(dates: list[pd.Timestamp], valid_months: int = 2, test_months: int = 2) -> TimeSplit:
    """The last ``test_months`` dates are the test window, the ``valid_months`` before them validation."""
    if len(dates) < valid_months + test_months + 2:
        raise ValueError(
            f"{len(dates)} snapshot dates are too few for {valid_months} validation and {test_months} test "
            "months plus training: simulate or export a longer period"
        )
    return TimeSplit(valid_from=dates[-(valid_months + test_months)], test_from=dates[-test_months])
