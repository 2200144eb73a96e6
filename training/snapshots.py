"""Snapshot dates and the honest out-of-time split (the spine itself is ``features.build.make_spine``).

Train, validation and test are windows of monthly as-of dates separated by at least the label
horizon, so no label of one window reaches into the next, and each evaluation window holds a
presale season (a June 18 or November 11 festival, whose deposits are taken in the month before
it). Opportunities (a presale at its deposit, a refund at its request) belong to the window
whose as-of range holds their decision instant, extended to the month after its last as-of date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.io import export_time, read_manifest
from features.outcomes import HORIZON
from training.labels import usable_as_of

MIN_HISTORY = pd.DateOffset(months=3)
PRESALE_FESTIVALS = ((6, 18), (11, 11))  # (month, day): the two presale seasons of the marketplace
MONTH = pd.DateOffset(months=1)
SNAPSHOT_EVERY = 3
"""Months between one buyer's snapshots in every window: one per label window (90 days), so a buyer's
rows do not share outcomes; each month still holds a third of the buyers (phase per buyer), and every
buyer of a window of at least three months appears in it."""


def month_starts(start: pd.Timestamp, exported_at: pd.Timestamp) -> list[pd.Timestamp]:
    """Month starts with at least ``MIN_HISTORY`` of history and a fully observed label window."""
    earliest = start + MIN_HISTORY
    first = pd.Timestamp(year=earliest.year, month=earliest.month, day=1, tz="UTC")
    if first < earliest:
        first = first + MONTH
    dates = pd.date_range(first, exported_at - HORIZON, freq="MS", tz="UTC")
    return list(dates)


@dataclass(frozen=True)
class TimeSplit:
    """Three as-of windows, each ``[first, last]`` (inclusive), in time order with horizon gaps.

    Raises:
        ValueError: Windows out of order, or closer than the label horizon.
    """

    train_last: pd.Timestamp
    valid_first: pd.Timestamp
    valid_last: pd.Timestamp
    test_first: pd.Timestamp

    def __post_init__(self) -> None:
        if not self.valid_first <= self.valid_last:
            raise ValueError(f"valid_first {self.valid_first} must not follow valid_last {self.valid_last}")
        for earlier, later, what in (
            (self.train_last, self.valid_first, "train_as_of_last and valid_as_of_first"),
            (self.valid_last, self.test_first, "valid_as_of_last and test_as_of_first"),
        ):
            if earlier + HORIZON > later:
                raise ValueError(
                    f"{what} are {(later - earlier).days} days apart; the label horizon needs "
                    f"{HORIZON.days} ({earlier.date()} -> {later.date()})"
                )

    def assign(self, as_of: pd.Series) -> pd.Series:
        """'train', 'valid', 'test', or 'gap' (rows in no window) for each as-of time."""
        part = np.select(
            [
                as_of <= self.train_last,
                (as_of >= self.valid_first) & (as_of <= self.valid_last),
                as_of >= self.test_first,
            ],
            ["train", "valid", "test"],
            "gap",
        )
        return pd.Series(part, index=as_of.index)

    def snapshot_rows(self, spine: pd.DataFrame, every: int = SNAPSHOT_EVERY) -> np.ndarray:
        """Positions of the spine rows (``buyer_id``, ``as_of``) to build, window by window (train,
        valid, test; spine order within each): in each window one row per buyer every ``every``
        months, the buyer's phase set by its id (the same phase in every window). Rows in the gaps
        between windows are never used. Window by window, a frame of these rows is split into
        windows by slicing, without copying (``split_snapshots``)."""
        window = self.assign(spine["as_of"]).to_numpy()
        months = spine["as_of"].dt.year.to_numpy(np.int64) * 12 + spine["as_of"].dt.month.to_numpy(np.int64)
        ids = spine["buyer_id"].to_numpy(np.int64).astype(np.uint64)
        phase = (ids * np.uint64(2_654_435_761) % np.uint64(2**32) % np.uint64(every)).astype(
            np.int64
        )  # Knuth's hash
        kept = (months + phase) % every == 0
        return np.concatenate(
            [np.flatnonzero((window == name) & kept) for name in ("train", "valid", "test")]
        )

    def assign_instant(self, t: pd.Series) -> pd.Series:
        """The window of a decision instant: a month's as-of date covers the month that follows it."""
        utc = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        month = pd.DatetimeIndex(utc.astype("datetime64[M]").astype("datetime64[us]")).tz_localize("UTC")
        return self.assign(pd.Series(month, index=t.index))

    def opportunities_in(self, rows: pd.DataFrame, window: str) -> pd.DataFrame:
        """The opportunity rows (decision instant in ``as_of``) decided in ``window``, reindexed."""
        return rows[self.assign_instant(rows["as_of"]).to_numpy() == window].reset_index(drop=True)

    def params(self) -> dict[str, str]:
        """The window bounds as ISO dates (logged as MLflow params)."""
        return {
            "train_as_of_last": self.train_last.date().isoformat(),
            "valid_as_of_first": self.valid_first.date().isoformat(),
            "valid_as_of_last": self.valid_last.date().isoformat(),
            "test_as_of_first": self.test_first.date().isoformat(),
        }


def season_start(dates: list[pd.Timestamp], last: pd.Timestamp) -> pd.Timestamp | None:
    """The as-of date opening the latest presale season whose festival month is at or before ``last``.

    A season opens on the first of the month before its festival (the deposit phase).
    """
    starts = []
    for d in dates:
        if d <= last and any(d.month == m for m, _ in PRESALE_FESTIVALS):
            starts.append(d - MONTH)
    usable = [s for s in starts if s >= dates[0]]
    return max(usable) if usable else None


def last_before(dates: list[pd.Timestamp], bound: pd.Timestamp) -> pd.Timestamp | None:
    """The latest date at or before ``bound``."""
    earlier = [d for d in dates if d <= bound]
    return max(earlier) if earlier else None


def default_split(
    dates: list[pd.Timestamp],
    valid_first: pd.Timestamp | None = None,
    test_first: pd.Timestamp | None = None,
) -> TimeSplit:
    """The honest split of ``dates``: test from the latest presale season, validation from the season
    before it that ends a horizon earlier, training up to a horizon before validation.

    Args:
        dates: Usable monthly as-of dates, ascending.
        valid_first: Override of the first validation date (default: the season's opening month).
        test_first: Override of the first test date (default: the latest season's opening month).

    Raises:
        ValueError: The dates cannot hold three such windows (the message says what is missing).
    """
    if not dates:
        raise ValueError("no usable snapshot dates: simulate or export a longer period")
    test_first = test_first or season_start(dates, dates[-1])
    if test_first is None:
        raise ValueError(
            f"no presale season (months {[m for m, _ in PRESALE_FESTIVALS]}) among {dates[0].date()}..{dates[-1].date()}"
        )
    valid_last = last_before(dates, test_first - HORIZON)
    if valid_last is None:
        raise ValueError(
            f"no as-of date {HORIZON.days} days before the test window ({test_first.date()}): export a longer period"
        )
    valid_first = valid_first or season_start(dates, valid_last)
    if valid_first is None or valid_first > valid_last:
        raise ValueError(
            f"no presale season in a validation window ending {valid_last.date()}: export a longer period"
        )
    train_last = last_before(dates, valid_first - HORIZON)
    if train_last is None:
        raise ValueError(
            f"no training dates {HORIZON.days} days before validation ({valid_first.date()}): export a longer period"
        )
    return TimeSplit(
        train_last=train_last, valid_first=valid_first, valid_last=valid_last, test_first=test_first
    )


def split_validating(dates: list[pd.Timestamp], first: pd.Timestamp) -> TimeSplit:
    """The honest split whose validation window opens at the first presale season from ``first`` on,
    when a later season is usable for the test window; else ``default_split(dates)``.

    A retrain after the product has decided for a while (``first``: its first decision) then learns
    from its own decisions: the validation rows early stopping, calibration and the presale uplift are
    fitted on are the ones the product decided (weighted by the decision log's propensities), and
    the test window is still the latest presale season. When the export holds no season after the
    product's first one (its outcomes need the label horizon, the test window another), the
    product's decisions stay in the test window, as in ``default_split``.

    Raises:
        ValueError: As ``default_split``.
    """
    default = default_split(dates)
    opening = [
        d - MONTH
        for d in dates
        if any(d.month == m for m, _ in PRESALE_FESTIVALS) and first <= d - MONTH and d - MONTH >= dates[0]
    ]
    ours = [s for s in opening if s + HORIZON <= default.test_first]
    if not ours:
        return default
    try:
        return default_split(dates, valid_first=min(ours))
    except ValueError:  # no training window a horizon before it: keep the default
        return default


def utc(ts: pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC."""
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def snapshot_dates(data: Path) -> list[pd.Timestamp]:
    """Monthly as-of dates of an export with 3 months of history and a complete label window."""
    manifest = read_manifest(data)
    exported_at = export_time(data)
    start = utc(pd.Timestamp(manifest["start"])) if "start" in manifest else None
    dates = month_starts(start or exported_at - pd.DateOffset(months=24), exported_at)
    return [d for d in dates if usable_as_of(pd.Series([d]), exported_at).iloc[0]]


def split_snapshots(frame: pd.DataFrame, split: TimeSplit) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The train, validation and test snapshot rows (rows in the gaps are dropped). A window whose
    rows are contiguous (``TimeSplit.snapshot_rows`` builds them so) is a slice, not a copy."""
    parts = split.assign(frame["as_of"]).to_numpy()
    out = []
    for window in ("train", "valid", "test"):
        rows = np.flatnonzero(parts == window)
        contiguous = len(rows) == 0 or rows[-1] - rows[0] + 1 == len(rows)
        out.append(frame.iloc[rows[0] : rows[-1] + 1] if contiguous and len(rows) else frame.iloc[rows])
    return tuple(out)
