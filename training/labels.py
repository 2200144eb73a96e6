"""Buyer-level labels: which bad outcomes become facts in ``(as_of, as_of + 90 days]``.

The outcomes themselves (what is bad, and the instant it becomes a fact) are defined once in
``features.outcomes``; this module only counts them in each snapshot's window. ``bad_90d`` is
any of them. A snapshot's window must end at or before the export time, or outcomes not yet
happened would read as good (``usable_as_of`` enforces it).

The rating's target is trust *per opportunity* (``PER_OPPORTUNITY``): the bad outcomes that become
facts in the window (``bad_events_90d``) over the buyer's exposure in it (``exposure_90d``: one for
the account itself, plus every order placed, presale balance falling due and pay-later bill falling
due in the window). Read as a binomial rate with the exposure as its weight, it says how far the
marketplace can trust the buyer with one more opportunity, whatever the buyer's volume of activity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.outcomes import COMPONENTS, HORIZON, bad_events

PER_OPPORTUNITY = "bad_per_opportunity"
TARGETS = (PER_OPPORTUNITY, "bad_90d", "balance_default", "refund_loss")
ACCOUNT_EXPOSURE = 1
"""Opportunities the account itself counts for in every window (violations need no order)."""


def _seconds(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(
        pd.to_datetime(ts, utc=True).astype("datetime64[s, UTC]").astype("int64"), dtype=np.int64
    )


def count_in_window(
    events: pd.DataFrame, spine: pd.DataFrame, start_offset: pd.Timedelta, end_offset: pd.Timedelta
) -> np.ndarray:
    """Per spine row, the number of ``events`` with ``as_of + start_offset < t <= as_of + end_offset``.

    Args:
        events: Frame with ``buyer_id`` and UTC timestamp ``t``.
        spine: Frame with ``buyer_id`` and UTC timestamp ``as_of``.
        start_offset: Window start after ``as_of`` (exclusive).
        end_offset: Window end after ``as_of`` (inclusive).
    """
    scale = np.int64(10**10)  # seconds fit below 1e10 until the year 2286
    keys = np.sort(events["buyer_id"].to_numpy(np.int64) * scale + _seconds(events["t"]))
    base = spine["buyer_id"].to_numpy(np.int64) * scale + _seconds(spine["as_of"])
    lo = np.searchsorted(keys, base + int(start_offset.total_seconds()), side="right")
    hi = np.searchsorted(keys, base + int(end_offset.total_seconds()), side="right")
    return hi - lo


def make_labels(tables: dict[str, pd.DataFrame], spine: pd.DataFrame) -> pd.DataFrame:
    """0/1 labels per spine row: each component, ``bad_90d``, and the service populations; and the
    per-opportunity target's parts.

    The populations say who the per-service evaluation is about: ``has_presale_due`` (a presale
    balance falls due in the window) and ``has_refund`` (a refund was requested in the window).
    ``bad_events_90d`` counts the bad outcomes of the window, ``exposure_90d`` the opportunities
    (see the module docstring); ``bad_per_opportunity`` is their ratio, at most 1.
    """
    zero = pd.Timedelta(0)
    out = pd.DataFrame(index=spine.index)
    events = bad_events(tables)
    for name in COMPONENTS:
        of_kind = events[events["kind"] == name]
        out[name] = (count_in_window(of_kind, spine, zero, HORIZON) > 0).astype(np.int8)
    out["bad_90d"] = out[list(COMPONENTS)].max(axis=1).astype(np.int8)
    presales, refunds = tables["presales"], tables["refunds"]
    due = pd.DataFrame({"buyer_id": presales["buyer_id"], "t": presales["balance_due_at"]})
    asked = pd.DataFrame({"buyer_id": refunds["buyer_id"], "t": refunds["requested_at"]})
    out["has_presale_due"] = (count_in_window(due, spine, zero, HORIZON) > 0).astype(np.int8)
    out["has_refund"] = (count_in_window(asked, spine, zero, HORIZON) > 0).astype(np.int8)
    out["bad_events_90d"] = count_in_window(events, spine, zero, HORIZON).astype(np.float32)
    out["exposure_90d"] = exposure(tables, spine).astype(np.float32)
    out[PER_OPPORTUNITY] = np.minimum(out["bad_events_90d"] / out["exposure_90d"], 1).astype(np.float32)
    return out


def exposure(tables: dict[str, pd.DataFrame], spine: pd.DataFrame) -> np.ndarray:
    """Per spine row, the opportunities of ``(as_of, as_of + 90 days]``: ``ACCOUNT_EXPOSURE`` plus
    the orders placed, presale balances falling due and pay-later bills falling due in the window.

    Args:
        tables: Raw tables with at least orders, presales and credit_bills.
        spine: Rows with ``buyer_id`` and ``as_of``.
    """
    zero = pd.Timedelta(0)
    orders, presales, bills = tables["orders"], tables["presales"], tables["credit_bills"]
    total = np.full(len(spine), ACCOUNT_EXPOSURE, dtype=np.int64)
    for frame, column in ((orders, "created_at"), (presales, "balance_due_at"), (bills, "due_at")):
        total += count_in_window(
            pd.DataFrame({"buyer_id": frame["buyer_id"], "t": frame[column]}), spine, zero, HORIZON
        )
    return total


def target_weights(frame: pd.DataFrame, target: str) -> np.ndarray | None:
    """Row weights of ``target``: the exposure for the per-opportunity rate, None (equal) otherwise."""
    return frame["exposure_90d"].to_numpy(np.float64) if target == PER_OPPORTUNITY else None


def usable_as_of(as_of: pd.Series, exported_at: pd.Timestamp) -> pd.Series:
    """True where the whole label window (as_of, as_of + 90 days] is observed by the export."""
    return as_of + HORIZON <= exported_at
