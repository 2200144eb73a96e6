"""Can buyers and merchants trust the rating? Its fixed figures on the test window, with intervals.

* **Stars per opportunity**: each star's bad outcomes over its exposure (``training.labels``:
  ``bad_events_90d / exposure_90d`` summed over the star's rows), which must strictly fall from 1
  to 5 stars (``star<s>_bad_rate_per_opportunity``, ``stars_monotone_per_opportunity``).
* **Activity**: among buyers the simulator's truth calls honest and reliable (``honest_reliable``),
  the mean rating probability of the most active fifth over that of the least active fifth
  (``honest_reliable_activity_fifths_ratio``; the truth's own 90-day probability gives the same
  ratio for what an activity-blind target would have to undo, ``..._truth``).
* **Reason stability**: the share of buyers whose top reason sets agree between two retrains that
  differ only in their seed (``reason_stability``: mean overlap of the two sets; ``..._identical``:
  share of identical sets), over the test buyers rated 1-2 stars.

Intervals are the yardsticks' buyer bootstrap (``training.evaluation.yardsticks.buyer_weight_blocks``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rating.scale import N_STARS
from training.evaluation.yardsticks import BOOTSTRAP_REPLICATES, Estimate, buyer_weight_blocks

LOW_STARS = 2
"""Stars at or below which a rating's reasons are what a buyer reads as why (1-2 stars)."""
FIFTHS = 5


def star_rates_per_opportunity(
    star: np.ndarray,
    bad_events: np.ndarray,
    exposure: np.ndarray,
    buyer: np.ndarray,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 7,
) -> dict[str, float]:
    """Each star's bad outcomes per opportunity with its interval, and whether they strictly fall.

    Returns:
        ``star<s>_bad_rate_per_opportunity`` (+ ``_ci_low``/``_ci_high``) for s = 1..5, and
        ``stars_monotone_per_opportunity`` (1.0 when every star holds rows and the full-sample rates
        strictly fall) with ``stars_monotone_per_opportunity_share`` (the share of bootstrap
        replicates in which they do).
    """
    onehot = (np.asarray(star)[:, None] == np.arange(1, N_STARS + 1)[None, :]).astype(np.float64)
    events = onehot * np.asarray(bad_events, np.float64)[:, None]
    exposed = onehot * np.asarray(exposure, np.float64)[:, None]
    rates = []
    for block in buyer_weight_blocks(np.asarray(buyer), replicates, seed):
        with np.errstate(invalid="ignore", divide="ignore"):
            rates.append((block @ events) / (block @ exposed))
    table = np.vstack(rates)  # (replicates + 1) x stars
    out: dict[str, float] = {}
    for s in range(N_STARS):
        out.update(Estimate.of(table[:, s]).metrics(f"star{s + 1}_bad_rate_per_opportunity"))
    falling = np.all(np.diff(table, axis=1) < 0, axis=1)
    out["stars_monotone_per_opportunity"] = float(falling[0] and onehot.sum(axis=0).min() > 0)
    out["stars_monotone_per_opportunity_share"] = (
        float(falling[1:].mean()) if len(falling) > 1 else float("nan")
    )
    return out


def honest_reliable(traits: pd.DataFrame) -> pd.Series:
    """Per buyer (index ``buyer_id``): no fraud, no ring, reliability at or above the median and
    opportunism at or below it (the simulator's latent traits, ``truth/traits.parquet``)."""
    t = traits.set_index("buyer_id")
    return (
        ~t["fraudster"].astype(bool)
        & ~t["ring_member"].astype(bool)
        & (t["reliability"] >= t["reliability"].median())
        & (t["opportunism"] <= t["opportunism"].median())
    )


def activity_fifths_ratio(
    p: np.ndarray,
    buyer: np.ndarray,
    traits: pd.DataFrame,
    name: str,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 7,
) -> dict[str, float]:
    """Among honest, reliable buyers' rows, mean ``p`` of the most active fifth over that of the least
    active fifth (fifths of the rows by the buyer's latent ``activity``), with its interval.

    Returns:
        ``name`` with ``_ci_low``/``_ci_high``; empty when no row is of an honest, reliable buyer.
    """
    good = honest_reliable(traits)
    activity = traits.set_index("buyer_id")["activity"]
    ids = pd.Index(np.asarray(buyer))
    keep = good.reindex(ids).fillna(False).to_numpy(bool)
    if keep.sum() < FIFTHS:
        return {}
    level = activity.reindex(ids).to_numpy(np.float64)[keep]
    edges = np.quantile(level, [1 / FIFTHS, 1 - 1 / FIFTHS])
    low, high = level <= edges[0], level > edges[1]
    values = np.asarray(p, np.float64)[keep]
    ratios = []
    for block in buyer_weight_blocks(np.asarray(buyer)[keep], replicates, seed):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_high = (block[:, high] @ values[high]) / block[:, high].sum(axis=1)
            mean_low = (block[:, low] @ values[low]) / block[:, low].sum(axis=1)
        ratios.append(mean_high / mean_low)
    return Estimate.of(np.concatenate(ratios)).metrics(name)


def reason_stability(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """How far two retrains' top reason sets agree, row by row.

    Args:
        first: ``rows x k`` reason codes (catalogue indices, -1 pads) of one retrain.
        second: The same rows' codes by the other retrain.

    Returns:
        ``reason_stability`` (mean of ``|A & B| / max(|A|, |B|)``, 1 where both are empty) and
        ``reason_stability_identical`` (share of rows whose sets are equal), over ``rows``.
    """
    if len(first) == 0:
        return {}
    overlap, identical = [], []
    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        sa, sb = {x for x in a if x >= 0}, {x for x in b if x >= 0}
        size = max(len(sa), len(sb))
        overlap.append(len(sa & sb) / size if size else 1.0)
        identical.append(sa == sb)
    return {
        "reason_stability": float(np.mean(overlap)),
        "reason_stability_identical": float(np.mean(identical)),
    }


def opportunity_auc(
    bad_events: np.ndarray,
    exposure: np.ndarray,
    buyer: np.ndarray,
    scores: dict[str, np.ndarray],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 7,
) -> dict[str, np.ndarray]:
    """AUC over opportunities: each row's ``bad_events`` count as positives and the rest of its
    ``exposure`` as negatives, all at the row's score (ties one half). Bootstrap replicates (index 0
    the full sample) of each score on the same resampled buyers.
    """
    pos_w = np.asarray(bad_events, np.float64)
    neg_w = np.maximum(np.asarray(exposure, np.float64) - pos_w, 0.0)
    groups = {
        name: np.unique(np.asarray(s, np.float64), return_inverse=True)[1] for name, s in scores.items()
    }
    out: dict[str, list[float]] = {name: [] for name in scores}
    for block in buyer_weight_blocks(np.asarray(buyer), replicates, seed):
        for w in block:
            for name, group in groups.items():
                size = group.max() + 1 if group.size else 0
                pos = np.bincount(group, weights=w * pos_w, minlength=size)
                neg = np.bincount(group, weights=w * neg_w, minlength=size)
                total = pos.sum() * neg.sum()
                below = np.cumsum(neg) - neg
                out[name].append(
                    float((pos * (below + 0.5 * neg)).sum() / total) if total > 0 else float("nan")
                )
    return {name: np.array(values) for name, values in out.items()}
