"""The honest yardsticks: per-opportunity expected loss against the legacy rules, with intervals.

For one service on one window, every distinct opportunity is a row with the money at risk
``value`` (a presale's balance, a refund's amount), the truth's probability that it becomes a
loss the approval adds (``p_true``: ``p_default_if_shipped``, or ``p_loss_if_fast -
p_loss_if_normal`` for a refund paid fast; on real data, where there is no truth, the realised
outcome stands in) and the realised outcome (a refund's: the loss if paid fast). With
``V`` the rule's approved value and ``L`` the truth's expected loss on it:

* a ranking *at the rule's volume* approves in ascending order of its predicted probability
  while its approved value stays within ``V``;
* *at the rule's loss rate* it approves the longest such prefix whose expected loss per
  approved unit stays at or below ``L / V``.

Intervals are 95% percentile intervals of a bootstrap that resamples buyers (Poisson weights
per buyer, so all of a buyer's rows move together); rankings are fixed, the rows' weights move.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BOOTSTRAP_REPLICATES = 200
INTERVAL = (2.5, 97.5)
HIGH_RISK_P = 0.3
"""An approval is high-risk when the truth's probability that it goes bad if approved (a refund's
``p_loss_if_fast``) is above this; ``high_risk_loss_share`` is their share of the approved expected loss."""


REPLICATE_BLOCK = 25
"""Bootstrap replicates expanded to rows at a time: bounds the working memory (a few arrays of
``block x opportunities``) whatever the number of replicates."""


def buyer_weight_blocks(
    buyer: np.ndarray, replicates: int, seed: int, block: int = REPLICATE_BLOCK
) -> Iterator[np.ndarray]:
    """``(replicates + 1) x rows`` weights, ``block`` rows at a time: row 0 all ones, then Poisson(1)
    weights drawn per buyer (the same draws whatever the block)."""
    _, index = np.unique(buyer, return_inverse=True)
    draws = np.random.default_rng(seed).poisson(1.0, size=(replicates, index.max() + 1 if index.size else 0))
    for first in range(0, replicates + 1, block):
        rows = [
            np.ones(buyer.size) if r == 0 else draws[r - 1][index].astype(np.float64)
            for r in range(first, min(first + block, replicates + 1))
        ]
        yield np.vstack(rows)


def _prefix_at_volume(cum_value: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Per replicate, the number of ranked rows approved while the approved value stays <= ``volume``."""
    return np.array(
        [np.searchsorted(c, v * (1 + 1e-12), side="right") for c, v in zip(cum_value, volume, strict=True)]
    )


def _longest_prefix_within(cum_loss: np.ndarray, cum_value: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Per replicate, the longest prefix whose loss per approved unit stays <= ``rate``."""
    ok = cum_loss <= rate[:, None] * cum_value * (1 + 1e-12)
    ok &= cum_value > 0
    last = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    return np.where(ok.any(axis=1), last + 1, 0)


def _take(cum: np.ndarray, k: np.ndarray) -> np.ndarray:
    padded = np.hstack([np.zeros((cum.shape[0], 1)), cum])
    return padded[np.arange(cum.shape[0]), k]


@dataclass(frozen=True)
class Estimate:
    """A figure on the full sample with its bootstrap interval."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, replicates: np.ndarray) -> Estimate:
        """Row 0 is the full sample; the rest are bootstrap replicates (NaN ignored)."""
        rest = replicates[1:][np.isfinite(replicates[1:])]
        if rest.size == 0:
            return cls(float(replicates[0]), float("nan"), float("nan"))
        low, high = np.percentile(rest, INTERVAL)
        return cls(float(replicates[0]), float(low), float(high))

    def metrics(self, name: str) -> dict[str, float]:
        """``name``, ``name_ci_low``, ``name_ci_high``."""
        return {name: self.value, f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class PolicyResult:
    """What one decision policy approves on the window (full sample, with intervals where useful)."""

    name: str
    approved: int
    approved_value: float
    expected_loss: float
    realised_loss: float
    loss_ratio: Estimate  # expected loss / the rule's expected loss
    realised_loss_ratio: float
    high_risk_loss_share: float = float("nan")  # of the approved expected loss, on high-risk approvals


@dataclass(frozen=True)
class ServiceYardsticks:
    """One service's comparison on one window."""

    service: str
    opportunities: int
    buyers: int
    total_value: float
    rule_approved: int
    rule_value: float
    rule_expected_loss: float
    rule_realised_loss: float
    at_rule_volume: dict[str, PolicyResult]
    volume_multiple_at_rule_loss_rate: dict[str, Estimate]
    loss_ratio_to_oracle: dict[str, Estimate]
    loss_ratio_replicates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    rule_high_risk_loss_share: float = float("nan")

    @property
    def rule_share_opportunities(self) -> float:
        return self.rule_approved / max(self.opportunities, 1)

    @property
    def rule_share_volume(self) -> float:
        return self.rule_value / self.total_value if self.total_value else float("nan")

    def table(self) -> pd.DataFrame:
        """One row per policy: approvals, value, expected and realised loss at the rule's volume."""
        rows = [
            {
                "policy": "legacy rule",
                "approved": self.rule_approved,
                "approved_value": self.rule_value,
                "expected_loss": self.rule_expected_loss,
                "realised_loss": self.rule_realised_loss,
                "loss_ratio": 1.0,
                "loss_ratio_ci_low": 1.0,
                "loss_ratio_ci_high": 1.0,
            }
        ]
        for r in self.at_rule_volume.values():
            rows.append(
                {
                    "policy": r.name,
                    "approved": r.approved,
                    "approved_value": r.approved_value,
                    "expected_loss": r.expected_loss,
                    "realised_loss": r.realised_loss,
                    "loss_ratio": r.loss_ratio.value,
                    "loss_ratio_ci_low": r.loss_ratio.low,
                    "loss_ratio_ci_high": r.loss_ratio.high,
                    "volume_multiple_at_rule_loss_rate": self.volume_multiple_at_rule_loss_rate[r.name].value,
                }
            )
        return pd.DataFrame(rows)


def compare_service(
    service: str,
    value: np.ndarray,
    p_true: np.ndarray,
    bad: np.ndarray,
    buyer: np.ndarray,
    rule: np.ndarray,
    rankings: Mapping[str, np.ndarray],
    oracle: str | None = "oracle",
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 7,
    high_risk: np.ndarray | None = None,
) -> ServiceYardsticks:
    """Compare the legacy rule with each ranking by the truth's expected loss, on the same rows.

    Args:
        service: Service name (for labels).
        value: Money at risk per opportunity.
        p_true: Probability of a loss if approved (truth; realised 0/1 where there is none).
        bad: Realised outcome (0/1) per opportunity.
        buyer: Buyer id per opportunity (the bootstrap's cluster).
        rule: The legacy rule's decision per opportunity.
        rankings: Name -> predicted probability per opportunity (lower is approved first).
        oracle: The ranking in ``rankings`` that is the truth itself (for the ratios to it), or None.
        replicates: Bootstrap replicates.
        seed: Bootstrap seed.
        high_risk: Per opportunity, whether it is high-risk (``HIGH_RISK_P``); when given, each
            policy's ``high_risk_loss_share`` on the full sample.
    """
    value = np.asarray(value, np.float64)
    expected = value * np.asarray(p_true, np.float64)
    realised = value * np.asarray(bad, np.float64)
    rule = np.asarray(rule, bool)
    orders = {name: np.argsort(np.asarray(p, np.float64), kind="stable") for name, p in rankings.items()}
    rule_value, rule_loss = [], []
    k_volume: dict[str, list] = {name: [] for name in rankings}
    loss_volume: dict[str, list] = {name: [] for name in rankings}
    volume_rate: dict[str, list] = {name: [] for name in rankings}
    for w in buyer_weight_blocks(np.asarray(buyer), replicates, seed):
        rv, rl = (w * (value * rule)).sum(axis=1), (w * (expected * rule)).sum(axis=1)
        rate = np.divide(rl, rv, out=np.full_like(rl, np.nan), where=rv > 0)
        rule_value.append(rv)
        rule_loss.append(rl)
        for name, order in orders.items():
            cum_value = np.cumsum(w[:, order] * value[order], axis=1)
            cum_loss = np.cumsum(w[:, order] * expected[order], axis=1)
            k = _prefix_at_volume(cum_value, rv)
            k_volume[name].append(k)
            loss_volume[name].append(_take(cum_loss, k))
            volume_rate[name].append(_take(cum_value, _longest_prefix_within(cum_loss, cum_value, rate)))
    rule_value, rule_loss = np.concatenate(rule_value), np.concatenate(rule_loss)

    at_volume: dict[str, PolicyResult] = {}
    multiple: dict[str, Estimate] = {}
    model_loss: dict[str, np.ndarray] = {}
    ratios: dict[str, np.ndarray] = {}
    for name, order in orders.items():
        loss = np.concatenate(loss_volume[name])
        model_loss[name] = loss
        approved = order[: int(k_volume[name][0][0])]
        ratios[name] = np.divide(loss, rule_loss, out=np.full_like(loss, np.nan), where=rule_loss > 0)
        at_volume[name] = PolicyResult(
            name=name,
            approved=approved.size,
            approved_value=float(value[approved].sum()),
            expected_loss=float(expected[approved].sum()),
            realised_loss=float(realised[approved].sum()),
            loss_ratio=Estimate.of(ratios[name]),
            realised_loss_ratio=float(realised[approved].sum() / realised[rule].sum())
            if realised[rule].sum()
            else float("nan"),
            high_risk_loss_share=high_risk_loss_share(expected, approved, high_risk),
        )
        vol = np.concatenate(volume_rate[name])
        multiple[name] = Estimate.of(
            np.divide(vol, rule_value, out=np.full_like(vol, np.nan), where=rule_value > 0)
        )
    to_oracle: dict[str, Estimate] = {}
    if oracle is not None and oracle in model_loss:
        base = model_loss[oracle]
        for name, loss in model_loss.items():
            if name != oracle:
                to_oracle[name] = Estimate.of(
                    np.divide(loss, base, out=np.full_like(loss, np.nan), where=base > 0)
                )
    return ServiceYardsticks(
        service=service,
        opportunities=int(value.size),
        buyers=int(np.unique(buyer).size),
        total_value=float(value.sum()),
        rule_approved=int(rule.sum()),
        rule_value=float(value[rule].sum()),
        rule_expected_loss=float(expected[rule].sum()),
        rule_realised_loss=float(realised[rule].sum()),
        at_rule_volume=at_volume,
        volume_multiple_at_rule_loss_rate=multiple,
        loss_ratio_to_oracle=to_oracle,
        loss_ratio_replicates=ratios,
        rule_high_risk_loss_share=high_risk_loss_share(expected, np.flatnonzero(rule), high_risk),
    )


def high_risk_loss_share(expected: np.ndarray, approved: np.ndarray, high_risk: np.ndarray | None) -> float:
    """The share of the approved rows' expected loss carried by the high-risk ones (NaN without
    ``high_risk`` or without expected loss).

    Args:
        expected: Expected loss per row.
        approved: Indices (or a boolean mask) of the approved rows.
        high_risk: Per row, whether it is high-risk, or None.
    """
    if high_risk is None:
        return float("nan")
    loss = np.asarray(expected, np.float64)[approved]
    total = loss.sum()
    return float(loss[np.asarray(high_risk, bool)[approved]].sum() / total) if total > 0 else float("nan")


def _weighted_auc(group: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    size = group.max() + 1
    pos = np.bincount(group[y], weights=w[y], minlength=size)
    neg = np.bincount(group[~y], weights=w[~y], minlength=size)
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float((pos * (below + 0.5 * neg)).sum() / total) if total > 0 else float("nan")


def auc_comparison(
    y: np.ndarray,
    buyer: np.ndarray,
    scores: Mapping[str, np.ndarray],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 7,
) -> dict[str, np.ndarray]:
    """Bootstrap AUC replicates (index 0 the full sample) of each score, on the same resampled buyers.

    Ties count one half. Weights are drawn per buyer and expanded a block of replicates at a time
    (``buyer_weight_blocks``), so memory stays bounded whatever the number of replicates.
    """
    y = np.asarray(y, bool)
    groups = {
        name: np.unique(np.asarray(s, np.float64), return_inverse=True)[1] for name, s in scores.items()
    }
    out: dict[str, list[float]] = {name: [] for name in scores}
    for block in buyer_weight_blocks(np.asarray(buyer), replicates, seed):
        for w in block:
            for name, group in groups.items():
                out[name].append(_weighted_auc(group, y, w))
    return {name: np.array(values) for name, values in out.items()}


def service_metrics(
    prefix: str, result: ServiceYardsticks, model: str, scorer_prefix: str = ""
) -> dict[str, float]:
    """The fixed metric names of one service for the ranking ``model``.

    ``prefix`` is ``presale`` or ``refund``; ``scorer_prefix`` (e.g. ``scorecard_``) names other rankings.
    """
    out: dict[str, float] = {}
    out.update(
        result.at_rule_volume[model].loss_ratio.metrics(f"{scorer_prefix}{prefix}_loss_ratio_at_rule_volume")
    )
    if model in result.loss_ratio_to_oracle:
        out.update(
            result.loss_ratio_to_oracle[model].metrics(
                f"{scorer_prefix}{prefix}_loss_ratio_to_oracle_at_rule_volume"
            )
        )
    out.update(
        result.volume_multiple_at_rule_loss_rate[model].metrics(
            f"{scorer_prefix}{prefix}_volume_multiple_at_rule_loss_rate"
        )
    )
    out[f"{scorer_prefix}{prefix}_realised_loss_ratio_at_rule_volume"] = result.at_rule_volume[
        model
    ].realised_loss_ratio
    return out
