"""Off-policy estimates (``serving.offline.ope``) against a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.offline.ope import estimate


def logged(seed: int, n: int = 4000, share: float = 0.2) -> tuple[pd.DataFrame, np.ndarray, float]:
    """A log made by a policy that approves a head loss under 2% and explores ``share`` of the rest.

    Returns the log, a looser candidate's approvals (head loss under 6%) and the candidate's true loss.
    """
    rng = np.random.default_rng(seed)
    q = rng.beta(1.0, 20.0, n)  # true loss probabilities
    head = np.clip(q * rng.lognormal(0.0, 0.4, n), 0, 1)  # the head's noisy view
    at_risk = rng.uniform(50, 1000, n)
    eligible = head >= 0.02
    explored = eligible & (rng.uniform(size=n) < share)
    approved = ~eligible | explored
    propensity = np.where(eligible, np.where(explored, share, 1 - share), 1.0)
    loss = np.where(approved & (rng.uniform(size=n) < q), at_risk, 0.0)
    log = pd.DataFrame(
        {
            "buyer_id": rng.integers(0, n // 2, n),
            "approved": approved,
            "propensity": propensity,
            "at_risk": at_risk,
            "head_loss": head * at_risk,
            "loss": loss,
        }
    )
    candidate = head < 0.06
    return log, candidate, float((q * at_risk)[candidate].sum())


def test_the_intervals_cover_the_truth():
    covered = {"ips": 0, "snips": 0, "dr": 0}
    runs = 40
    for seed in range(runs):
        log, candidate, truth = logged(seed)
        out = estimate(log, candidate, seed=seed)
        for name in covered:
            lo, hi = out[f"{name}_ci"]
            covered[name] += lo <= truth <= hi
    assert all(count >= 0.85 * runs for count in covered.values()), covered


def test_money_and_approvals_are_exact():
    log, candidate, _ = logged(0)
    out = estimate(log, candidate)
    assert out["approvals"] == candidate.sum()
    assert out["money"] == pytest.approx(log["at_risk"][candidate].sum())
    assert out["unsupported"] == 0  # every would-be decline was explorable


def test_a_candidate_approving_what_the_log_never_could_is_counted_unsupported():
    log, candidate, _ = logged(1)
    log.loc[log["approved"] == False, "propensity"] = 1.0  # noqa: E712 - no exploration at all
    out = estimate(log, np.ones(len(log), bool))
    assert out["unsupported"] == int((~log["approved"]).sum()) > 0


def test_a_bad_propensity_is_refused():
    log, candidate, _ = logged(2)
    log.loc[0, "propensity"] = 0.0
    with pytest.raises(ValueError, match="propensity"):
        estimate(log, candidate)
