"""Off-policy estimates of a candidate policy from the decision log and its outcomes.

The log holds, for every decision, what was decided and its propensity (``serving.decide.
explore``); its outcomes say which approvals became losses. A candidate policy's decision on
each logged opportunity is known (it is deterministic and re-decided from the logged inputs),
so its approvals and money approved are exact; its *loss* is observed only where the log
approved too, and is estimated three ways:

- IPS: ``sum_i 1[candidate approves and the log approved] x loss_i / p_i``;
- SNIPS: IPS normalised by the mean of its weights over every logged decision;
- DR (doubly robust): the head's expected loss for every candidate approval, corrected by the
  weighted residual ``(loss_i - head_i) / p_i`` where the log approved.

Intervals are percentile bootstrap over buyers. An opportunity the log never approves with any
probability (propensity 1 decline) carries no information: where the candidate approves such
opportunities, IPS and SNIPS undercount and DR leans on the head (``unsupported`` counts them).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from serving.decide import ALREADY_SETTLED, BuyerRating, HeadRisk, decide
from serving.ledger.positions import Usage
from serving.money import to_minor
from serving.policy import FAST_REFUND, PRESALE, Policy
from serving.schema import parse_decision

REPLICATES = 400
# Outcome kinds that make an approved opportunity a loss of its money at risk.
LOSS_KINDS = {PRESALE: ("balance_defaulted",), FAST_REFUND: ("goods_not_returned", "refund_abuse")}


def estimate(log: pd.DataFrame, candidate: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of a candidate's loss on the logged opportunities.

    Args:
        log: One row per logged decision: ``buyer_id``, ``approved`` (the log's decision),
            ``propensity`` (of the logged decision), ``at_risk`` and ``head_loss`` (the head's
            expected loss, currency units) and ``loss`` (the realised loss of an approval; 0
            for a good one; ignored where the log declined).
        candidate: Whether the candidate approves each logged opportunity.
        seed: Bootstrap seed.

    Returns:
        ``approvals``, ``money`` (exact), ``unsupported`` and, for ``ips``, ``snips`` and ``dr``,
        the estimate with its 95% interval (``*_ci``).

    Raises:
        ValueError: A propensity outside (0, 1].
    """
    p = log["propensity"].to_numpy(np.float64)
    if not ((p > 0) & (p <= 1)).all():
        raise ValueError("propensity: every logged propensity must be in (0, 1]")
    approved = log["approved"].to_numpy(bool)
    pi = np.asarray(candidate, bool)
    at_risk = log["at_risk"].to_numpy(np.float64)
    head = log["head_loss"].to_numpy(np.float64)
    loss = np.where(approved, log["loss"].to_numpy(np.float64), 0.0)
    match = pi == approved
    w = np.where(match, 1.0 / p, 0.0)  # importance weight of each logged decision for the candidate
    ips_terms = np.where(pi & approved, loss / p, 0.0)
    dr_terms = np.where(pi, head + np.where(approved, (loss - head) / p, 0.0), 0.0)
    buyer = log["buyer_id"].to_numpy()
    ids, inverse = np.unique(buyer, return_inverse=True)

    def per_buyer(x: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=x, minlength=len(ids))

    sums = np.stack([per_buyer(ips_terms), per_buyer(w), per_buyer(np.ones_like(w)), per_buyer(dr_terms)])
    weights = np.random.default_rng(seed).poisson(1.0, size=(REPLICATES, len(ids))).astype(np.float64)
    reps = weights @ sums.T  # (replicates, 4)

    def snips(ips: np.ndarray | float, wsum: np.ndarray | float, n: np.ndarray | float):
        return np.divide(ips * n, wsum, out=np.zeros_like(np.asarray(ips, float)), where=np.asarray(wsum) > 0)

    point = {
        "ips": float(ips_terms.sum()),
        "snips": float(snips(ips_terms.sum(), w.sum(), len(w))),
        "dr": float(dr_terms.sum()),
    }
    boot = {"ips": reps[:, 0], "snips": snips(reps[:, 0], reps[:, 1], reps[:, 2]), "dr": reps[:, 3]}
    out: dict[str, Any] = {
        "decisions": int(len(log)),
        "approvals": int(pi.sum()),
        "money": float(at_risk[pi].sum()),
        "unsupported": int((pi & ~approved & (p >= 1.0)).sum()),
    }
    for name, value in point.items():
        out[name] = value
        out[f"{name}_ci"] = [float(x) for x in np.percentile(boot[name], [2.5, 97.5])]
    return out


def redecide(row: Mapping[str, Any], policy: Policy, max_amount: float = 10_000_000.0) -> bool:
    """Whether ``policy`` approves a logged decision, re-decided from its logged inputs and outputs.

    The star, the head's view and the usage (exposure, quota used) come from the logged answer;
    a logged decline by one of the candidate's hard rules (signals are not logged), a settled
    order or refund, or an unrated buyer stays a decline.

    Args:
        row: ``inputs`` (the request body) and ``outputs`` (the answer) of one logged decision.
        policy: The candidate policy.
        max_amount: The service's largest accepted amount.
    """
    outputs = row["outputs"]
    if outputs.get("star") is None:
        return False
    kept = {rule.code for rule in policy.hard_declines} | {ALREADY_SETTLED}
    if any(f["code"] in kept for f in outputs["declines"]):
        return False
    request = parse_decision(row["inputs"], max_amount, policy.currency, policy.decimals)
    limits = outputs.get("limits") or {}
    d = policy.decimals
    usage = Usage(
        exposure=_minor(limits.get("exposure_used", 0), d),
        refund_count=int(limits.get("quota_count_used", 0)),
        refund_amount=_minor(limits.get("quota_amount_used", 0), d),
    )
    head = None
    if outputs.get("p_loss") is not None:
        head = HeadRisk(outputs["p_loss"], _minor(outputs["expected_loss"], d))
    rating = BuyerRating(star=outputs["star"], score=outputs["score"], p_bad=outputs["p_bad"])
    return decide(request, rating, _without_exploration(policy), usage, head).decision == "approve"


def _minor(value: Any, decimals: int) -> int:
    """A logged JSON amount (a float with at most ``decimals`` digits) in minor units, exactly."""
    return to_minor(Decimal(repr(float(value))), decimals)


def _without_exploration(policy: Policy) -> Policy:
    """The candidate's deterministic part: its own exploration is not what is being valued."""
    from dataclasses import replace

    return replace(
        policy,
        presale=replace(policy.presale, exploration=None),
        fast_refund=replace(policy.fast_refund, exploration=None),
    )


def read_log(
    engine: Any,
    service: str,
    decimals: int,
    start: Any = None,
    end: Any = None,
    outcomes_before: Any = None,
) -> pd.DataFrame:
    """One service's logged decisions and their outcomes from a ledger database.

    Args:
        engine: The ledger's SQLAlchemy engine.
        service: ``PRESALE`` or ``FAST_REFUND``.
        decimals: The policy currency's decimals.
        start: First decision time (naive UTC), or None.
        end: End of the window (exclusive), or None.
        outcomes_before: Count only outcomes that occurred before this instant (naive UTC; the
            monitor judges a day as it was then), or None for every outcome stored.

    Returns:
        ``buyer_id``, ``ref_id``, ``approved``, ``propensity``, ``at_risk`` and ``head_loss``
        (currency units), ``loss`` (the money at risk when a loss outcome was posted) and the
        logged ``inputs`` and ``outputs`` (for ``redecide``). Decisions without an answer
        logged (degraded) are left out.
    """
    import json

    from sqlalchemy import select

    from serving.ledger.tables import DECISIONS, OUTCOMES

    d, o = DECISIONS.c, OUTCOMES.c
    query = select(
        d.buyer_id, d.ref_id, d.decision, d.propensity, d.requested_minor, d.inputs, d.outputs, d.created_at
    ).where(d.service == service)
    if start is not None:
        query = query.where(d.created_at >= start)
    if end is not None:
        query = query.where(d.created_at < end)
    with engine.connect() as conn:
        rows = pd.DataFrame(
            conn.execute(query.order_by(d.created_at)).all(), columns=list(query.selected_columns.keys())
        )
        losses = select(o.buyer_id, o.ref_id).where(o.service == service, o.kind.in_(LOSS_KINDS[service]))
        if outcomes_before is not None:
            losses = losses.where(o.occurred_at < outcomes_before)
        lost = {(int(b), int(r)) for b, r in conn.execute(losses).all()}
    if rows.empty:
        return rows
    rows = rows.drop_duplicates(
        ["buyer_id", "ref_id"], keep="first"
    )  # the first decision on each opportunity
    rows["inputs"] = [json.loads(x) if isinstance(x, str | bytes) else x for x in rows["inputs"]]
    rows["outputs"] = [json.loads(x) if isinstance(x, str | bytes) else x for x in rows["outputs"]]
    rows["approved"] = rows["decision"].eq("approve")
    rows["at_risk"] = rows["requested_minor"] / 10**decimals
    rows["head_loss"] = [
        float(out["expected_loss"]) if out.get("expected_loss") is not None else 0.0
        for out in rows["outputs"]
    ]
    rows["loss"] = [
        at if (int(b), int(r)) in lost else 0.0
        for b, r, at in zip(rows["buyer_id"], rows["ref_id"], rows["at_risk"], strict=True)
    ]
    return rows
