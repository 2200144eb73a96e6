"""Hard facts: what a buyer has done that caps the stars whatever the model says.

Declared once here, as registry signals read at an instant: the rating's caps, the service's
reasons and the ``buyers_above_cap`` yardstick all read this table. Every hard fact caps the
star at ``CAPPED_MAX_STAR``; a floor fact (``FLOOR_FACTS``: confirmed fraud) puts the buyer at
``FLOOR_STAR`` with the lowest score, below every buyer without one, whatever the model says:
a fraudster who stopped trading has nothing left to go wrong, and must still rank last.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

HARD_FACTS: Mapping[str, str] = {
    "violations_confirmed_fraud_count_all": "Confirmed fraud on record",
    "balances_unpaid_7d_count_365d": "A presale balance left unpaid 7+ days past due in the past year",
    "bills_30dpd_open": "A pay-later bill is 30+ days past due and unpaid",
}
"""Signal name -> the reason shown when it caps a buyer (a fact holds where the signal is > 0)."""

CAPPED_MAX_STAR = 2
FLOOR_FACTS: tuple[str, ...] = ("violations_confirmed_fraud_count_all",)
"""Hard facts that put a buyer at ``FLOOR_STAR`` and the lowest score (each one of ``HARD_FACTS``)."""
FLOOR_STAR = 1


def hard_fact_matrix(signals: pd.DataFrame) -> np.ndarray:
    """Boolean ``rows x len(HARD_FACTS)``: which hard facts hold for each row (NaN counts as absent).

    Raises:
        KeyError: A hard-fact signal is missing from ``signals`` (named in the message).
    """
    missing = [name for name in HARD_FACTS if name not in signals.columns]
    if missing:
        raise KeyError(f"hard-fact signals missing from the frame: {missing}")
    values = signals[list(HARD_FACTS)].to_numpy(np.float64)
    return np.nan_to_num(values, nan=0.0) > 0


def has_hard_fact(signals: pd.DataFrame) -> np.ndarray:
    """True where any hard fact holds."""
    return hard_fact_matrix(signals).any(axis=1)


def has_floor_fact(signals: pd.DataFrame) -> np.ndarray:
    """True where a floor fact (``FLOOR_FACTS``) holds (NaN counts as absent)."""
    return np.nan_to_num(signals[list(FLOOR_FACTS)].to_numpy(np.float64), nan=0.0).max(axis=1) > 0
