"""Buyer-level labels: which bad outcomes become facts in ``(as_of, as_of + 90 days]``.

The outcomes themselves (what is bad, and the instant it becomes a fact) are defined once in
``features.outcomes``; this module only counts them in each snapshot's window. ``bad_90d`` is
any of them. A snapshot's window must end at or before the export time, or outcomes not yet
happened would read as good (``usable_as_of`` enforces it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.outcomes import COMPONENTS, HORIZON, bad_events

TARGETS = ("bad_90d", "balance_default", "refund_loss")


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
    """0/1 labels per spine row: each component, ``bad_90d``, and the service populations.

    The populations say who the per-service evaluation is about: ``has_presale_due`` (a presale
    balance falls due in the window) and ``has_refund`` (a refund was requested in the window).
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
    return out


def usable_as_of(as_of: pd.Series, exported_at: pd.Timestamp) -> pd.Series:
    """True where the whole label window (as_of, as_of + 90 days] is observed by the export."""
    return as_of + HORIZON <= exported_at
