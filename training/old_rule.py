"""The legacy trust rule the rating must beat: VIP at the time and external credit score >= 700."""

from __future__ import annotations

import numpy as np
import pandas as pd

OLD_RULE_MIN_CREDIT = 700
# The registry signals the rule reads: VIP state as of the snapshot and the latest external score.
VIP_SIGNAL = "vip_last"
CREDIT_SIGNAL = "credit_score_last"


def old_rule(frame: pd.DataFrame) -> np.ndarray:
    """True where the old rule grants the trust service (a missing score never qualifies)."""
    vip = frame[VIP_SIGNAL].to_numpy(dtype=np.float64) > 0
    score = frame[CREDIT_SIGNAL].to_numpy(dtype=np.float64)
    return vip & (np.nan_to_num(score, nan=0.0) >= OLD_RULE_MIN_CREDIT)
