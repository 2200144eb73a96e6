"""The baseline a credit team would build: an optbinning scorecard over the signals.

``optbinning.BinningProcess`` bins every signal optimally (monotonic event-rate trends where
the signal registry declares a risk direction), keeps the strongest by information value,
and ``optbinning.Scorecard`` fits a logistic regression on their weights of evidence.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from optbinning import BinningProcess, Scorecard
from sklearn.linear_model import LogisticRegression

# direction +1 (riskier as the signal grows) -> the bad rate ascends; -1 -> it descends
TRENDS = {1: "ascending", -1: "descending", 0: "auto"}
PREDICT_ROWS = 50_000
PREBINNING = "quantile"
"""Pre-bins before the optimal merge: quantiles. optbinning's default, a decision tree per signal, took
most of the scorecard's time (half of it sorting) and gave a weaker baseline than quantiles on the same
training rows (``docs/evaluation.md``, "The baseline a credit team would build")."""
SUBSAMPLE_SEED = 0
"""Seed of the pre-binning's row subsample. optbinning's quantile pre-binning is scikit-learn's
``KBinsDiscretizer``, which above 200,000 rows quantiles a random 200,000 drawn from numpy's global
generator without a seed (optbinning's ``BinningProcess`` cannot pass it one): two fits on the same rows gave
different bins, and the rating's gain over the scorecard moved from run to run (``docs/evaluation.md``).
The fit seeds that generator and puts its state back afterwards (``_seeded_global_rng``). At or below
200,000 rows nothing is drawn."""


@contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block and restore its state after it (see ``SUBSAMPLE_SEED``)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextmanager
def _quiet() -> Iterator[None]:
    """optbinning 1.0 triggers pandas 3 deprecation warnings inside its own code; they are not ours."""
    with warnings.catch_warnings():
        for category in (
            FutureWarning,
            DeprecationWarning,
            getattr(pd.errors, "Pandas4Warning", FutureWarning),
        ):
            warnings.simplefilter("ignore", category)
        # quantile pre-bins of a signal with few distinct values coincide (or it is constant on
        # these rows); scikit-learn merges them and says so
        for message in ("Bins whose width are too small", "Feature .* is constant"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


class OptBinningScorecard:
    """Optimal-binning WoE logistic scorecard (optbinning) over named signals.

    Args:
        names: Signal names, the columns of the matrices passed to ``fit`` / ``predict_proba``.
        directions: Registry risk direction per signal (+1, -1 or 0), same order as ``names``.
        max_signals: Signals kept, by information value (default 20).
        min_iv: Smallest information value a kept signal may have (default 0.02).
        C: Inverse L2 regularisation strength of the regression (default 1.0).
    """

    def __init__(
        self,
        names: Sequence[str],
        directions: Sequence[int],
        max_signals: int = 20,
        min_iv: float = 0.02,
        C: float = 1.0,
    ) -> None:
        self.names = names
        self.directions = directions
        self.max_signals = max_signals
        self.min_iv = min_iv
        self.C = C

    def _check(self) -> None:
        if len(self.names) != len(self.directions):
            raise ValueError(
                f"names ({len(self.names)}) and directions ({len(self.directions)}) differ in length"
            )
        if self.max_signals < 1:
            raise ValueError(f"max_signals must be >= 1, got {self.max_signals}")
        bad = sorted({d for d in self.directions if d not in TRENDS})
        if bad:
            raise ValueError(f"directions must be -1, 0 or +1, got {bad}")

    def _frame(self, X: np.ndarray) -> pd.DataFrame:
        if X.shape[1] != len(self.names):
            raise ValueError(f"X has {X.shape[1]} columns, expected {len(self.names)} (names)")
        return pd.DataFrame(X, columns=list(self.names), copy=False)  # optbinning casts the columns it bins

    def fit(self, X: np.ndarray, y: np.ndarray) -> OptBinningScorecard:
        """Bin, select and fit on ``X`` (rows x signals) and 0/1 ``y``."""
        self._check()
        names = list(self.names)
        process = BinningProcess(
            variable_names=names,
            binning_fit_params={
                n: {
                    "monotonic_trend": TRENDS[d],
                    "prebinning_method": PREBINNING,
                }
                for n, d in zip(names, self.directions, strict=True)
            },
            selection_criteria={"iv": {"min": self.min_iv, "top": self.max_signals}},
        )
        card = Scorecard(
            binning_process=process,
            estimator=LogisticRegression(C=self.C, max_iter=1000),
            scaling_method="min_max",
            scaling_method_params={"min": 0, "max": 1000},
        )
        with _quiet(), _seeded_global_rng(SUBSAMPLE_SEED):
            card.fit(self._frame(X), np.asarray(y, dtype=np.int64))
            summary = card.binning_process_.summary().set_index("name")
        self.card_ = card
        self.selected_ = np.flatnonzero(card.binning_process_.get_support())
        self.information_value_ = summary.reindex(names)["iv"].to_numpy(np.float64)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the bad class per row, ``PREDICT_ROWS`` rows at a time (optbinning
        transforms a float64 copy of every variable it keeps)."""
        frame = self._frame(X)
        with _quiet():
            return np.concatenate(
                [np.empty(0)]
                + [
                    self.card_.predict_proba(frame.iloc[start : start + PREDICT_ROWS])[:, 1]
                    for start in range(0, len(frame), PREDICT_ROWS)
                ]
            )
