"""Training proposes the expected-loss allowances of the decision policy.

The policy accepts an opportunity when the head's expected loss (probability of a loss if
approved x the money at risk) is at or below an allowance, a share of the money at risk, per star
band: ``p * at_risk <= allowance[star] * at_risk``, a ceiling on the head's probability (stars
below ``min_stars`` never qualify).
On the validation window, with the head's own probabilities (real exports have no truth), the
proposal takes the largest allowances whose approved opportunities lose no more per approved
unit than the legacy rule does there (for fast refunds half of it: the whole-policy search's
target, ``serving.offline.policy_search.TARGET_SHARE``, of which the proposal is the start): first one allowance for every band, then each band's
allowance scaled up or down while that keeps the loss rate, adds approved money and keeps the
allowances from falling as stars rise (the policy file requires it). The test
window then measures the proposal against the rule with the truth (``docs/decisions.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SCALES = (0.25, 0.5, 0.8, 1.25, 2.0, 4.0)


@dataclass(frozen=True)
class Proposal:
    """Allowances per star band and what they do on the window they were fitted on."""

    service: str
    allowances: dict[int, float]
    rule_loss_rate: float
    loss_rate: float
    volume_multiple: float


def approved(ratio: np.ndarray, star: np.ndarray, allowances: dict[int, float]) -> np.ndarray:
    """Which opportunities the allowances accept (``ratio`` = expected loss / money at risk)."""
    ok = np.zeros(ratio.size, dtype=bool)
    for band, allowance in allowances.items():
        ok |= (star == band) & (ratio <= allowance)
    return ok


def _outcome(loss: np.ndarray, at_risk: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    volume = float(at_risk[ok].sum())
    return (float(loss[ok].sum()) / volume if volume else 0.0), volume


def propose(
    service: str,
    p: np.ndarray,
    at_risk: np.ndarray,
    star: np.ndarray,
    rule: np.ndarray,
    bands: tuple[int, ...],
    target_share: float = 1.0,
) -> Proposal:
    """The allowances that approve the most money at ``target_share`` of the rule's loss rate (both by
    the head's ``p``).

    Args:
        service: Service name.
        p: Head's probability of a loss if approved, per opportunity.
        at_risk: Money at risk per opportunity (balance; refund amount).
        star: The buyer's star at the decision (caps applied).
        rule: The legacy rule's decision per opportunity.
        bands: The star bands the policy serves (``min_stars`` and up).
        target_share: The loss rate aimed at, as a share of the rule's (the whole-policy search's
            ``serving.offline.policy_search.TARGET_SHARE``: half for fast refunds).

    Raises:
        ValueError: The rule approves nothing here, so it has no loss rate to match.
    """
    p, at_risk = (np.asarray(a, np.float64) for a in (p, at_risk))
    loss = p * at_risk
    rule = np.asarray(rule, bool)
    rule_rate, rule_volume = _outcome(loss, at_risk, rule)
    if rule_volume == 0:
        raise ValueError(f"{service}: the legacy rule approves nothing on this window")
    ratio = p  # expected loss per unit at risk
    eligible = np.isin(star, bands)
    order = np.flatnonzero(eligible)[np.argsort(ratio[eligible], kind="stable")]
    cum_loss, cum_risk = np.cumsum(loss[order]), np.cumsum(at_risk[order])
    target = rule_rate * target_share
    within = np.flatnonzero(cum_loss <= target * cum_risk * (1 + 1e-12))
    uniform = float(ratio[order[within.max()]]) if within.size else 0.0
    allowances = dict.fromkeys(bands, uniform)
    best = _outcome(loss, at_risk, approved(ratio, star, allowances))
    for _ in range(3):  # a few passes of per-band scaling
        for band in bands:
            for scale in SCALES:
                trial = {**allowances, band: allowances[band] * scale}
                if any(trial[b] < trial[a] for a, b in zip(bands, bands[1:], strict=False)):
                    continue  # the policy file requires allowances that do not fall as stars rise
                rate, volume = _outcome(loss, at_risk, approved(ratio, star, trial))
                if rate <= target and volume > best[1]:
                    allowances, best = trial, (rate, volume)
    return Proposal(service, allowances, rule_rate, best[0], best[1] / rule_volume)


def policy_bands(base_policy: Path, service: str) -> tuple[int, ...]:
    """The star bands a service serves under the reviewed policy (``min_stars`` to 5)."""
    policy = yaml.safe_load(Path(base_policy).read_text())
    return tuple(range(int(policy["services"][service]["min_stars"]), 6))


def candidate_policy(base_policy: Path, proposals: dict[str, Proposal], version: str) -> dict[str, Any]:
    """The reviewed policy file with the proposed ``expected_loss_allowance`` of each service."""
    policy = yaml.safe_load(Path(base_policy).read_text())
    policy["version"] = version
    for service, proposal in proposals.items():
        policy["services"][service]["expected_loss_allowance"] = {
            band: float(f"{value:.6g}") for band, value in proposal.allowances.items()
        }
    return policy
