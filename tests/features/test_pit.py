"""The point-in-time rule: window edges, known times, and locate() against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features import pit

T = pd.Timestamp("2024-06-01", tz="UTC")


def _us(ts: pd.Timestamp) -> int:
    return int(pit.micros([ts])[0])


def _brute(event_buyer, event_time, spine_buyer, spine_time, window):
    """Per spine row, the sorted list of event rows it sees (the definition, row by row)."""
    out = []
    for b, t in zip(spine_buyer, spine_time, strict=True):
        lo = -np.inf if window is None else t - window * pit.DAY
        seen = [
            i
            for i, (eb, et) in enumerate(zip(event_buyer, event_time, strict=True))
            if eb == b and et != pit.NAT and lo <= et < t
        ]
        out.append(sorted(seen, key=lambda i: (event_time[i], i)))
    return out


def _seen(found: pit.Located, window):
    lo = found.window_start(window)
    return [list(found.order[a:b]) if b > a else [] for a, b in zip(lo, found.end, strict=True)]


def test_micros_roundtrip_and_null():
    values = pd.Series([T, pd.NaT], dtype="datetime64[us, UTC]")
    out = pit.micros(values)
    assert out[0] == 1_717_200_000_000_000
    assert out[1] == pit.NAT


def test_event_at_as_of_is_excluded_and_window_start_is_inclusive():
    as_of = _us(T)
    times = np.array(
        [
            as_of,  # exactly at as_of: never seen
            as_of - 1,  # one microsecond before: seen
            as_of - 30 * pit.DAY,  # exactly at the 30-day window start: in the window
            as_of - 30 * pit.DAY - 1,  # just before the window start: all-time only
            as_of + pit.DAY,  # the future
        ]
    )
    found = pit.locate(np.ones(5, dtype=np.int64), times, np.array([1]), np.array([as_of]), (30,))
    assert sorted(found.order[found.start[0] : found.end[0]]) == [1, 2, 3]
    assert sorted(found.order[found.lower[30][0] : found.end[0]]) == [1, 2]


def test_locate_drops_unknown_events_and_other_buyers():
    as_of = _us(T)
    buyers = np.array([1, 2, 3, 1], dtype=np.int64)
    times = np.array([as_of - 5, as_of - 5, as_of - 5, pit.NAT])
    found = pit.locate(buyers, times, np.array([1, 2]), np.array([as_of, as_of]))
    assert sorted(found.order.tolist()) == [0, 1]
    assert _seen(found, None) == [[0], [1]]


def test_known_at_uses_state_timestamps_lags_and_deadlines():
    frame = pd.DataFrame(
        {
            "order_id": [1, 2, 3],
            "buyer_id": [1, 1, 1],
            "created_at": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01"], utc=True),
            "canceled_at": pd.to_datetime(["2024-01-03", None, "2024-01-02"], utc=True),
        }
    )
    day0 = _us(pd.Timestamp("2024-01-01", tz="UTC"))
    known = pit.known_at(frame, "orders", "created_at", state_columns=("canceled_at",))
    assert known.tolist() == [day0 + 2 * pit.DAY, pit.NAT, day0 + pit.DAY]
    lagged = pit.known_at(frame, "orders", "created_at", lag_days=14)
    assert lagged.tolist() == [day0 + 14 * pit.DAY] * 3
    deadline = pit.known_at(frame, "orders", "created_at", deadlines=(("created_at", 7),))
    assert deadline.tolist() == [day0 + 7 * pit.DAY] * 3


def test_state_time_rules():
    assert pit.state_time("refunds", "outcome") == "decided_at"
    assert pit.state_time("disputes", "ruling") == "closed_at"
    assert pit.state_time("orders", "canceled_at") == "canceled_at"
    assert pit.state_time("presales", "balance_due_at") is None  # scheduled: known from the start
    assert pit.state_time("orders", "amount") is None


def test_pairs_returns_spine_event_pairs_in_window():
    events = pd.DataFrame({"buyer_id": [1, 1, 2, 1]})
    as_of = _us(T)
    time = np.array([as_of - 2 * pit.DAY, as_of - 10 * pit.DAY, as_of - pit.DAY, as_of])
    spine = pd.DataFrame({"buyer_id": [2, 1], "as_of": [T, T]})
    got = pit.pairs(events, spine, time, window_days=7)
    assert got.to_dict("list") == {"spine_row": [0, 1], "event_row": [2, 0]}
    got_all = pit.pairs(events, spine, time)
    assert got_all.to_dict("list") == {"spine_row": [0, 1, 1], "event_row": [2, 1, 0]}


_times = st.integers(min_value=-20, max_value=20)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(1, 4), st.one_of(_times, st.just(None))), max_size=30),
    spine=st.lists(st.tuples(st.integers(1, 5), _times), min_size=1, max_size=8),
    scale=st.sampled_from([pit.DAY // 4, pit.DAY, 2**57]),
    window=st.sampled_from([None, 1, 3]),
)
def test_locate_matches_brute_force(events, spine, scale, window):
    """Any events, any spine, including time spans that force the chunked search."""
    event_buyer = np.array([b for b, _ in events], dtype=np.int64)
    event_time = np.array([pit.NAT if t is None else t * scale for _, t in events], dtype=np.int64)
    spine_buyer = np.array([b for b, _ in spine], dtype=np.int64)
    spine_time = np.array([t * scale for _, t in spine], dtype=np.int64)
    if scale == 2**57 and window is not None:
        window = None  # windows are in days; a 2**57 us grid makes them meaningless
    found = pit.locate(event_buyer, event_time, spine_buyer, spine_time, () if window is None else (window,))
    assert _seen(found, window) == _brute(event_buyer, event_time, spine_buyer, spine_time, window)


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(1, 3), _times), max_size=20),
    future=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 20)), min_size=1, max_size=10),
)
def test_events_at_or_after_as_of_are_never_seen(events, future):
    as_of = 0
    base_buyer = np.array([b for b, _ in events], dtype=np.int64)
    base_time = np.array([t * pit.DAY for _, t in events], dtype=np.int64)
    more_buyer = np.concatenate([base_buyer, [b for b, _ in future]]).astype(np.int64)
    more_time = np.concatenate([base_time, [t * pit.DAY for _, t in future]]).astype(np.int64)
    spine_buyer, spine_time = np.array([1, 2, 3]), np.array([as_of] * 3)
    before = pit.locate(base_buyer, base_time, spine_buyer, spine_time, (7,))
    after = pit.locate(more_buyer, more_time, spine_buyer, spine_time, (7,))
    for window in (None, 7):
        assert _seen(before, window) == _seen(after, window)


def test_a_decision_is_scored_on_the_snapshot_of_its_day():
    decided = pd.Series(
        pd.to_datetime(
            [
                "2024-06-01 00:00:00",
                "2024-06-01 23:59:59.999999",
                "2024-06-02 00:00:01",
                "2024-06-01 07:30+08:00",
            ],
            utc=True,
            format="ISO8601",
        )
    )
    got = pit.published_as_of(decided)
    want = pd.to_datetime(["2024-06-01", "2024-06-01", "2024-06-02", "2024-05-31"], utc=True)
    assert list(got) == list(want)  # midnight itself is that day's snapshot; other zones are converted to UTC
    assert str(got.dtype) == "datetime64[us, UTC]"
    assert (got <= decided).all() and ((decided - got) < pd.Timedelta(days=1)).all()
