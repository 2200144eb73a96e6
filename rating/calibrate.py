"""Platt calibration on the booster's log-odds: two numbers, monotone and invertible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(slope * raw_logit + intercept)``; the identity is slope 1, intercept 0."""

    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if not self.slope > 0:
            raise ValueError(f"slope must be > 0 to keep the ranking, got {self.slope}")

    def apply(self, raw_logit: np.ndarray) -> np.ndarray:
        """Calibrated probability from the booster's raw score (log-odds)."""
        z = self.slope * np.asarray(raw_logit, dtype=np.float64) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def fit_platt(raw_logit: np.ndarray, y: np.ndarray, max_iter: int = 100) -> Calibration:
    """Fit Platt scaling by Newton's method on the log loss.

    Args:
        raw_logit: Booster raw scores (log-odds) on held-out data.
        y: 0/1 outcomes, same length.
        max_iter: Newton iterations at most (default 100).

    Returns:
        The fitted ``Calibration``.
    """
    x = np.asarray(raw_logit, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if x.shape != t.shape or x.ndim != 1:
        raise ValueError(f"raw_logit and y must be 1-d of equal length, got {x.shape} and {t.shape}")
    if t.min() == t.max():
        raise ValueError("y must contain both outcomes to fit a calibration")
    w = np.array([1.0, 0.0])  # slope, intercept
    design = np.column_stack([x, np.ones_like(x)])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - t)
        hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return Calibration(slope=float(w[0]), intercept=float(w[1]))
