"""The bad outcomes, each defined once with the instant it becomes a fact.

Training labels, the simulator's realised reading and truth, the evaluation and the service's
outcome handling all read these definitions; nothing else defines a bad outcome.

=================  ==========================================================  ==========================
component          event (per source row)                                      instant it becomes a fact
=================  ==========================================================  ==========================
balance_default    presale balance not paid 7 days after its due date          balance_due_at + 7 days
refund_loss        a return (return_and_refund) not shipped within 14 days     requested_at + 14 days
                   of the request, or a refund later confirmed abusive         abuse_confirmed_at
                   (whichever is first)
dispute_lost       dispute ruled for the seller                                closed_at
severe_violation   confirmed fraud, or a violation of severity >= 3            ts
bill_delinquent    pay-later bill not paid 30 days after its due date          due_at + 30 days
=================  ==========================================================  ==========================

A refund loss does not depend on whether the refund was paid fast: the buyer's behaviour
(no return, abuse) is the outcome; what it costs the merchant depends on the decision: the
money is lost only when the refund was paid (``refund_paid``: at once when fast,
after normal handling otherwise), and the per-opportunity truth gives both arms
(``p_loss_if_fast``, ``p_loss_if_normal``; paying fast adds their difference). A buyer's 90-day
label is whether any fact falls in ``(as_of, as_of + 90 days]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import SEVERE_VIOLATION

HORIZON = pd.Timedelta(days=90)
BALANCE_GRACE = pd.Timedelta(days=7)
RETURN_GRACE = pd.Timedelta(days=14)
BILL_PAST_DUE = pd.Timedelta(days=30)
CONFIRMED_FRAUD = "confirmed_fraud"
RETURN_KIND = "return_and_refund"
SELLER_RULING = "seller"

COMPONENTS = ("balance_default", "refund_loss", "dispute_lost", "severe_violation", "bill_delinquent")


def _late_or_unpaid(due: pd.Series, paid: pd.Series, grace: pd.Timedelta) -> tuple[pd.Series, pd.Series]:
    deadline = due + grace
    return paid.isna() | (paid > deadline), deadline


def presale_outcomes(presales: pd.DataFrame) -> pd.DataFrame:
    """Per presale: ``order_id``, ``buyer_id``, ``bad`` (balance default) and ``t`` (due + 7 days)."""
    bad, t = _late_or_unpaid(presales["balance_due_at"], presales["balance_paid_at"], BALANCE_GRACE)
    return pd.DataFrame(
        {"order_id": presales["order_id"], "buyer_id": presales["buyer_id"], "bad": bad, "t": t}
    )


def refund_outcomes(refunds: pd.DataFrame) -> pd.DataFrame:
    """Per refund request: ``refund_id``, ``buyer_id``, ``bad`` (a loss) and ``t`` (first fact; NaT if good)."""
    deadline = refunds["requested_at"] + RETURN_GRACE
    shipped = refunds["return_shipped_at"]
    unreturned = refunds["kind"].eq(RETURN_KIND) & (shipped.isna() | (shipped > deadline))
    abuse = refunds["abuse_confirmed_at"]
    t_unreturned = deadline.where(unreturned)
    t = pd.concat([t_unreturned, abuse], axis=1).min(axis=1)
    return pd.DataFrame(
        {
            "refund_id": refunds["refund_id"],
            "buyer_id": refunds["buyer_id"],
            "bad": unreturned | abuse.notna(),
            "t": t.astype(refunds["requested_at"].dtype),
        }
    )


def refund_paid(refunds: pd.DataFrame) -> pd.Series:
    """Per refund request, whether the money was paid (``refunded_at`` set): at once when fast, after
    normal handling otherwise. A refund loss costs the merchant the refund only when it was paid."""
    return refunds["refunded_at"].notna()


def _events(buyer: pd.Series, t: pd.Series, mask: pd.Series, kind: str) -> pd.DataFrame:
    return pd.DataFrame({"buyer_id": buyer[mask].to_numpy(np.int64), "t": t[mask], "kind": kind})


def bad_events(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every bad outcome as one row: ``buyer_id``, ``t`` (the instant it became a fact), ``kind``.

    Args:
        tables: Raw tables with at least presales, refunds, disputes, violations and
            credit_bills (the columns named in the module docstring).

    Returns:
        Rows of every component, in no particular order. Facts later than the export are
        included: callers that read an export cut at its export time (``known_by``).
    """
    presales = presale_outcomes(tables["presales"])
    refunds = refund_outcomes(tables["refunds"])
    disputes, violations, bills = tables["disputes"], tables["violations"], tables["credit_bills"]
    lost = disputes["ruling"].eq(SELLER_RULING) & disputes["closed_at"].notna()
    severe = violations["kind"].eq(CONFIRMED_FRAUD) | (violations["severity"] >= SEVERE_VIOLATION)
    bill_bad, bill_t = _late_or_unpaid(bills["due_at"], bills["paid_at"], BILL_PAST_DUE)
    frames = [
        _events(presales["buyer_id"], presales["t"], presales["bad"], "balance_default"),
        _events(refunds["buyer_id"], refunds["t"], refunds["bad"], "refund_loss"),
        _events(disputes["buyer_id"], disputes["closed_at"], lost, "dispute_lost"),
        _events(violations["buyer_id"], violations["ts"], severe, "severe_violation"),
        _events(bills["buyer_id"], bill_t, bill_bad, "bill_delinquent"),
    ]
    frames = [f.assign(t=pd.to_datetime(f["t"], utc=True).astype("datetime64[us, UTC]")) for f in frames]
    return pd.concat(frames, ignore_index=True)


def known_by(events: pd.DataFrame, moment: pd.Timestamp) -> pd.DataFrame:
    """The events that had become facts at ``moment`` (``t <= moment``)."""
    return events[events["t"] <= moment]
