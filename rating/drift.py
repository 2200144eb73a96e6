"""Distribution drift against a frozen reference: PSI on frozen bins, Jensen-Shannon on categories.

Training freezes the reference (bin edges and proportions per signal, for the score and for the
request context, ``training.reference``); the monitor bins today's values on those same edges
(``serving.monitor``). Both call these functions, so a PSI means the same thing in both places.

Bins are right-closed at the interior edges (a value equal to an edge falls in the bin above, as
``numpy.searchsorted(side="right")``); a last bin holds missing values (NaN), so a signal that
starts to go missing drifts too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

FLOOR = 1e-6
"""Smallest proportion in a PSI term: an empty bin on one side costs a finite amount."""
OTHER = "(other)"
"""The category of values outside a categorical reference's vocabulary."""


def frozen_edges(reference: ArrayLike, bins: int = 10) -> np.ndarray:
    """Interior bin edges at the quantiles of ``reference`` (deciles by default), duplicates merged.

    Missing values are ignored; an all-missing reference has no edges (one bin, plus missing).
    """
    x = np.asarray(reference, np.float64)
    x = x[~np.isnan(x)]
    if bins < 2:
        raise ValueError(f"bins: at least 2, got {bins}")
    if x.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))


def proportions(values: ArrayLike, edges: ArrayLike) -> np.ndarray:
    """Share of ``values`` in each bin of ``edges`` and, last, the share missing (len(edges) + 2).

    Raises:
        ValueError: ``values`` is empty (a proportion of nothing is not a distribution).
    """
    x = np.asarray(values, np.float64)
    if x.size == 0:
        raise ValueError("proportions: no values")
    edges = np.asarray(edges, np.float64)
    missing = np.isnan(x)
    counts = np.bincount(np.searchsorted(edges, x[~missing], side="right"), minlength=edges.size + 1)
    return np.append(counts, missing.sum()) / x.size


def psi_of(expected: ArrayLike, actual: ArrayLike) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` of two proportion vectors (floored)."""
    e = np.clip(np.asarray(expected, np.float64), FLOOR, None)
    a = np.clip(np.asarray(actual, np.float64), FLOOR, None)
    if e.shape != a.shape:
        raise ValueError(f"psi: {e.size} reference bins, {a.size} actual bins")
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected: ArrayLike, actual: ArrayLike, bins: int = 10) -> float:
    """PSI of ``actual`` against ``expected``, on the decile edges of ``expected``."""
    edges = frozen_edges(expected, bins)
    return psi_of(proportions(expected, edges), proportions(actual, edges))


def category_shares(values: Sequence | np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Share of each ``vocabulary`` value in ``values``, then the share of any other value (``OTHER``).

    Raises:
        ValueError: ``values`` is empty.
    """
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        raise ValueError("category_shares: no values")
    index = {v: i for i, v in enumerate(vocabulary)}
    codes = np.array([index.get(v, len(vocabulary)) for v in arr], dtype=np.int64)
    return np.bincount(codes, minlength=len(vocabulary) + 1) / arr.size


def jensen_shannon(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon divergence of two distributions, in bits (0 = identical, 1 = disjoint)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"jensen_shannon: {p.size} reference categories, {q.size} actual categories")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, (kl(p) + kl(q)) / 2)
