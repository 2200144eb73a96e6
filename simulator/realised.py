"""Read realised bad outcomes back from an export, for checks against the truth.

The outcomes are those of ``features.outcomes`` (the one definition, shared with the training
labels); this module only cuts them at the export instant and lines them up with the truth
files: buyer windows (``truth/risk.parquet``), presales and refund requests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import outcomes

REFUND_SETTLE = pd.Timedelta(days=180)
"""A refund request this old at the export has every fact it will ever have (a later abuse
finding has probability below 1e-4 under the simulator's lags; see docs/simulator.md)."""


def bad_events(tables: dict[str, pd.DataFrame], exported_at: pd.Timestamp) -> pd.DataFrame:
    """Every bad outcome known at the export: ``buyer_id``, ``t`` (instant it became a fact), ``kind``.

    Args:
        tables: Raw tables as pandas frames (presales, refunds, disputes, violations, credit_bills
            with the columns ``features.outcomes`` reads).
        exported_at: The export instant.

    Returns:
        ``features.outcomes.bad_events`` cut at ``exported_at``, sorted by buyer and instant.
    """
    events = outcomes.known_by(outcomes.bad_events(tables), exported_at)
    return events.sort_values(["buyer_id", "t"], kind="stable", ignore_index=True)


def realised_labels(risk: pd.DataFrame, events: pd.DataFrame, exported_at: pd.Timestamp) -> pd.DataFrame:
    """Truth rows whose 90-day window ended by the export, with the realised ``bad_90d`` flag.

    Args:
        risk: ``truth/risk.parquet`` (buyer_id, as_of, p_bad_90d, ...).
        events: From ``bad_events``.
        exported_at: The export instant.

    Returns:
        The complete-window rows of ``risk`` plus ``bad_90d``: a bad outcome became a fact in
        ``(as_of, as_of + outcomes.HORIZON]``.
    """
    rows = risk[risk["as_of"] + outcomes.HORIZON <= exported_at].reset_index(drop=True)
    bad = np.zeros(len(rows), dtype=bool)
    for t, idx in rows.groupby("as_of").indices.items():
        window = events[(events["t"] > t) & (events["t"] <= t + outcomes.HORIZON)]
        bad[idx] = np.isin(rows["buyer_id"].to_numpy()[idx], window["buyer_id"].to_numpy())
    return rows.assign(bad_90d=bad)


def presale_results(
    presales: pd.DataFrame, opportunities: pd.DataFrame, exported_at: pd.Timestamp
) -> pd.DataFrame:
    """Presale opportunities whose default would be a fact by the export, with realised ``default``.

    Args:
        presales: The raw presales table.
        opportunities: ``truth/presale_opportunities.parquet``.
        exported_at: The export instant.

    Returns:
        The settled rows of ``opportunities`` plus ``default`` (``features.outcomes`` balance default).
    """
    settled = outcomes.presale_outcomes(presales)
    settled = settled[settled["t"] <= exported_at]
    return opportunities.merge(settled[["order_id", "bad"]], on="order_id", validate="one_to_one").rename(
        columns={"bad": "default"}
    )


def refund_results(
    refunds: pd.DataFrame, opportunities: pd.DataFrame, exported_at: pd.Timestamp
) -> pd.DataFrame:
    """Refund opportunities requested at least ``REFUND_SETTLE`` before the export, with realised ``loss``.

    Args:
        refunds: The raw refunds table.
        opportunities: ``truth/refund_opportunities.parquet``.
        exported_at: The export instant.

    Returns:
        The settled rows of ``opportunities`` plus ``loss`` (``features.outcomes`` refund loss) and
        ``paid_loss`` (a loss that was paid: what history's decision cost, fast or normal).
    """
    done = outcomes.refund_outcomes(refunds)
    done = done.assign(paid_loss=done["bad"] & outcomes.refund_paid(refunds))
    done = done[(refunds["requested_at"] + REFUND_SETTLE <= exported_at).to_numpy()]
    return opportunities.merge(
        done[["refund_id", "bad", "paid_loss"]], on="refund_id", validate="one_to_one"
    ).rename(columns={"bad": "loss"})


def expected_vs_realised(p: np.ndarray, realised: np.ndarray) -> tuple[float, float, int]:
    """Expected count ``sum p``, its standard deviation ``sqrt(sum p (1 - p))`` and the realised count."""
    p = np.asarray(p, dtype=np.float64)
    return float(p.sum()), float(np.sqrt((p * (1 - p)).sum())), int(np.asarray(realised, dtype=bool).sum())


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (rank formula, ties averaged); NaN without both classes."""
    label = np.asarray(label, dtype=bool)
    pos, neg = label.sum(), (~label).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(score)).rank().to_numpy()
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


REVIEW_SETTLE = pd.Timedelta(days=90)
"""A review this old at the export has its report and removal if it will ever have them (report ~1 day
and removal ~7 days later, lognormal; a removal later than 90 days has probability below 1e-9)."""


def review_results(
    reviews: pd.DataFrame, opportunities: pd.DataFrame, exported_at: pd.Timestamp
) -> pd.DataFrame:
    """Reviews posted at least ``REVIEW_SETTLE`` before the export, with what happened to them.

    Args:
        reviews: The raw reviews table.
        opportunities: ``truth/review_opportunities.parquet``.
        exported_at: The export instant.

    Returns:
        The settled rows of ``opportunities`` plus rating, text_length, has_photos and the
        realised ``reported`` and ``removed`` (as malicious).
    """
    done = reviews[reviews["created_at"] + REVIEW_SETTLE <= exported_at]
    facts = pd.DataFrame(
        {
            "review_id": done["review_id"],
            "rating": done["rating"],
            "text_length": done["text_length"],
            "has_photos": done["has_photos"],
            "reported": done["reported_by_seller_at"].notna(),
            "removed": done["removed_as_malicious_at"].notna(),
        }
    )
    return opportunities.merge(facts, on="review_id", validate="one_to_one")
