"""Where a training run searches and judges its whole policy (``training.policy.backtest``)."""

from __future__ import annotations

import pandas as pd

from training.policy.backtest import festival_window, search_window
from training.snapshots import TimeSplit


def utc(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def test_the_window_ends_the_day_after_the_festival_it_holds():
    start, end = festival_window(utc("2024-05-01"), utc("2024-08-01"), 30)
    assert (start, end) == (utc("2024-05-20"), utc("2024-06-19"))  # the June 18 festival
    start, end = festival_window(utc("2024-10-01"), utc("2025-01-01"), 30)
    assert (start, end) == (utc("2024-10-13"), utc("2024-11-12"))  # Nov 11


def test_without_a_festival_inside_it_is_the_last_days():
    assert festival_window(utc("2024-01-01"), utc("2024-04-01"), 30) == (utc("2024-03-02"), utc("2024-04-01"))
    # a festival too close to the start for a whole window is not taken
    assert festival_window(utc("2024-06-01"), utc("2024-08-01"), 30) == (utc("2024-07-02"), utc("2024-08-01"))


def test_the_search_replays_the_validation_months():
    split = TimeSplit(utc("2024-01-01"), utc("2024-05-01"), utc("2024-07-01"), utc("2024-10-01"))
    start, end = search_window(split, 30)
    assert utc("2024-05-01") <= start and end <= utc("2024-08-01")
    assert end == utc("2024-06-19")
