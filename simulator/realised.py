"""Read realised bad outcomes back from an export (DESIGN.md "Bad outcomes"), for checks only.

The training labels are built by ``training``; this is the simulator's own reading, used by
``summary`` and the tests to compare the truth with what happened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BAD_TYPES = (
    "balance_default",
    "return_not_shipped",
    "refund_abuse",
    "dispute_lost",
    "severe_violation",
    "bill_30dpd",
)


def bad_events(tables: dict[str, pd.DataFrame], exported_at: pd.Timestamp) -> pd.DataFrame:
    """Every bad outcome with the instant it became true (``buyer_id``, ``ts``, ``type``).

    Args:
        tables: Raw tables as pandas frames (at least presales, refunds, disputes, violations,
            credit_bills).
        exported_at: The export instant; outcomes not yet knowable then are left out.

    Returns:
        One row per bad outcome, ``ts <= exported_at``.
    """
    day = pd.Timedelta(days=1)
    frames = []
    p = tables["presales"]
    deadline = p["balance_due_at"] + 7 * day
    unpaid = p["balance_paid_at"].isna() | (p["balance_paid_at"] > deadline)
    frames.append(
        pd.DataFrame({"buyer_id": p["buyer_id"], "ts": deadline, "type": "balance_default"})[unpaid]
    )
    r = tables["refunds"]
    deadline = r["requested_at"] + 14 * day
    late = (r["kind"] == "return_and_refund") & (
        r["return_shipped_at"].isna() | (r["return_shipped_at"] > deadline)
    )
    frames.append(
        pd.DataFrame({"buyer_id": r["buyer_id"], "ts": deadline, "type": "return_not_shipped"})[late]
    )
    abuse = r["abuse_confirmed_at"].notna()
    frames.append(
        pd.DataFrame({"buyer_id": r["buyer_id"], "ts": r["abuse_confirmed_at"], "type": "refund_abuse"})[
            abuse
        ]
    )
    d = tables["disputes"]
    frames.append(
        pd.DataFrame({"buyer_id": d["buyer_id"], "ts": d["closed_at"], "type": "dispute_lost"})[
            d["ruling"] == "seller"
        ]
    )
    v = tables["violations"]
    severe = (v["kind"] == "confirmed_fraud") | (v["severity"] >= 3)
    frames.append(
        pd.DataFrame({"buyer_id": v["buyer_id"], "ts": v["ts"], "type": "severe_violation"})[severe]
    )
    c = tables["credit_bills"]
    deadline = c["due_at"] + 30 * day
    unpaid = c["paid_at"].isna() | (c["paid_at"] > deadline)
    frames.append(pd.DataFrame({"buyer_id": c["buyer_id"], "ts": deadline, "type": "bill_30dpd"})[unpaid])
    events = pd.concat(frames, ignore_index=True)
    return events[events["ts"] <= exported_at].sort_values(
        ["buyer_id", "ts"], kind="stable", ignore_index=True
    )


def realised_labels(risk: pd.DataFrame, events: pd.DataFrame, exported_at: pd.Timestamp) -> pd.DataFrame:
    """Truth rows whose 90-day window ended by the export, with the realised ``bad_90d`` flag.

    Args:
        risk: ``truth/risk.parquet`` (buyer_id, month_start, p_bad_90d, ...).
        events: From ``bad_events``.
        exported_at: The export instant.

    Returns:
        The complete-window rows of ``risk`` plus ``bad_90d`` (a bad outcome in (T, T + 90d]).
    """
    rows = risk[risk["month_start"] + pd.Timedelta(days=90) <= exported_at].reset_index(drop=True)
    bad = np.zeros(len(rows), dtype=bool)
    for t, idx in rows.groupby("month_start").indices.items():
        window = events[(events["ts"] > t) & (events["ts"] <= t + pd.Timedelta(days=90))]
        bad[idx] = np.isin(rows["buyer_id"].to_numpy()[idx], window["buyer_id"].to_numpy())
    return rows.assign(bad_90d=bad)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (rank formula, ties averaged); NaN without both classes."""
    label = np.asarray(label, dtype=bool)
    pos, neg = label.sum(), (~label).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(score)).rank().to_numpy()
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))
