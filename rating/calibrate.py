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


def newton_logistic(
    design: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray | None = None,
    max_iter: int = 100,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Coefficients ``w`` of ``P(y=1) = sigmoid(offset + design @ w)`` by Newton's method on the log loss.

    Args:
        design: ``rows x k`` covariates (include a column of ones for an intercept).
        y: Outcomes in [0, 1], one per row (a fractional ``y`` is a rate over ``weight`` trials).
        offset: Fixed log-odds per row (default 0).
        max_iter: Newton iterations at most (default 100).
        weight: Non-negative row weights (default 1).

    Raises:
        ValueError: Shapes disagree, or ``y`` holds one outcome only.
    """
    x = np.asarray(design, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    base = np.zeros(len(t)) if offset is None else np.asarray(offset, dtype=np.float64)
    v = np.ones(len(t)) if weight is None else np.asarray(weight, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != t.shape[0] or base.shape != t.shape or t.ndim != 1 or v.shape != t.shape:
        raise ValueError(f"design {x.shape}, y {t.shape}, offset {base.shape} and weight {v.shape} disagree")
    if t.size == 0 or t.min() == t.max():
        raise ValueError("y must contain both outcomes to fit a logistic model")

    def loss(w: np.ndarray) -> float:
        eta = base + x @ w
        return float(v @ (np.logaddexp(0.0, eta) - t * eta))

    w = np.zeros(x.shape[1])
    current = loss(w)
    for _ in range(max_iter):
        p = np.exp(-np.logaddexp(0.0, -(base + x @ w)))  # sigmoid, without overflow
        grad = x.T @ (v * (p - t))
        hess = x.T @ (x * (v * p * (1 - p))[:, None]) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        # a full Newton step from far off (a base that prices the rows much too low) can overshoot and
        # diverge: halve it until the loss does not rise
        for _ in range(50):
            if (trial := loss(w - step)) <= current:
                break
            step = step / 2
        w -= step
        current = min(current, trial)
        if np.abs(step).max() < 1e-10:
            break
    return w


def fit_platt(
    raw_logit: np.ndarray, y: np.ndarray, max_iter: int = 100, w: np.ndarray | None = None
) -> Calibration:
    """Fit Platt scaling by Newton's method on the (weighted) log loss.

    Args:
        raw_logit: Booster raw scores (log-odds) on held-out data.
        y: Outcomes in [0, 1] (0/1, or per-opportunity rates with their exposure as ``w``), same length.
        max_iter: Newton iterations at most (default 100).
        w: Row weights (default 1).

    Returns:
        The fitted ``Calibration``.
    """
    x = np.asarray(raw_logit, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if x.shape != t.shape or x.ndim != 1:
        raise ValueError(f"raw_logit and y must be 1-d of equal length, got {x.shape} and {t.shape}")
    w = newton_logistic(np.column_stack([x, np.ones_like(x)]), t, max_iter=max_iter, weight=w)
    return Calibration(slope=float(w[0]), intercept=float(w[1]))
