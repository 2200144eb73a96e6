"""Probability -> score -> star: small pure functions, each with its inverse where one exists.

The score is the classic credit-scorecard scaling of the odds of a *good* outcome::

    score = offset + factor * ln(odds_good),   odds_good = (1 - p_bad) / p_bad
    factor = pdo / ln(2),  offset = base_score - factor * ln(base_odds)

so ``base_score`` points mean good:bad odds of ``base_odds``:1 and every ``pdo`` points
double those odds. The result is clipped to [350, 950], the range buyers and merchants
already know from external credit scores. Stars are bands of the score: ``cuts`` are
four increasing scores, a score below ``cuts[0]`` is one star, at or above ``cuts[3]`` five.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_MIN = 350
SCORE_MAX = 950
N_STARS = 5


@dataclass(frozen=True)
class ScoreScale:
    """Score scaling parameters.

    Attributes:
        base_score: Score at which good:bad odds equal ``base_odds`` (default 600).
        base_odds: Good:bad odds at ``base_score`` (default 20, i.e. p_bad = 1/21).
        pdo: Points that double the odds (default 50).
    """

    base_score: float = 600.0
    base_odds: float = 20.0
    pdo: float = 50.0

    def __post_init__(self) -> None:
        if self.base_odds <= 0:
            raise ValueError(f"base_odds must be > 0, got {self.base_odds}")
        if self.pdo <= 0:
            raise ValueError(f"pdo must be > 0, got {self.pdo}")

    @property
    def factor(self) -> float:
        return self.pdo / np.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * np.log(self.base_odds)


def p_to_score(p_bad: np.ndarray | float, scale: ScoreScale, clip: bool = True) -> np.ndarray:
    """Map a probability of a bad outcome to a score (higher is better).

    Args:
        p_bad: Probabilities in (0, 1); values are clamped to [1e-9, 1 - 1e-9].
        scale: Scaling parameters.
        clip: Clip to [SCORE_MIN, SCORE_MAX] (default True); pass False to test the inverse.

    Returns:
        Float scores, same shape as ``p_bad``.
    """
    p = np.clip(np.asarray(p_bad, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    score = scale.offset + scale.factor * np.log((1.0 - p) / p)
    return np.clip(score, SCORE_MIN, SCORE_MAX) if clip else score


def score_to_p(score: np.ndarray | float, scale: ScoreScale) -> np.ndarray:
    """Inverse of ``p_to_score`` (unclipped): the probability of a bad outcome at a score."""
    odds_good = np.exp((np.asarray(score, dtype=np.float64) - scale.offset) / scale.factor)
    return 1.0 / (1.0 + odds_good)


def validate_cuts(cuts: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Check star cut-points: ``N_STARS - 1`` strictly increasing scores inside the score range."""
    cuts = tuple(float(c) for c in cuts)
    if len(cuts) != N_STARS - 1:
        raise ValueError(f"cuts must hold {N_STARS - 1} scores, got {len(cuts)}")
    if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
        raise ValueError(f"cuts must be strictly increasing, got {cuts}")
    if cuts[0] <= SCORE_MIN or cuts[-1] > SCORE_MAX:
        raise ValueError(f"cuts must lie in ({SCORE_MIN}, {SCORE_MAX}], got {cuts}")
    return cuts


def score_to_star(score: np.ndarray | float, cuts: tuple[float, ...]) -> np.ndarray:
    """Star band (1..5) of each score: 1 + the number of cuts at or below it."""
    return 1 + np.searchsorted(np.asarray(cuts), np.asarray(score, dtype=np.float64), side="right")
