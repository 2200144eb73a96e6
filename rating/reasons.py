"""Fast reason codes: a per-signal lookup table of TreeSHAP contributions.

Exact TreeSHAP walks every tree for every row (milliseconds per row); checkout needs
microseconds. At training time we compute exact TreeSHAP contributions on a sample,
cut each signal into quantile bins and store the mean contribution per bin (plus one
value for "missing"). At decision time a row's attribution is one comparison against
each signal's bin edges and one table read: the signal's main-effect contribution,
blind only to interactions. ``bench/bench_reasons.py`` measures how often its top
reasons agree with exact TreeSHAP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reason:
    """One reason code: the signal, its buyer-facing text and how much it raised the risk (log-odds)."""

    code: str
    text: str
    contribution: float


@dataclass(frozen=True)
class ReasonTable:
    """Binned mean contributions per signal.

    Attributes:
        edges: (n_signals, n_bins - 1) bin edges, padded with +inf; bin = count of edges <= x.
        values: (n_signals, n_bins + 1) mean contribution per bin; the last column is "missing".
    """

    edges: np.ndarray
    values: np.ndarray

    def contributions(self, X: np.ndarray, chunk_rows: int = 4096) -> np.ndarray:
        """Approximate contributions (log-odds) for each row and signal of ``X`` (n, n_signals)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != self.edges.shape[0]:
            raise ValueError(f"X has {X.shape[1]} signals, the table {self.edges.shape[0]}")
        out = np.empty(X.shape, dtype=np.float64)
        rows = np.arange(X.shape[1])
        nan_col = self.values.shape[1] - 1
        for start in range(0, X.shape[0], chunk_rows):
            block = X[start : start + chunk_rows]
            bins = (block[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
            bins[np.isnan(block)] = nan_col
            out[start : start + chunk_rows] = self.values[rows[None, :], bins]
        return out


def fit_reason_table(X: np.ndarray, contrib: np.ndarray, n_bins: int = 16) -> ReasonTable:
    """Fit the lookup table from exact contributions.

    Args:
        X: (n, n_signals) signal values of a sample (NaN = missing).
        contrib: (n, n_signals) exact TreeSHAP contributions for the same rows (no bias column).
        n_bins: Quantile bins per signal at most (default 16).

    Returns:
        The fitted ``ReasonTable``.
    """
    X = np.asarray(X, dtype=np.float64)
    contrib = np.asarray(contrib, dtype=np.float64)
    if X.shape != contrib.shape:
        raise ValueError(f"X {X.shape} and contrib {contrib.shape} must have the same shape")
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    n_sig = X.shape[1]
    edges = np.full((n_sig, n_bins - 1), np.inf)
    values = np.zeros((n_sig, n_bins + 1))
    qs = np.linspace(0, 1, n_bins + 1)[1:-1]
    for j in range(n_sig):
        x, c = X[:, j], contrib[:, j]
        present = ~np.isnan(x)
        if (~present).any():
            values[j, n_bins] = c[~present].mean()
        if not present.any():
            continue
        e = np.unique(np.quantile(x[present], qs))
        edges[j, : len(e)] = e
        bins = np.searchsorted(e, x[present], side="right")
        sums = np.bincount(bins, weights=c[present], minlength=n_bins)
        counts = np.bincount(bins, minlength=n_bins)
        values[j, :n_bins] = np.divide(sums, counts, out=np.zeros(n_bins), where=counts > 0)
    return ReasonTable(edges=edges, values=values)


def top_k(contributions: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest positive contributions per row, largest first.

    Args:
        contributions: (n, n_signals) contributions.
        k: How many to keep.

    Returns:
        ``(index, value)``, each (n, k): signal index (int16, -1 where fewer than ``k``
        signals raise the risk) and contribution (float32, 0 there).
    """
    n, width = contributions.shape
    k_eff = min(k, width)
    index = np.full((n, k), -1, dtype=np.int16)
    value = np.zeros((n, k), dtype=np.float32)
    if n == 0 or k_eff == 0:
        return index, value
    top = np.argpartition(-contributions, k_eff - 1, axis=1)[:, :k_eff]
    top_c = np.take_along_axis(contributions, top, axis=1)
    order = np.argsort(-top_c, axis=1, kind="stable")
    top, top_c = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_c, order, axis=1)
    index[:, :k_eff] = np.where(top_c > 0, top, -1)
    value[:, :k_eff] = np.where(top_c > 0, top_c, 0.0)
    return index, value


def top_reasons(
    contributions: np.ndarray, names: list[str], texts: dict[str, str], k: int = 4
) -> list[Reason]:
    """The ``k`` signals that raised the risk most (positive contributions only), largest first."""
    c = np.asarray(contributions, dtype=np.float64).ravel()
    index, value = top_k(c[None, :], k)
    return [Reason(names[j], texts.get(names[j], names[j]), float(c[j])) for j in index[0].tolist() if j >= 0]
