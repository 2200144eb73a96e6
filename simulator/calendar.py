"""The simulated calendar: months, daily and hourly rhythm, festival presale windows.

All instants are int64 seconds since the Unix epoch, UTC. ``NEVER`` marks a fact that
never happens; at export every instant after the export time becomes null.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from simulator.config import Params

DAY = 86_400
HOUR = 3_600
NEVER = np.int64(2**62)
LOCAL_OFFSET_H = 8  # the marketplace runs on UTC+8; the rhythm is local, the instants UTC

# Relative order intensity per local hour 0..23 (night trough, lunch bump, evening peak).
HOUR_WEIGHTS = np.array(
    [0.5, 0.3, 0.15, 0.1, 0.08, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.1,
     1.3, 1.1, 1.0, 1.0, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.0, 1.2]
)  # fmt: skip


def epoch(day: dt.date) -> int:
    """Seconds since the epoch at UTC midnight of ``day``."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def add_months(day: dt.date, months: int) -> dt.date:
    """The first of the month ``months`` after the month of ``day``."""
    k = day.year * 12 + day.month - 1 + months
    return dt.date(k // 12, k % 12 + 1, 1)


@dataclass(frozen=True)
class Festival:
    """One two-stage presale.

    Attributes:
        due_month: Index of the month holding the balance due date (may be >= months).
        deposit_start: First instant of the deposit phase (20th of the previous month).
        deposit_end: End of the deposit phase (first of the festival month).
        due_at: Balance due (midnight local time of the festival day, i.e. 16:00 UTC the day before).
        weight: Relative size (November is larger).
    """

    due_month: int
    deposit_start: int
    deposit_end: int
    due_at: int
    weight: float


@dataclass(frozen=True)
class Calendar:
    """Month boundaries and day weights of a simulated period (plus 3 months of horizon).

    Attributes:
        start: First day of the period.
        months: Simulated months.
        month_start: ``months + 4`` month boundaries (seconds); ``month_start[months]`` is the export.
        month_of_year: Calendar month (1-12) of each month index, horizon included.
        day_start: Start of each day of the simulated period.
        day_cum: For day ``d`` in month ``m``: ``m`` + cumulative share of the month's weight up to
            and including ``d`` (so ``searchsorted(day_cum, m + u)`` samples a day of month ``m``).
        festivals: Presales whose deposit phase starts inside the period.
    """

    start: dt.date
    months: int
    month_start: np.ndarray
    month_of_year: np.ndarray
    day_start: np.ndarray
    day_cum: np.ndarray
    festivals: tuple[Festival, ...]

    @property
    def export_at(self) -> int:
        """The export instant: the end of the last simulated month."""
        return int(self.month_start[self.months])

    def month_len(self) -> np.ndarray:
        """Length in seconds of each month (horizon included)."""
        return np.diff(self.month_start)

    def month_index(self, t: np.ndarray) -> np.ndarray:
        """Index of the month containing each instant."""
        return np.searchsorted(self.month_start, t, side="right") - 1


def day_weight(day: dt.date, params: Params) -> float:
    """Relative order intensity of a day: weekends and the festival days (June 18, November 11)."""
    return (params.weekend_factor if day.weekday() >= 5 else 1.0) * (
        params.festival_day_factor if (day.month, day.day) in ((6, 18), (11, 11)) else 1.0
    )


def month_density(cal: Calendar, month: int, step: int, params: Params) -> np.ndarray:
    """Where in month ``month`` an event of ``sample_in_month`` falls, as masses on a grid.

    Args:
        cal: The calendar (horizon months included: the rhythm continues past the period).
        month: Month index, ``0 <= month < cal.months + 3``.
        step: Grid step in seconds; must divide an hour.
        params: Generative constants (day weights).

    Returns:
        Mass of each interval ``[month_start + k step, month_start + (k + 1) step)``; sums to 1.
        Exactly ``sample_in_month``'s distribution for a buyer registered before the month
        (day by weight, local hour by ``HOUR_WEIGHTS``, uniform within the hour).
    """
    if HOUR % step:
        raise ValueError(f"step must divide an hour, got {step}")
    first = dt.datetime.fromtimestamp(int(cal.month_start[month]), dt.UTC).date()
    days = int((cal.month_start[month + 1] - cal.month_start[month]) // DAY)
    weights = np.array([day_weight(first + dt.timedelta(days=k), params) for k in range(days)])
    utc_hours = HOUR_WEIGHTS[(np.arange(24) + LOCAL_OFFSET_H) % 24]
    per_hour = np.outer(weights / weights.sum(), utc_hours / utc_hours.sum()).ravel()
    return np.repeat(per_hour * step / HOUR, HOUR // step)


def build_calendar(start: dt.date, months: int, params: Params) -> Calendar:
    """Lay out months, day weights (weekends, festival days) and presale festivals."""
    firsts = [add_months(start, k) for k in range(months + 4)]
    month_start = np.array([epoch(d) for d in firsts], dtype=np.int64)
    month_of_year = np.array([d.month for d in firsts], dtype=np.int64)
    days = [start + dt.timedelta(days=k) for k in range((firsts[months] - start).days)]
    weight = np.array([day_weight(d, params) for d in days])
    day_month = np.array([(d.year - start.year) * 12 + d.month - start.month for d in days])
    day_cum = np.empty(len(days))
    for m in range(months):
        sel = day_month == m
        day_cum[sel] = m + np.cumsum(weight[sel]) / weight[sel].sum()
    festivals = []
    for m in range(1, months + 4):
        if firsts[m].month in (6, 11):
            deposit_start = epoch(firsts[m - 1].replace(day=20))
            if deposit_start >= month_start[months]:
                continue
            due_day = firsts[m].replace(day=18 if firsts[m].month == 6 else 11)
            festivals.append(
                Festival(
                    due_month=m,
                    deposit_start=deposit_start,
                    deposit_end=int(month_start[m]),
                    due_at=epoch(due_day) - LOCAL_OFFSET_H * HOUR,
                    weight=params.presale_nov_factor if firsts[m].month == 11 else 1.0,
                )
            )
    return Calendar(
        start=start,
        months=months,
        month_start=month_start,
        month_of_year=month_of_year,
        day_start=np.array([epoch(d) for d in days], dtype=np.int64),
        day_cum=day_cum,
        festivals=tuple(festivals),
    )


def time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after UTC midnight, following the local (UTC+8) hourly rhythm."""
    local_hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    utc_hour = (local_hour - LOCAL_OFFSET_H) % 24
    return utc_hour * HOUR + rng.integers(0, HOUR, size=n)


def sample_in_month(
    cal: Calendar, rng: np.random.Generator, month: np.ndarray, not_before: np.ndarray
) -> np.ndarray:
    """Instants in the given months following the day and hour rhythm, none before ``not_before``.

    Args:
        cal: The calendar.
        rng: Random generator.
        month: Month index of each event (``< cal.months``).
        not_before: Earliest allowed instant per event (e.g. registration); an event whose month
            starts before it is squeezed linearly into the rest of the month.

    Returns:
        int64 seconds, each inside its month and at or after ``not_before``.
    """
    day = np.searchsorted(cal.day_cum, month + rng.random(month.size))
    day = np.minimum(day, cal.day_start.size - 1)
    t = cal.day_start[day] + time_of_day(rng, month.size)
    ms, me = cal.month_start[month], cal.month_start[month + 1]
    t = np.clip(t, ms, me - 1)
    lb = np.maximum(not_before, ms)
    late = lb > ms
    if late.any():
        frac = (t[late] - ms[late]) / (me[late] - ms[late])
        t[late] = lb[late] + (frac * (me[late] - lb[late] - 1)).astype(np.int64)
    return t.astype(np.int64)


def uniform_between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Uniform instants in ``[lo, hi)`` (``hi`` clipped to at least ``lo``)."""
    lo = np.asarray(lo, dtype=np.int64)
    span = np.maximum(np.asarray(hi, dtype=np.int64) - lo, 1)
    return lo + (rng.random(lo.shape) * span).astype(np.int64)


def lag_days(rng: np.random.Generator, n: int, median: float, sigma: float = 0.6) -> np.ndarray:
    """Lognormal lags in seconds with the given median (days)."""
    return (median * DAY * np.exp(sigma * rng.standard_normal(n))).astype(np.int64)
