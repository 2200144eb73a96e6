"""The classic baseline: a logistic-regression scorecard on weight-of-evidence binned signals."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def _bin(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per value; NaN gets its own last bin (``len(edges) + 1``)."""
    b = np.searchsorted(edges, x, side="right")
    b[np.isnan(x)] = len(edges) + 1
    return b


class WoEScorecard:
    """Quantile-binned weight-of-evidence signals, the strongest by information value, in a logistic regression.

    Args:
        n_bins: Quantile bins per signal (default 10).
        max_signals: Signals kept, by information value (default 20).
        C: Inverse L2 regularisation strength of the regression (default 1.0).
    """

    def __init__(self, n_bins: int = 10, max_signals: int = 20, C: float = 1.0) -> None:
        self.n_bins = n_bins
        self.max_signals = max_signals
        self.C = C

    def _check(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {self.n_bins}")
        if self.max_signals < 1:
            raise ValueError(f"max_signals must be >= 1, got {self.max_signals}")

    def _woe_column(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        present = x[~np.isnan(x)]
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        edges = np.unique(np.quantile(present, qs)) if present.size else np.array([])
        b = _bin(x, edges)
        n = len(edges) + 2
        bad = np.bincount(b, weights=y, minlength=n) + 0.5
        good = np.bincount(b, weights=1 - y, minlength=n) + 0.5
        dist_bad, dist_good = bad / bad.sum(), good / good.sum()
        woe = np.log(dist_bad / dist_good)
        iv = float(np.sum((dist_bad - dist_good) * woe))
        return edges, woe, iv

    def fit(self, X: np.ndarray, y: np.ndarray) -> WoEScorecard:
        """Bin every signal, keep the ``max_signals`` with the highest information value, fit the regression."""
        self._check()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        fitted = [self._woe_column(X[:, j], y) for j in range(X.shape[1])]
        iv = np.array([f[2] for f in fitted])
        self.selected_ = np.argsort(-iv, kind="stable")[: self.max_signals]
        self.information_value_ = iv
        self.edges_ = [fitted[j][0] for j in self.selected_]
        self.woe_ = [fitted[j][1] for j in self.selected_]
        self.regression_ = LogisticRegression(C=self.C, max_iter=1000).fit(self.transform(X), y)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Weight-of-evidence matrix of the selected signals."""
        X = np.asarray(X, dtype=np.float64)
        cols = [w[_bin(X[:, j], e)] for j, e, w in zip(self.selected_, self.edges_, self.woe_, strict=True)]
        return np.column_stack(cols)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of a bad outcome per row."""
        return self.regression_.predict_proba(self.transform(X))[:, 1]
