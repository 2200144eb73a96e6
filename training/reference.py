"""The monitor's reference, frozen at training: bin edges and proportions of what drift is measured on.

``python -m serving monitor`` compares each day with this reference (``serving.monitor``): every
signal of the model and the score over the buyers of a snapshot, and per service the score of the
buyers who asked, the request's category (and refund reason) and its amount. The rows are the test
window's (the latest population the model was judged on, the closest to the day it goes live),
binned on their own deciles (``rating.drift``). Logged with the run as ``REFERENCE_ARTIFACT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.contract import CATEGORIES, REFUND_REASONS
from rating import drift
from training.opportunities import FAST_REFUND, PRESALE

REFERENCE_ARTIFACT = "monitor/reference.json"
REFERENCE_VERSION = 1
BINS = 10
CATEGORICAL = {
    PRESALE: {"category": CATEGORIES},
    FAST_REFUND: {"category": CATEGORIES, "reason": REFUND_REASONS},
}
"""Per service, the request's categorical fields and their vocabularies (Jensen-Shannon)."""
AMOUNT = "amount"  # the request's amount (presale: the order price; refund: the refund), PSI on log1p


def binned(values: np.ndarray) -> dict[str, list[float]]:
    """Frozen decile edges of ``values`` and the reference's proportions on them (missing last)."""
    edges = drift.frozen_edges(values, BINS)
    return {"edges": edges.tolist(), "proportions": drift.proportions(values, edges).tolist()}


def monitor_reference(model: Any, rows: pd.DataFrame, opportunities: Mapping[str, Any]) -> dict[str, Any]:
    """The reference the monitor compares each day with.

    Args:
        model: The fitted rating (``RatingModel``: ``signal_names``, ``score``).
        rows: Snapshot rows (buyer signals) of the reference window (the test window).
        opportunities: Per service, the window's opportunities (``.rows`` with the signals, and
            ``category``, ``reason`` for refunds, ``amount``).

    Returns:
        A JSON-ready dict: ``signals`` and ``score`` (edges and proportions), and per service its
        ``rows``, ``score``, ``amount`` and ``categorical`` shares.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if rows.empty:
        raise ValueError("monitor_reference: no reference rows")
    names = list(model.signal_names)
    matrix = rows[names].to_numpy(np.float32)
    out: dict[str, Any] = {
        "version": REFERENCE_VERSION,
        "bins": BINS,
        "rows": int(len(rows)),
        "as_of": [str(rows["as_of"].min()), str(rows["as_of"].max())] if "as_of" in rows else None,
        "signals": {name: binned(matrix[:, j].astype(np.float64)) for j, name in enumerate(names)},
        "score": binned(model.score(matrix).score.astype(np.float64)),
        "services": {},
    }
    for service, opp in opportunities.items():
        frame = opp.rows
        if frame.empty:
            continue
        vocabularies = CATEGORICAL.get(service, {})
        out["services"][service] = {
            "rows": int(len(frame)),
            "score": binned(model.score(frame[names].to_numpy(np.float32)).score.astype(np.float64)),
            AMOUNT: binned(np.log1p(frame[AMOUNT].to_numpy(np.float64))),
            "categorical": {
                field: {
                    "values": [*vocab, drift.OTHER],
                    "proportions": drift.category_shares(frame[field].to_numpy(), vocab).tolist(),
                }
                for field, vocab in vocabularies.items()
            },
        }
    return out
