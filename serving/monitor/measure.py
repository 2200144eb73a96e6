"""One monitor run's figures: today against the champion's training reference (pure functions).

Inputs are frames and arrays (``serving.monitor.run`` reads them): the snapshot's signals, the
decision log of the day's window and of the calibration window (``serving.offline.ope.read_log``), the
exploration spend and budgets, and the export's pay-later bills when it has them. The output is the run's *record*, a JSON-ready dict that the
metrics (``serving.monitor.metrics``), the alert rules (``serving.monitor.rules``) and the report
(``serving.monitor.report``) all read.

Outcomes mature on the definitions' own clocks (``features.outcomes``): a presale at its balance
due date plus the grace, a refund at its request plus the return grace. Calibration compares the
head's expected loss probability with the realised loss rate of the *mature* approvals of each
star band; an approval not yet mature counts as immature, never as good.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.outcomes import BALANCE_GRACE, RETURN_GRACE
from rating import drift
from rating.scale import N_STARS
from serving.policy import FAST_REFUND, PRESALE

SERVICES = (PRESALE, FAST_REFUND)
BANDS = tuple(str(s) for s in range(1, N_STARS + 1))
ALL = "all"  # the band of every star together
UNRATED = "unrated"  # decisions on buyers the service could not rate
MIN_MATURE = 30
"""Mature approvals a band needs before its calibration is judged (``excess``)."""
MIN_DECISIONS = 30
"""Decisions a service's window needs before its request drift is measured."""
TRAILING_RUNS = 28
"""Previous runs the approval rate is compared with (four weeks of daily runs)."""
MIN_TRAILING = 7
MOVE_RUNS = 35
"""Daily changes a signal's mean is judged against (``mean_moves``): five weeks, longer than a
calendar month, so they hold last month's due dates and reviews. A signal's move is judged once
the history holds that many runs: before, this month's due dates would be the first ones it saw."""
LARGEST_SHARE = 0.25
"""The scale of a signal's daily change is at least this share of the largest of the ``MOVE_RUNS``."""
WEEK_RUNS = 7
"""Runs back the signal drift's change is measured from: standing drift (a season, accounts ageing)
moves slowly, a shift moves it within days."""
CALENDAR_AGGREGATIONS = ("days_since_last", "days_since_first")
"""Signals that move with the calendar itself: every buyer's value grows by one a day, and a season's
last event is one date for most buyers, so their mass crosses a frozen edge on one day. Their PSI is
in the record and the report; their week's change is not measured (it would alert on the date)."""
Z95 = 1.959963984540054


class MonitorError(ValueError):
    """Input the monitor cannot judge (no reference, an empty day, a signal it lacks)."""


def wilson(bad: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``bad / n`` (``(nan, nan)`` when ``n`` is 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = bad / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def psi_against(binned: Mapping[str, Sequence[float]], values: np.ndarray) -> float:
    """PSI of ``values`` on a reference's frozen ``edges`` against its ``proportions``."""
    return drift.psi_of(binned["proportions"], drift.proportions(values, binned["edges"]))


def signal_drift(reference: Mapping[str, Any], names: Sequence[str], matrix: np.ndarray) -> dict[str, float]:
    """PSI of each signal (columns of ``matrix``, in ``names`` order) against the reference.

    Raises:
        MonitorError: A signal the reference does not hold, or an empty matrix.
    """
    if matrix.shape[0] == 0:
        raise MonitorError("snapshot: no buyers")
    missing = [n for n in names if n not in reference["signals"]]
    if missing:
        raise MonitorError(f"reference: no bins for signals {missing[:5]} (a reference of another model?)")
    return {
        name: psi_against(reference["signals"][name], matrix[:, j].astype(np.float64))
        for j, name in enumerate(names)
    }


def request_fields(service: str, inputs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The request's categorical fields and amount, from logged request bodies."""
    part = "order" if service == PRESALE else "refund"
    out = {
        "category": np.array([str(i[part].get("category")) for i in inputs], dtype=object),
        "amount": np.array([float(i[part]["amount"]) for i in inputs], np.float64),
    }
    if service == FAST_REFUND:
        out["reason"] = np.array([str(i[part].get("reason")) for i in inputs], dtype=object)
    return out


def request_drift(service: str, reference: Mapping[str, Any] | None, log: pd.DataFrame) -> dict[str, Any]:
    """Drift of the window's requests: score PSI of the rated buyers, JS of each categorical field,
    PSI of log1p(amount). Empty when the window is too small or the reference lacks the service."""
    if reference is None or len(log) < MIN_DECISIONS:
        return {}
    scores = np.array([o.get("score") for o in log["outputs"]], dtype=np.float64)  # None -> nan
    scores = scores[~np.isnan(scores)]
    fields = request_fields(service, list(log["inputs"]))
    out: dict[str, Any] = {"amount_psi": psi_against(reference["amount"], np.log1p(fields["amount"]))}
    if scores.size >= MIN_DECISIONS:
        out["score_psi"] = psi_against(reference["score"], scores)
    out["js"] = {}
    for field, ref in reference["categorical"].items():
        vocab = [v for v in ref["values"] if v != drift.OTHER]
        out["js"][field] = drift.jensen_shannon(
            ref["proportions"], drift.category_shares(fields[field], vocab)
        )
    return out


def _band(star: Any) -> str:
    return UNRATED if star is None or (isinstance(star, float) and math.isnan(star)) else str(int(star))


def band_figures(log: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per star band (and ``all``): decisions, approvals, approval rate, money approved and the head's
    expected loss of the approvals (currency units)."""
    if log.empty:
        return {ALL: {"decisions": 0, "approvals": 0, "approval_rate": math.nan, "money_approved": 0.0,
                      "expected_loss": 0.0}}  # fmt: skip
    stars = [_band(o.get("star")) for o in log["outputs"]] if len(log) else []
    frame = pd.DataFrame(
        {
            "band": stars,
            "approved": log["approved"].to_numpy(bool),
            "at_risk": log["at_risk"].to_numpy(np.float64),
            "head_loss": log["head_loss"].to_numpy(np.float64),
        }
    )
    out = {}
    for band, rows in [*frame.groupby("band", sort=True), (ALL, frame)]:
        n, k = len(rows), int(rows["approved"].sum())
        out[band] = {
            "decisions": n,
            "approvals": k,
            "approval_rate": k / n if n else math.nan,
            "money_approved": float(rows.loc[rows["approved"], "at_risk"].sum()),
            "expected_loss": float(rows.loc[rows["approved"], "head_loss"].sum()),
        }
    return out


def maturity(service: str, log: pd.DataFrame) -> pd.Series:
    """When each logged decision's outcome is mature (naive UTC): the outcome definitions' clocks."""
    if service == PRESALE:
        due = pd.to_datetime([i["order"]["balance_due_at"] for i in log["inputs"]], utc=True)
        return pd.Series(due.tz_localize(None) + BALANCE_GRACE, index=log.index)
    return pd.to_datetime(log["created_at"]) + RETURN_GRACE


def calibration(service: str, log: pd.DataFrame, end: pd.Timestamp) -> dict[str, dict[str, float]]:
    """Expected vs realised loss rate of the approvals, per band (and ``all``), as of ``end``.

    ``log`` holds the calibration window's decisions with ``loss`` counted from outcomes before
    ``end``. Only approvals with a head probability are judged. ``excess`` is the Wilson lower
    bound of the realised rate minus the expected rate (positive: losses significantly above
    what the head priced) once a band has ``MIN_MATURE`` mature approvals, else None.
    """
    approved = log[log["approved"]] if len(log) else log
    if approved.empty:
        return {}
    frame = pd.DataFrame(
        {
            "band": [_band(o.get("star")) for o in approved["outputs"]],
            "p": np.array([o.get("p_loss") for o in approved["outputs"]], dtype=np.float64),
            "bad": approved["loss"].to_numpy(np.float64) > 0,
            "mature": (maturity(service, approved) <= end).to_numpy(bool),
        }
    )
    frame = frame[~np.isnan(frame["p"].to_numpy(np.float64))]
    out = {}
    for band, rows in [*frame.groupby("band", sort=True), (ALL, frame)]:
        ripe = rows[rows["mature"]]
        n, k = len(ripe), int(ripe["bad"].sum())
        lo, hi = wilson(k, n)
        expected = float(ripe["p"].mean()) if n else math.nan
        out[band] = {
            "mature": n,
            "immature": int((~rows["mature"]).sum()),
            "bad": k,
            "expected": expected,
            "realised": k / n if n else math.nan,
            "realised_low": lo,
            "realised_high": hi,
            "excess": lo - expected if n >= MIN_MATURE else None,
        }
    return out


def trailing_change(history: Sequence[float], today: float) -> float | None:
    """Today's value minus the mean of the last ``TRAILING_RUNS`` runs (None with fewer than
    ``MIN_TRAILING`` known values, or no value today)."""
    known = [v for v in list(history)[-TRAILING_RUNS:] if v is not None and not math.isnan(v)]
    if len(known) < MIN_TRAILING or today is None or math.isnan(today):
        return None
    return today - float(np.mean(known))


def rate_z(change: float | None, today: float, n: int) -> float | None:
    """A rate's change from its trailing mean in binomial standard errors of today's ``n`` decisions
    (None when unknown or fewer than ``MIN_DECISIONS``): a small day moves the rate by chance."""
    if change is None or n < MIN_DECISIONS:
        return None
    mean = today - change
    sd = math.sqrt(max(mean * (1 - mean), 1e-6) / n)
    return change / sd


def calendar_driven(name: str) -> bool:
    """Whether a signal's value moves with the calendar (``CALENDAR_AGGREGATIONS``)."""
    from features.registry import get

    try:
        return get(name).aggregation in CALENDAR_AGGREGATIONS
    except KeyError:
        return False


def psi_change(history: Sequence[Mapping[str, Any]], today: Mapping[str, float]) -> dict[str, float]:
    """Each signal's PSI today minus its PSI ``WEEK_RUNS`` runs ago (empty before a week of runs),
    calendar-driven signals left out."""
    if len(history) < WEEK_RUNS:
        return {}
    before = history[-WEEK_RUNS].get("signal_psi", {})
    return {
        name: value - before[name]
        for name, value in today.items()
        if name in before and not calendar_driven(name)
    }


def mean_moves(
    history: Sequence[Mapping[str, Any]], names: Sequence[str], matrix: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Each signal's mean over the snapshot, and today's change of it from the previous run against
    the ``MOVE_RUNS`` daily changes before yesterday's (a z; calendar-driven signals left out).

    The scale is their standard deviation, but at least ``LARGEST_SHARE`` of the largest of them:
    five weeks hold the same calendar days of the previous month (bills falling due on the 10th,
    30 days past due a month later, the monthly VIP review), so a calendar day's usual jump reads a
    z of at most ``1 / LARGEST_SHARE`` instead of dwarfing the quiet days' spread, and a move that
    is new must be larger than any of those days by ``SignalMove``'s threshold times ``LARGEST_SHARE``.

    A PSI needs a share of buyers to move; a mean moves as soon as a few do the same thing (orders
    moving to one category, accounts sharing devices).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing signal's mean is NaN
        means = dict(zip(names, np.nanmean(matrix.astype(np.float64), axis=0).tolist(), strict=True))
    past = [h.get("signal_mean") or {} for h in history[-(MOVE_RUNS + 2) :]]
    z: dict[str, float] = {}
    if len(past) < MOVE_RUNS or not past[-1]:  # a new monitor's first month holds no due date yet
        return means, z
    for name, today in means.items():
        series = [p.get(name) for p in past]
        if calendar_driven(name) or any(v is None or math.isnan(v) for v in series) or math.isnan(today):
            continue
        # the baseline's steps end the run before yesterday: a new daily rate breaches on both of
        # the two runs an alert waits for, instead of becoming its own baseline on the second
        steps = np.diff(series[:-1])
        centre = float(np.mean(steps))
        spread = max(float(np.std(steps, ddof=1)), LARGEST_SHARE * float(np.max(np.abs(steps - centre))))
        scale = max(spread, 1e-9 * (1.0 + abs(today)))
        z[name] = (today - series[-1] - centre) / scale
    return means, z


@dataclass(frozen=True)
class Fresh:
    """The mean of ``value`` over the buyers whose ``since`` (a "days since the last row" signal of the
    same source) is under a day: what the day's new rows of a source say, apart from the stock of old ones.

    Attributes:
        name: The statistic's label (``fresh_mean_z{statistic}``).
        value: The signal averaged.
        since: The signal that says how long ago each buyer's latest row of the source arrived (days).
        what: Words for the report ("the day's bureau readings").
    """

    name: str
    value: str
    since: str
    what: str


FRESH = (
    Fresh(
        "credit_score_new_readings",
        "credit_score_deviation_365d",
        "credit_readings_days_since_last",
        "the day's bureau readings, each against the buyer's own mean of the past year",
    ),
)
"""The fresh-row statistics. A bureau that rescales its scores changes the day's readings at once
(about one buyer in forty is read a day), while the snapshot's mean of ``credit_score_last`` moves
by a fortieth of it; each reading minus the buyer's own past mean also takes the spread between
buyers (about 80 points) out of the comparison, leaving the readings' noise (about 20)."""
MIN_FRESH = 20
"""Buyers with a fresh row a day needs before its mean is judged."""


def fresh_means(
    history: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    matrix: np.ndarray,
    statistics: Sequence[Fresh] = FRESH,
) -> dict[str, dict[str, float | int | None]]:
    """Each fresh-row statistic today: ``n`` buyers with a row of the day, their ``mean`` of the value
    and its ``z`` against the daily means of the ``TRAILING_RUNS`` runs before yesterday's (their mean
    and standard deviation; None with fewer than ``MIN_TRAILING`` of them or under ``MIN_FRESH`` buyers).

    The baseline leaves the previous run out, as ``mean_moves`` does: a new level then breaches on
    both runs an alert waits for, instead of widening its own baseline on the second. Statistics
    whose signals the snapshot lacks are left out.
    """
    where = {n: j for j, n in enumerate(names)}
    out: dict[str, dict[str, float | int | None]] = {}
    for stat in statistics:
        if stat.value not in where or stat.since not in where:
            continue
        since = matrix[:, where[stat.since]].astype(np.float64)
        values = matrix[:, where[stat.value]].astype(np.float64)
        fresh = values[(since < 1.0) & ~np.isnan(values)]  # NaN "since" (never a row) compares False
        mean = float(fresh.mean()) if fresh.size >= MIN_FRESH else None
        past = [
            (h.get("fresh") or {}).get(stat.name, {}).get("mean") for h in history[-(TRAILING_RUNS + 1) : -1]
        ]
        past = [v for v in past if v is not None]
        z = None
        if mean is not None and len(past) >= MIN_TRAILING:
            spread = float(np.std(past, ddof=1))
            z = (mean - float(np.mean(past))) / max(spread, 1e-9 * (1.0 + abs(mean)))
        out[stat.name] = {"n": int(fresh.size), "mean": mean, "z": z}
    return out


BILL_CYCLES = 12
"""Earlier pay-later bill cycles the current one is compared with: a year, each month's cycle once."""
MIN_BILL_CYCLES = 6
"""Earlier cycles a bill cycle needs before its unpaid share is judged."""


def bill_cycle(
    bills: pd.DataFrame | str | None, end: pd.Timestamp, cycles: int = BILL_CYCLES
) -> dict[str, Any]:
    """How much of the current pay-later bill cycle is still unpaid at ``end``, against the earlier
    cycles at the same hour from their own due date.

    A cycle is the bills that share a due date (the contract has no statement date). The current one is
    the latest cycle with a bill paid before ``end``: its statement has passed. Its ``unpaid_share`` is
    the share of its bills without a payment before ``end``; each of the last ``cycles`` earlier cycles
    gives its share unpaid at its due date plus the same offset (``hours_from_due``, negative before the
    due date), always an instant before ``end``. ``z`` is today's share minus their mean, in their
    standard deviation but at least the binomial standard error of today's share (a small cycle's own
    chance): positive when buyers pay later than usual. Bills are paid on time anywhere between the
    statement and the due date, so buyers who stop paying show first as a slower climb of the paid
    share, then as a due date with more bills unpaid, then as bills that stay unpaid.

    Args:
        bills: The ``credit_bills`` table (``due_at``, ``paid_at``: UTC timestamps, ``paid_at`` null
            while unpaid), or why it was not read (an export without the table).
        end: The end of the day judged (naive UTC or aware); only payments before it count.
        cycles: Earlier cycles in the baseline.

    Returns:
        ``read`` (whether the table was read) and, when judged, ``due_at`` (ISO UTC), ``hours_from_due``,
        ``bills``, ``unpaid_share``, ``expected`` (the earlier cycles' mean), ``spread`` (the scale of
        ``z``), ``cycles`` (how many earlier ones) and ``z``; ``why`` when there is nothing to judge.
    """
    if bills is None or isinstance(bills, str):
        return {"read": False, "z": None, "why": bills or "no credit_bills table read"}
    end = pd.Timestamp(end)
    end = end.tz_convert("UTC") if end.tzinfo else end.tz_localize("UTC")
    due = pd.to_datetime(bills["due_at"], utc=True).to_numpy("datetime64[ns]")
    paid = pd.to_datetime(bills["paid_at"], utc=True).to_numpy("datetime64[ns]")
    at = np.datetime64(end.tz_localize(None).as_unit("ns"))
    paid_before = ~np.isnat(paid) & (paid < at)
    if not paid_before.any():
        return {"read": True, "z": None, "why": "no bill paid before the day's end"}
    current = due[paid_before].max()
    offset = at - current
    earlier = np.unique(due[due < current])[-cycles:]
    judged = (due == current) | np.isin(due, earlier)
    # each bill judged at its own cycle's due date plus the offset: before end for every earlier cycle
    unpaid = ~(~np.isnat(paid) & (paid < due + offset))
    shares = pd.Series(unpaid[judged]).groupby(due[judged]).agg(["mean", "size"])
    today, n = float(shares.loc[current, "mean"]), int(shares.loc[current, "size"])
    out: dict[str, Any] = {
        "read": True,
        "due_at": pd.Timestamp(current).tz_localize("UTC").isoformat().replace("+00:00", "Z"),
        "hours_from_due": float(offset / np.timedelta64(1, "h")),
        "bills": n,
        "unpaid_share": today,
        "cycles": int(earlier.size),
        "expected": None,
        "spread": None,
        "z": None,
    }
    if earlier.size < MIN_BILL_CYCLES:
        return out | {"why": f"{earlier.size} earlier bill cycles, {MIN_BILL_CYCLES} needed"}
    past = shares.loc[earlier, "mean"].to_numpy(np.float64)
    mean = float(past.mean())
    scale = max(float(past.std(ddof=1)), math.sqrt(mean * (1.0 - mean) / n))
    out |= {"expected": mean, "spread": scale}
    if scale > 0:  # zero before any earlier cycle had a payment at this hour (or after all had all)
        out["z"] = (today - mean) / scale
    return out


def new_accounts(history: Sequence[Mapping[str, Any]], population: int) -> tuple[int | None, float | None]:
    """Buyers added since the previous run and that count's z against the trailing runs' mean
    (Poisson: a day's registrations vary by the square root of their mean)."""
    if not history or history[-1].get("population") is None:
        return None, None
    new = population - int(history[-1]["population"])
    past = [h.get("new_buyers") for h in history[-TRAILING_RUNS:]]
    past = [v for v in past if v is not None]
    if len(past) < MIN_TRAILING:
        return new, None
    mean = float(np.mean(past))
    return new, (new - mean) / math.sqrt(max(mean, 1.0))


def record(
    day: pd.Timestamp,
    reference: Mapping[str, Any],
    names: Sequence[str],
    matrix: np.ndarray,
    scores: np.ndarray,
    window: Mapping[str, pd.DataFrame],
    calibration_log: Mapping[str, pd.DataFrame],
    exploration: Mapping[str, tuple[float, float]],
    history: Sequence[Mapping[str, Any]] = (),
    meta: Mapping[str, Any] | None = None,
    population: int | None = None,
    bills: pd.DataFrame | str | None = None,
) -> dict[str, Any]:
    """The record of one monitor run.

    Args:
        day: The day monitored (UTC midnight); the window ends at ``day + 1 day``.
        reference: The champion's reference (``training.reference``).
        names: The snapshot's signal names, in ``matrix`` column order.
        matrix: The snapshot of that day: one row per buyer.
        scores: The model's score of each snapshot row.
        window: Per service, the decisions of the drift window (``serving.offline.ope.read_log``).
        calibration_log: Per service, the decisions of the calibration window, losses as of
            the end of the day.
        exploration: Per service, ``(spent, monthly budget)`` of the day's month, currency units.
        history: Earlier records, oldest first (for the approval-rate change).
        meta: Anything to keep with the record (versions, windows, sizes).
        population: Buyers in the whole snapshot when ``matrix`` is a sample of it (default: its rows).
        bills: The export's ``credit_bills`` table, or why it was not read (``bill_cycle``).

    Raises:
        MonitorError: No decision at all in the window, or a snapshot the reference cannot judge.
    """
    if not any(len(window.get(s, ())) for s in SERVICES):
        raise MonitorError(
            f"decision log: no decision in the window ending {day + pd.Timedelta(days=1):%Y-%m-%d} "
            "(is the service logging to this database?)"
        )
    end = (day + pd.Timedelta(days=1)).tz_localize(None) if day.tzinfo else day + pd.Timedelta(days=1)
    out: dict[str, Any] = {
        "day": day.strftime("%Y-%m-%d"),
        **dict(meta or {}),
        "buyers": int(matrix.shape[0]),
        "signal_psi": signal_drift(reference, names, matrix),
        "score_psi": psi_against(reference["score"], scores.astype(np.float64)),
        "services": {},
    }
    out["signal_psi_change"] = psi_change(history, out["signal_psi"])
    out["signal_mean"], out["signal_mean_z"] = mean_moves(history, names, matrix)
    out["fresh"] = fresh_means(history, names, matrix)
    out["population"] = int(matrix.shape[0] if population is None else population)
    out["new_buyers"], out["new_buyers_z"] = new_accounts(history, out["population"])
    out["bills"] = bill_cycle(bills, end)
    for service in SERVICES:
        log = window.get(service, pd.DataFrame())
        bands = band_figures(log)
        today = bands[ALL]["approval_rate"]
        past = [h.get("services", {}).get(service, {}).get("approval_rate") for h in history]
        spent, budget = exploration.get(service, (0.0, 0.0))
        change = trailing_change(past, today)
        out["services"][service] = {
            "decisions": int(len(log)),
            "approval_rate": None if math.isnan(today) else today,
            "approval_rate_change": change,
            "approval_rate_z": rate_z(change, today, len(log)),
            "bands": bands,
            "request": request_drift(service, reference["services"].get(service), log),
            "calibration": calibration(service, calibration_log.get(service, pd.DataFrame()), end),
            "exploration": {
                "spent": spent,
                "budget": budget,
                "spent_ratio": spent / budget if budget > 0 else None,
            },
        }
    return out
