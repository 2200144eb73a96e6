"""The marketplace's legacy trust rules, declared once.

The simulator's historical decisions, the training yardsticks and the service's reports all
call these functions; no other module states a threshold of the legacy rules.

* Presale ship-before-balance: the buyer is VIP at the decision and the latest external
  credit score known then is at least 700.
* Fast refund: a return (``return_and_refund``) where the buyer is VIP, or the claim is small
  (at most 100 in the order's currency) with at least one evidence photo.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

VIP_SIGNAL = "vip_last"  # the signals the rules read at the decision instant
CREDIT_SIGNAL = "credit_score_last"
LEGACY_SIGNALS = (VIP_SIGNAL, CREDIT_SIGNAL)
PRESALE_MIN_CREDIT_SCORE = 700
FAST_REFUND_MAX_AMOUNT = 100.0
FAST_REFUND_MIN_PHOTOS = 1


def legacy_presale(vip: ArrayLike, credit_score: ArrayLike) -> np.ndarray:
    """Whether the legacy rule ships a presale before its balance.

    Args:
        vip: VIP at the decision instant (truthy per opportunity).
        credit_score: Latest external score known at the decision; NaN or negative (no
            reading) never qualifies.

    Returns:
        Boolean array, one per opportunity.
    """
    score = np.nan_to_num(np.asarray(credit_score, dtype=np.float64), nan=-1.0)
    return (np.asarray(vip, dtype=np.float64) > 0) & (score >= PRESALE_MIN_CREDIT_SCORE)


def legacy_fast_refund(
    vip: ArrayLike, is_return: ArrayLike, amount: ArrayLike, photos: ArrayLike
) -> np.ndarray:
    """Whether the legacy rule pays a refund before the goods come back.

    Args:
        vip: VIP at the request instant.
        is_return: The request is a ``return_and_refund`` (goods travel back).
        amount: Refund amount, currency units.
        photos: Evidence photos attached to the request.

    Returns:
        Boolean array, one per refund request.
    """
    vip = np.asarray(vip, dtype=np.float64) > 0
    small = (np.asarray(amount, dtype=np.float64) <= FAST_REFUND_MAX_AMOUNT) & (
        np.asarray(photos, dtype=np.float64) >= FAST_REFUND_MIN_PHOTOS
    )
    return np.asarray(is_return, dtype=bool) & (vip | small)
