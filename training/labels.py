"""Bad outcomes in (as_of, as_of + 90 days], read from the raw tables as DESIGN.md defines them.

Each bad outcome is an event with the time at which it became a fact:

=================  ==========================================================  ===========================
label              event                                                       time of the fact
=================  ==========================================================  ===========================
balance_default    presale balance not paid 7 days after its due date          balance_due_at + 7 days
refund_loss        refund paid whose return did not ship within 14 days        requested_at + 14 days
                   (return_and_refund), or a refund later found abusive        abuse_confirmed_at
dispute_lost       dispute ruled for the seller                                closed_at
severe_violation   confirmed fraud, or a violation of severity 3               ts
bill_delinquent    pay-later bill not paid 30 days after its due date          due_at + 30 days
=================  ==========================================================  ===========================

``bad_90d`` is any of them. A snapshot's window must end at or before the export time,
or outcomes not yet happened would read as good (``usable_as_of`` enforces it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import SEVERE_VIOLATION

HORIZON = pd.Timedelta(days=90)
BALANCE_GRACE = pd.Timedelta(days=7)
RETURN_GRACE = pd.Timedelta(days=14)
BILL_PAST_DUE = pd.Timedelta(days=30)

COMPONENTS = ("balance_default", "refund_loss", "dispute_lost", "severe_violation", "bill_delinquent")
TARGETS = ("bad_90d", "balance_default", "refund_loss")


def _late_or_unpaid(frame: pd.DataFrame, due: pd.Series, paid: str, grace: pd.Timedelta) -> pd.DataFrame:
    t = due + grace
    bad = frame[paid].isna() | (frame[paid] > t)
    return pd.DataFrame({"buyer_id": frame.loc[bad, "buyer_id"], "t": t[bad]})


def bad_events(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every bad outcome as (buyer_id, t), per label component."""
    presales, refunds = tables["presales"], tables["refunds"]
    disputes, violations, bills = tables["disputes"], tables["violations"], tables["credit_bills"]

    never_returned = (
        (refunds["kind"] == "return_and_refund")
        & refunds["refunded_at"].notna()
        & (
            refunds["return_shipped_at"].isna()
            | (refunds["return_shipped_at"] > refunds["requested_at"] + RETURN_GRACE)
        )
    )
    abusive = refunds["abuse_confirmed_at"].notna()
    refund_loss = pd.concat(
        [
            pd.DataFrame(
                {
                    "buyer_id": refunds.loc[never_returned, "buyer_id"],
                    "t": refunds.loc[never_returned, "requested_at"] + RETURN_GRACE,
                }
            ),
            pd.DataFrame(
                {
                    "buyer_id": refunds.loc[abusive, "buyer_id"],
                    "t": refunds.loc[abusive, "abuse_confirmed_at"],
                }
            ),
        ]
    )
    lost = disputes["ruling"].eq("seller") & disputes["closed_at"].notna()
    severe = violations["kind"].eq("confirmed_fraud") | (violations["severity"] >= SEVERE_VIOLATION)
    return {
        "balance_default": _late_or_unpaid(
            presales, presales["balance_due_at"], "balance_paid_at", BALANCE_GRACE
        ),
        "refund_loss": refund_loss,
        "dispute_lost": pd.DataFrame(
            {"buyer_id": disputes.loc[lost, "buyer_id"], "t": disputes.loc[lost, "closed_at"]}
        ),
        "severe_violation": pd.DataFrame(
            {"buyer_id": violations.loc[severe, "buyer_id"], "t": violations.loc[severe, "ts"]}
        ),
        "bill_delinquent": _late_or_unpaid(bills, bills["due_at"], "paid_at", BILL_PAST_DUE),
    }


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
    for name, events in bad_events(tables).items():
        out[name] = (count_in_window(events, spine, zero, HORIZON) > 0).astype(np.int8)
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
