"""How reviews are drawn (``aftersales.reviews``) and the truth it implies: P(malicious | what is posted).

A review of a regular order is malicious with probability ``sigmoid(MALICE_LOGIT)`` of the
writer's hostility. Everything a review shows is then drawn from the malicious or the honest
distribution, independently of the rest: the rating (malicious: always 1 star), the text length
(lognormal, a share of reviews without text, rounded to whole characters) and whether it has
photos. Reviews of fake orders are never malicious (5 stars, a few characters, no photos). So the
probability that a posted review is malicious, given the writer's traits and what the review
shows, is Bayes' rule with exact likelihoods (``malicious_posterior``).

What follows the posting depends on malice and rating only: a seller reports it
(``REPORT_P``) about a day later, and moderation removes a reported review as malicious
(``REMOVE_P``) about a week after the report. ``removal_prob`` is the probability of that removal.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from simulator.hazards import sigmoid

MALICE_LOGIT = (-7.0, 12.0)  # log-odds of a malicious review: a + b * hostility
HONEST_RATINGS = np.array([0.03, 0.03, 0.07, 0.17, 0.70])  # P(rating 1..5) of an honest review
TEXT_MALICIOUS = (120.0, 0.5)  # lognormal text length: median characters, sigma
TEXT_HONEST = (25.0, 1.0)
NO_TEXT_P = 0.15  # share of non-fake reviews posted without text, malicious or not
FAKE_TEXT_MAX = 12  # a fake order's review has 0..11 characters
PHOTOS_P = (0.5, 0.2)  # P(photos): malicious, honest
REPORT_P = (0.85, 0.2, 0.005)  # P(a seller reports it): malicious, honest 1-2 stars, honest 3-5 stars
REMOVE_P = (0.75, 0.03)  # P(moderation removes a reported review as malicious): malicious, honest
LOW_RATING = 2  # ratings up to this are the negative ones an honest review is reported for
REPORT_LAG = (1.0, 0.8)  # days after posting: median, sigma
REMOVAL_LAG = (7.0, 0.6)  # days after the report


def malice_prior(hostility: np.ndarray) -> np.ndarray:
    """P(a review of a regular order is malicious) for writers of the given hostility."""
    return sigmoid(MALICE_LOGIT[0] + MALICE_LOGIT[1] * np.asarray(hostility, np.float64))


def honest_report_prob(rating: np.ndarray) -> np.ndarray:
    """P(a seller reports an honest review) by its rating."""
    return np.where(np.asarray(rating) <= LOW_RATING, REPORT_P[1], REPORT_P[2])


def _log_text_likelihood(length: np.ndarray, median: float, sigma: float) -> np.ndarray:
    """log P(text_length = k) for a non-fake review: no text with ``NO_TEXT_P``, else a lognormal
    rounded to whole characters (``round(x) = k`` for ``x`` in ``(k - 0.5, k + 0.5)``)."""
    k = np.asarray(length, np.float64)
    lo = (np.log(np.maximum(k - 0.5, 1e-300)) - np.log(median)) / sigma
    hi = (np.log(k + 0.5) - np.log(median)) / sigma
    # the bin's mass from the nearer tail, so neither tail loses it to cancellation
    bin_mass = np.where(lo > 0, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
    mass = np.where(k <= 0, NO_TEXT_P + (1 - NO_TEXT_P) * ndtr(hi), (1 - NO_TEXT_P) * bin_mass)
    return np.log(np.maximum(mass, 1e-300))


def malicious_posterior(
    hostility: np.ndarray,
    rating: np.ndarray,
    text_length: np.ndarray,
    has_photos: np.ndarray,
    fake: np.ndarray,
) -> np.ndarray:
    """P(malicious | the writer's hostility and what the review shows), by Bayes' rule.

    Args:
        hostility: The writer's hostility trait.
        rating: Stars 1-5 (a malicious review has 1).
        text_length: Characters of text.
        has_photos: Whether photos are attached.
        fake: The review is of a fake order (never malicious).

    Returns:
        The exact posterior: rating, text length and photos are drawn from the malicious or the
        honest distribution independently of one another and of everything else.
    """
    rating = np.asarray(rating)
    photos = np.asarray(has_photos, bool)
    prior = np.clip(malice_prior(hostility), 1e-300, 1.0 - 1e-16)
    log_lr = (
        -np.log(HONEST_RATINGS[0])  # P(1 star | malicious) = 1
        + _log_text_likelihood(text_length, *TEXT_MALICIOUS)
        - _log_text_likelihood(text_length, *TEXT_HONEST)
        + np.where(photos, np.log(PHOTOS_P[0] / PHOTOS_P[1]), np.log((1 - PHOTOS_P[0]) / (1 - PHOTOS_P[1])))
    )
    p = sigmoid(np.log(prior) - np.log1p(-prior) + log_lr)
    return np.where((rating == 1) & ~np.asarray(fake, bool), p, 0.0)


def removal_prob(p_malicious: np.ndarray, rating: np.ndarray) -> np.ndarray:
    """P(the review is removed as malicious, eventually) given its P(malicious) and rating."""
    p = np.asarray(p_malicious, np.float64)
    return p * REPORT_P[0] * REMOVE_P[0] + (1 - p) * honest_report_prob(rating) * REMOVE_P[1]


def removal_prob_if_reported(p_malicious: np.ndarray, rating: np.ndarray) -> np.ndarray:
    """P(removed as malicious | a seller reported it), given its P(malicious) and rating."""
    p = np.asarray(p_malicious, np.float64)
    reported = p * REPORT_P[0] + (1 - p) * honest_report_prob(rating)
    return removal_prob(p, rating) / reported
