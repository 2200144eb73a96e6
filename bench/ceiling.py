"""The truth-trained ceiling models of ``bench/bench_ceiling.py`` (also the ceiling ``bench/bench_deploy.py``
measures against): their parameters and the rows they price an approval on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.heads import design
from training.opportunities import PRESALE

CEILINGS = {
    "truth-trained": {},
    "truth-trained, roomy": {
        "num_leaves": 63,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "lambda_l2": 1.0,
    },
}
"""Parameter changes over the heads' (``training.heads.HEAD_PARAMS``) of each ceiling model, fitted by the
heads' own ``fit_model`` (categorical context, early stopping) with a cross-entropy objective."""


def approval_design(service: str, rows: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Signals and context as the head sees them when it prices an approval (a presale shipped early,
    a refund paid fast)."""
    rows = rows.assign(shipped=True) if service == PRESALE else rows.assign(fast=True)
    return design(service, rows, names)
