"""Calendar: instants fall in their month, after their lower bound, with festival presales."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.calendar import build_calendar, epoch, sample_in_month
from simulator.config import Params


def test_festivals_have_deposit_phase_before_due_date() -> None:
    cal = build_calendar(dt.date(2023, 1, 1), 24, Params())
    due = [dt.datetime.fromtimestamp(f.due_at, dt.UTC) for f in cal.festivals]
    assert [(d.month, d.day) for d in due] == [(6, 17), (11, 10)] * 2  # 16:00 UTC = midnight local
    for f in cal.festivals:
        assert f.deposit_start < f.deposit_end < f.due_at
        assert cal.month_index(np.array([f.due_at]))[0] == f.due_month
    assert cal.export_at == epoch(dt.date(2025, 1, 1))


def test_festival_whose_deposit_phase_starts_before_the_export_is_kept() -> None:
    cal = build_calendar(dt.date(2023, 1, 1), 10, Params())  # export Nov 1, deposit phase Oct 20-31
    assert cal.festivals[-1].due_at > cal.export_at


@settings(max_examples=40, deadline=None)
@given(
    months=st.integers(1, 14),
    month=st.integers(0, 13),
    offset_days=st.floats(-40, 40),
    seed=st.integers(0, 2**16),
)
def test_sampled_instants_stay_in_month_and_after_lower_bound(
    months: int, month: int, offset_days: float, seed: int
) -> None:
    month = month % months
    cal = build_calendar(dt.date(2024, 2, 1), months, Params())
    lower = int(cal.month_start[month] + offset_days * 86400)
    if lower >= cal.month_start[month + 1]:
        return
    rng = np.random.default_rng(seed)
    t = sample_in_month(cal, rng, np.full(200, month), np.full(200, lower))
    assert (t >= cal.month_start[month]).all() and (t < cal.month_start[month + 1]).all()
    assert (t >= lower).all()


def test_daily_rhythm_peaks_on_festival_days_and_local_evenings() -> None:
    cal = build_calendar(dt.date(2023, 11, 1), 1, Params())
    t = sample_in_month(
        cal, np.random.default_rng(0), np.zeros(60_000, dtype=np.int64), np.zeros(60_000, dtype=np.int64)
    )
    days = (t - cal.month_start[0]) // 86400 + 1
    counts = np.bincount(days, minlength=31)
    assert counts.argmax() == 11
    local_hour = ((t % 86400) // 3600 + 8) % 24
    hours = np.bincount(local_hour, minlength=24)
    assert hours[21] > 5 * hours[4]
