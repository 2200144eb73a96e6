"""Probability <-> score <-> star mapping."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.scale import (
    SCORE_MAX,
    SCORE_MIN,
    ScoreScale,
    p_to_score,
    score_to_p,
    score_to_star,
    validate_cuts,
)


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_score_and_probability_round_trip(p):
    scale = ScoreScale()
    assert score_to_p(p_to_score(p, scale, clip=False), scale) == pytest.approx(p, rel=1e-9)


def test_base_score_means_base_odds_and_pdo_doubles_them():
    scale = ScoreScale(base_score=600, base_odds=20, pdo=50)
    assert p_to_score(1 / 21, scale) == pytest.approx(600)
    assert p_to_score(1 / 41, scale) == pytest.approx(650)


def test_score_is_clipped_and_falls_with_risk():
    scores = p_to_score(np.array([1e-8, 0.001, 0.05, 0.3, 0.99]), ScoreScale())
    assert scores[0] == SCORE_MAX and scores[-1] == SCORE_MIN
    assert np.all(np.diff(scores) < 0)


def test_stars_bands_include_their_lower_cut():
    cuts = (500.0, 550.0, 600.0, 700.0)
    assert score_to_star(np.array([350, 499, 500, 549, 550, 600, 699, 700, 950]), cuts).tolist() == [
        1,
        1,
        2,
        2,
        3,
        4,
        4,
        5,
        5,
    ]


@pytest.mark.parametrize(
    "cuts, message",
    [
        ((500, 600, 700), "4 scores"),
        ((500, 500, 600, 700), "strictly increasing"),
        ((300, 500, 600, 700), "lie in"),
    ],
)
def test_bad_cuts_are_rejected(cuts, message):
    with pytest.raises(ValueError, match=message):
        validate_cuts(cuts)


def test_scale_rejects_nonpositive_pdo():
    with pytest.raises(ValueError, match="pdo"):
        ScoreScale(pdo=0)
