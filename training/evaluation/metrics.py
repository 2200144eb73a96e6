"""Out-of-time evaluation primitives: discrimination, calibration, stars and stability
(the per-opportunity yardsticks are ``training.evaluation.yardsticks``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from rating import drift
from rating.scale import N_STARS


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the score distributions of bad and good rows."""
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 20) -> float:
    """Expected calibration error over ``bins`` equal-count bins of predicted probability."""
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            err += chunk.size * abs(p[chunk].mean() - y[chunk].mean())
    return float(err / len(p))


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``, on the decile edges of ``expected``
    (``rating.drift``: the same bins the monitor freezes)."""
    return drift.psi(expected, actual, bins)


def discrimination(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, Gini, KS, Brier, log loss and calibration error of probabilities ``p``."""
    auc = float(roc_auc_score(y, p))
    return {
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-9, 1 - 1e-9), labels=[0, 1])),
        "calibration_error": calibration_error(y, p),
        "bad_rate": float(np.mean(y)),
        "mean_p_bad": float(np.mean(p)),
    }


def star_table(y: np.ndarray, star: np.ndarray, w: np.ndarray | None = None) -> pd.DataFrame:
    """Rows, share and bad rate per star (1..5); with weights ``w`` the bad rate is weighted (per
    opportunity when ``y`` is the per-opportunity rate and ``w`` the exposure)."""
    weight = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    frame = pd.DataFrame({"star": star, "bad": np.asarray(y, dtype=np.float64) * weight, "w": weight})
    grouped = frame.groupby("star")
    table = pd.DataFrame({"rows": grouped.size(), "bad_rate": grouped["bad"].sum() / grouped["w"].sum()})
    table = table.reindex(range(1, N_STARS + 1))
    table["rows"] = table["rows"].fillna(0).astype(int)
    table["share"] = table["rows"] / max(len(frame), 1)
    return table


def stars_monotone(table: pd.DataFrame) -> bool:
    """True when every band is populated and the bad rate strictly falls as stars rise."""
    rates = table["bad_rate"].to_numpy()
    return bool(np.all(table["rows"].to_numpy() > 0) and np.all(np.diff(rates) < 0))
