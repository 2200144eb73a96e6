"""Point in time: which events a buyer signal as of ``as_of`` may see. The one rule.

Two rules, both here and nowhere else:

1. **When a row is known** (:func:`known_at`). A row of a raw table counts from the
   latest of: the table's event time; the signal's time column (plus a lag in days);
   for every state or outcome column the signal reads, that column's own timestamp
   (``canceled_at`` for a cancellation, ``closed_at`` for a dispute ruling,
   ``decided_at`` for a refund outcome, ...: :data:`STATE_TIMES`); and for a
   "did not happen by a deadline" test, the deadline. A row whose known time is null
   is never known (the fact had not happened at export time).
2. **Which known rows a spine row sees** (:func:`locate`). A spine row
   ``(buyer_id, as_of)`` sees the buyer's rows known strictly before ``as_of``; a
   window of ``w`` days sees those known in ``[as_of - w days, as_of)``: the start is
   inclusive, the end exclusive, so an event exactly at ``as_of`` is never seen and
   one exactly ``w`` days earlier is.

A third rule says which as-of instant a *decision* is scored at (:func:`published_as_of`):
the service decides on the online snapshot, published daily as of the last UTC midnight, so
a decision at ``t`` sees the buyer's signals as of ``t`` floored to the day, never the events
of the same day (the order being decided included). Training's opportunity rows and the
service's backtest both derive it from here.

All times are UTC instants handled as int64 microseconds since the epoch
(:data:`NAT` for null).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract

DAY = 86_400_000_000
"""One day in microseconds."""

NAT = np.iinfo(np.int64).min
"""The int64 value of a null instant."""

STATE_TIMES: dict[tuple[str, str], str] = {
    ("refunds", "outcome"): "decided_at",
    ("disputes", "ruling"): "closed_at",
    ("credit_bills", "amount_paid"): "paid_at",
}
"""Non-timestamp state columns and the timestamp from which their value is known.

Every nullable timestamp column is a state known from its own value; scheduled
timestamps (due dates) and all other columns are known with the row's event time.
"""

_MAX_KEY = 2**62

PUBLISH_EVERY = "1D"
"""How often the online snapshot is published (a pandas frequency): daily, as of UTC midnight."""


def published_as_of(decided_at: pd.Series) -> pd.Series:
    """The as-of instant of the snapshot the service scores a decision with: the decision's UTC
    instant floored to ``PUBLISH_EVERY`` (the last daily publish at or before it).

    Args:
        decided_at: Decision instants (tz-aware, any zone; naive are taken as UTC).

    Returns:
        UTC instants, same index, dtype ``datetime64[us, UTC]``.
    """
    t = pd.to_datetime(decided_at, utc=True)
    return t.dt.floor(PUBLISH_EVERY).astype("datetime64[us, UTC]")


def micros(values: pd.Series | np.ndarray | Sequence) -> np.ndarray:
    """Instants as int64 microseconds since the epoch, UTC; null -> :data:`NAT`.

    Args:
        values: Timestamps (tz-aware are converted to UTC, naive are taken as UTC).
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        naive = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return naive.to_numpy(dtype="datetime64[us]").view(np.int64).copy()
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("us").asi8.copy()


def state_time(table: str, column: str) -> str | None:
    """The timestamp column from which ``table.column``'s value is known, if it is a state.

    Returns:
        The governing timestamp column, or ``None`` when the column is known with the
        row's event time (ids, enums, amounts, scheduled dates).
    """
    if (table, column) in STATE_TIMES:
        return STATE_TIMES[(table, column)]
    try:
        col = contract.table(table).column(column)
    except KeyError:
        return None
    return column if col.kind == "timestamp" and col.nullable and not col.scheduled else None


def known_at(
    frame: pd.DataFrame,
    table: str,
    time: str,
    lag_days: int = 0,
    state_columns: Iterable[str] = (),
    deadlines: Iterable[tuple[str, int]] = (),
) -> np.ndarray:
    """When each row becomes known to a signal, in microseconds (:data:`NAT` = never).

    Args:
        frame: Rows of ``table``.
        table: Contract table name (or a derived table with the same shape of rules).
        time: The signal's time column; the row counts from ``time + lag_days``.
        lag_days: Days after ``time`` at which the row becomes known (for facts such
            as "return not shipped within 14 days").
        state_columns: Columns the signal reads whose values are states; each
            contributes its governing timestamp (:func:`state_time`).
        deadlines: ``(column, days)`` pairs: "something did not happen by
            ``column + days``" is known at that deadline.

    Returns:
        The row-wise latest of all those instants; :data:`NAT` where any is null.
    """
    columns = [time]
    event_time = _event_time(table)
    if event_time is not None and event_time in frame.columns:
        columns.append(event_time)
    for column in state_columns:
        governing = state_time(table, column)
        if governing is not None:
            columns.append(governing)
    base = micros(frame[time])
    missing = base == NAT
    out = base + np.int64(lag_days) * DAY
    for column in dict.fromkeys(columns[1:]):
        values = micros(frame[column])
        missing |= values == NAT
        np.maximum(out, values, out=out)
    for column, days in deadlines:
        values = micros(frame[column])
        missing |= values == NAT
        np.maximum(out, values + np.int64(days) * DAY, out=out)
    out[missing] = NAT
    return out


def _event_time(table: str) -> str | None:
    try:
        return contract.table(table).event_time
    except KeyError:
        return None


@dataclass(frozen=True)
class Located:
    """Where each spine row's events are, as positions in the sorted known events.

    Attributes:
        order: Row numbers of the input events that some spine row can see (buyer in
            the spine, known time not null), sorted by (buyer, known time); stable
            for ties.
        time: Known time of each sorted event (microseconds).
        start: Per spine row, position of the buyer's first sorted event.
        end: Per spine row, position of the first sorted event of the buyer known at
            or after ``as_of`` (exclusive end of every window).
        lower: ``window_days -> per spine row position`` of the buyer's first event
            known at or after ``as_of - window_days`` (inclusive window start).
    """

    order: np.ndarray
    time: np.ndarray
    start: np.ndarray
    end: np.ndarray
    lower: dict[int, np.ndarray]

    def window_start(self, window_days: int | None) -> np.ndarray:
        """Inclusive start positions for a window (``None`` = all time)."""
        return self.start if window_days is None else self.lower[window_days]


def locate(
    event_buyer: np.ndarray,
    event_time: np.ndarray,
    spine_buyer: np.ndarray,
    spine_time: np.ndarray,
    windows_days: Iterable[int] = (),
) -> Located:
    """Find, for every spine row, the events it may see: the point-in-time function.

    A spine row ``(b, T)`` sees events ``start <= i < end`` of the sorted known events
    (buyer ``b``, known time ``< T``), and in a window of ``w`` days those with
    ``lower[w] <= i < end`` (known time in ``[T - w days, T)``). Vectorised: one sort
    of the events and one ``searchsorted`` per bound, no per-row Python.

    Args:
        event_buyer: Buyer id of each event (int64).
        event_time: Known time of each event, microseconds; :data:`NAT` = never known.
        spine_buyer: Buyer id of each spine row.
        spine_time: ``as_of`` of each spine row, microseconds.
        windows_days: Window lengths in days whose starts are wanted.

    Returns:
        The :class:`Located` positions.
    """
    event_buyer = np.asarray(event_buyer, dtype=np.int64)
    event_time = np.asarray(event_time, dtype=np.int64)
    spine_buyer = np.asarray(spine_buyer, dtype=np.int64)
    spine_time = np.asarray(spine_time, dtype=np.int64)
    buyers = _unique(spine_buyer)
    rank = np.searchsorted(buyers, event_buyer).clip(max=max(len(buyers) - 1, 0))
    keep = (event_time != NAT) & (buyers[rank] == event_buyer) if len(buyers) else np.zeros(0, bool)
    if keep.all():
        rows, time = np.arange(len(keep)), event_time
    else:
        rows = np.flatnonzero(keep)
        rank, time = rank[rows], event_time[rows]
    if not _is_sorted(rank, time):
        by = np.lexsort((time, rank))
        rows, rank, time = rows[by], rank[by], time[by]
    query_rank = np.searchsorted(buyers, spine_buyer)
    first = np.zeros(len(buyers) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rank, minlength=len(buyers)), out=first[1:])
    start = first[query_rank]
    end = _search(rank, time, query_rank, spine_time)
    lower = {
        w: _search(rank, time, query_rank, spine_time - np.int64(w) * DAY)
        for w in dict.fromkeys(windows_days)
    }
    return Located(rows, time, start, end, lower)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted unique values; linear when already sorted (the usual spine)."""
    if len(values) < 2 or not np.all(values[1:] >= values[:-1]):
        return np.unique(values)
    return values[np.r_[True, values[1:] != values[:-1]]]


def _is_sorted(rank: np.ndarray, time: np.ndarray) -> bool:
    if len(rank) < 2:
        return True
    step = np.diff(rank)
    return bool(np.all((step > 0) | ((step == 0) & (time[1:] >= time[:-1]))))


def _search(rank: np.ndarray, time: np.ndarray, query_rank: np.ndarray, query_time: np.ndarray) -> np.ndarray:
    """Position of the first event with ``(rank, time) >= (query_rank, query_time)``.

    Events are sorted by (rank, time). Keys ``rank * span + time`` make one int64
    ``searchsorted``; ranks are processed in chunks small enough not to overflow.
    """
    out = np.empty(len(query_rank), dtype=np.int64)
    if len(rank) == 0:
        out[:] = 0
        return out
    t0, t1 = int(time.min()), int(time.max())
    span = t1 - t0 + 2
    query_time = np.clip(query_time, t0, t1 + 1) - t0
    chunk = max(_MAX_KEY // span, 1)
    n_chunks = int(rank[-1]) // chunk + 1
    if n_chunks == 1:
        keys = rank * span + (time - t0)
        return np.searchsorted(keys, np.minimum(query_rank, rank[-1] + 1) * span + query_time)
    edges = np.searchsorted(rank, np.arange(n_chunks + 1) * chunk)
    query_chunk = query_rank // chunk
    for c in np.unique(query_chunk[query_chunk < n_chunks]):
        lo, hi = edges[c], edges[c + 1]
        keys = (rank[lo:hi] - c * chunk) * span + (time[lo:hi] - t0)
        mine = np.flatnonzero(query_chunk == c)
        out[mine] = lo + np.searchsorted(keys, (query_rank[mine] - c * chunk) * span + query_time[mine])
    out[query_chunk >= n_chunks] = len(rank)
    return out


def pairs(
    events: pd.DataFrame,
    spine: pd.DataFrame,
    time: np.ndarray,
    window_days: int | None = None,
) -> pd.DataFrame:
    """The (spine row, event row) pairs a point-in-time join yields.

    Args:
        events: Event rows with a ``buyer_id`` column.
        spine: Rows with ``buyer_id`` and ``as_of``.
        time: Known time of each event row (microseconds, e.g. from :func:`known_at`).
        window_days: Only events in ``[as_of - window_days, as_of)``; ``None`` = all time.

    Returns:
        Columns ``spine_row`` and ``event_row`` (positions in ``spine`` / ``events``),
        ordered by spine row then known time.
    """
    found = locate(
        events["buyer_id"].to_numpy(),
        time,
        spine["buyer_id"].to_numpy(),
        micros(spine["as_of"]),
        () if window_days is None else (window_days,),
    )
    lo, hi = found.window_start(window_days), found.end
    sizes = np.maximum(hi - lo, 0)
    spine_row = np.repeat(np.arange(len(spine)), sizes)
    offset = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    event_row = found.order[np.repeat(lo, sizes) + offset]
    return pd.DataFrame({"spine_row": spine_row, "event_row": event_row})
