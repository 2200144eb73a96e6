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

from collections.abc import Mapping, Sequence
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
    contributions: np.ndarray, names: Sequence[str], texts: Mapping[str, str], k: int = 4
) -> list[Reason]:
    """The ``k`` signals that raised the risk most (positive contributions only), largest first: as
    ``top_k`` ranks one row (the same selection and the same order among ties), without its 2-D set-up."""
    c = np.asarray(contributions, dtype=np.float64).ravel()
    k = min(k, c.size)
    if k == 0:
        return []
    top = np.argpartition(-c, k - 1)[:k]
    top = top[np.argsort(-c[top], kind="stable")]
    return [Reason(names[j], texts.get(names[j], names[j]), float(c[j])) for j in top.tolist() if c[j] > 0]


@dataclass(frozen=True)
class ReasonCatalogue:
    """The fixed catalogue of reasons a buyer reads, and how signal contributions map onto it.

    A reason is scored in *score points* against a stated baseline: the buyer with the population's
    typical value of every signal (``typical``, the training sample's median; missing where most
    buyers have none). A signal's points are ``points_per_logodds x (its contribution - the typical
    buyer's)``, positive when it lowers this buyer's score below the typical buyer's; a reason's
    points are the sum over the signals of its family (``member``). Signals of no entry (``member``
    -1: the volume of activity) are never a reason, and an entry that costs fewer than
    ``min_points`` is not one either (its points read 0).

    Attributes:
        codes: Reason codes, in catalogue order.
        texts: Buyer-facing text of each code.
        member: Per signal, the index of its code, or -1.
        typical: Per signal, the baseline buyer's value (NaN: missing).
        baseline: Per signal, the baseline buyer's contribution (log-odds).
        points_per_logodds: Score points one unit of log-odds is worth (``pdo / ln 2 x`` the
            calibration's slope).
        min_points: The fewest score points a reason costs (default ``MIN_REASON_POINTS``).
    """

    codes: tuple[str, ...]
    texts: tuple[str, ...]
    member: np.ndarray
    typical: np.ndarray
    baseline: np.ndarray
    points_per_logodds: float
    min_points: float = 0.0

    def __post_init__(self) -> None:
        if len(self.codes) != len(self.texts):
            raise ValueError(f"codes ({len(self.codes)}) and texts ({len(self.texts)}) differ in length")
        if not self.member.shape == self.typical.shape == self.baseline.shape:
            raise ValueError("member, typical and baseline must hold one value per signal")
        if self.member.max(initial=-1) >= len(self.codes):
            raise ValueError("member refers to a code outside the catalogue")
        if not self.points_per_logodds > 0:
            raise ValueError(f"points_per_logodds must be > 0, got {self.points_per_logodds}")

    def points(self, contributions: np.ndarray) -> np.ndarray:
        """Score points each catalogue entry costs each row against the baseline: ``rows x codes``.

        Args:
            contributions: ``rows x signals`` log-odds contributions (lookup table or exact TreeSHAP).
        """
        c = np.atleast_2d(np.asarray(contributions, dtype=np.float64))
        if c.shape[1] != len(self.member):
            raise ValueError(f"contributions have {c.shape[1]} signals, the catalogue {len(self.member)}")
        cited = self.member >= 0
        onehot = np.zeros((int(cited.sum()), len(self.codes)))
        onehot[np.arange(onehot.shape[0]), self.member[cited]] = 1.0
        points = ((c[:, cited] - self.baseline[cited]) * self.points_per_logodds) @ onehot
        return np.where(points >= self.min_points, points, 0.0)


def reason_points(catalogue: ReasonCatalogue | None, contributions: np.ndarray) -> np.ndarray:
    """What reasons are ranked by, from ``rows x signals`` log-odds contributions: each catalogue
    entry's score points against the baseline buyer (``rows x entries``), or, without a catalogue,
    the contributions themselves (one entry per signal)."""
    if catalogue is None:
        return np.atleast_2d(np.asarray(contributions, dtype=np.float64))
    return catalogue.points(contributions)


MIN_REASON_POINTS = 5.0
"""Score points below which a catalogue entry is not cited (on the default scale, 5 points move the
odds by 7%): a reason must cost the buyer something, and the near-ties below it are noise."""


def typical_values(X: np.ndarray) -> np.ndarray:
    """Per column, the population's typical value: the median of the present values, NaN where
    most rows are missing."""
    X = np.asarray(X, dtype=np.float64)
    present = ~np.isnan(X)
    out = np.full(X.shape[1], np.nan)
    for j in range(X.shape[1]):
        if present[:, j].mean() >= 0.5:
            out[j] = float(np.median(X[present[:, j], j]))
    return out


def fit_catalogue(
    table: ReasonTable,
    sample: np.ndarray,
    codes: list[str],
    texts: dict[str, str],
    points_per_logodds: float,
    min_points: float = MIN_REASON_POINTS,
) -> ReasonCatalogue:
    """The catalogue of ``codes`` (one per signal, '' for none) with the baseline of ``sample``.

    Args:
        table: The signals' lookup table (gives the typical buyer's contributions).
        sample: A sample of training rows (gives the typical values).
        codes: Per signal, its reason code ('' never a reason).
        texts: Code -> buyer-facing text, for every code used.
        points_per_logodds, min_points: See ``ReasonCatalogue``.
    """
    order = list(dict.fromkeys(c for c in codes if c))
    missing = [c for c in order if c not in texts]
    if missing:
        raise ValueError(f"no text for reason codes {missing[:5]}")
    typical = typical_values(sample)
    return ReasonCatalogue(
        codes=tuple(order),
        texts=tuple(texts[c] for c in order),
        member=np.array([order.index(c) if c else -1 for c in codes], dtype=np.int64),
        typical=typical,
        baseline=table.contributions(typical[None, :])[0],
        points_per_logodds=float(points_per_logodds),
        min_points=float(min_points),
    )
