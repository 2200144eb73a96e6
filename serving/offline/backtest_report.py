"""What a backtest decided, judged: money approved and loss per unit, per service and star band.

The loss of an approval is what approving it adds: a presale shipped early loses its balance
if it is never paid (the truth's ``p_default_if_shipped``); a fast refund loses what paying
before the goods come back adds to normal handling (``p_loss_if_fast - p_loss_if_normal``
where the truth gives both arms, else ``p_loss_if_fast``). *Expected* loss uses the
simulator's truth (simulated exports only); *realised* loss is the outcome the export
recorded (under history's own handling). Intervals are buyer-level bootstrap percentiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.legacy import LEGACY_SIGNALS, legacy_fast_refund, legacy_presale
from features.outcomes import RETURN_KIND, presale_outcomes, refund_outcomes
from features.pit import published_as_of
from serving.policy import FAST_REFUND, PRESALE

BANDS = ("1-2", "3", "4", "5", "unrated")
REPLICATES = 200


def truth_of(data: Path, service: str, refs: pd.Series) -> np.ndarray | None:
    """The truth's probability that approving each opportunity loses its money at risk (None: no truth)."""
    name, key = (
        ("presale_opportunities.parquet", "order_id")
        if service == PRESALE
        else ("refund_opportunities.parquet", "refund_id")
    )
    path = Path(data) / "truth" / name
    if not path.exists():
        return None
    truth = pd.read_parquet(path).set_index(key)
    if service == PRESALE:
        p = truth["p_default_if_shipped"]
    elif "p_loss_if_normal" in truth:
        p = (truth["p_loss_if_fast"] - truth["p_loss_if_normal"]).clip(lower=0.0)
    else:
        p = truth["p_loss_if_fast"]
    out = p.reindex(refs.to_numpy()).to_numpy(np.float64)
    if np.isnan(out).any():
        raise ValueError(
            f"{path}: no truth for {int(np.isnan(out).sum())} of {len(out)} {service} opportunities"
        )
    return out


def realised_bad(tables: dict[str, pd.DataFrame], service: str, refs: pd.Series) -> np.ndarray:
    """Whether each opportunity ended badly as the export recorded it (``features.outcomes``)."""
    if service == PRESALE:
        bad = presale_outcomes(tables["presales"]).set_index("order_id")["bad"]
    else:
        bad = refund_outcomes(tables["refunds"]).set_index("refund_id")["bad"]
    return bad.reindex(refs.to_numpy()).fillna(False).to_numpy(bool)


def legacy(decisions: pd.DataFrame, signals: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """The legacy rule's decision for each replayed opportunity, on the day's published signals."""
    day = published_as_of(decisions["t"])
    keyed = signals.set_index(["buyer_id", "as_of"])[list(LEGACY_SIGNALS)]
    at = keyed.reindex(pd.MultiIndex.from_arrays([decisions["buyer_id"], day])).to_numpy(np.float64)
    vip, credit = np.nan_to_num(at[:, 0]), at[:, 1]
    out = np.zeros(len(decisions), bool)
    presale = (decisions["service"] == PRESALE).to_numpy()
    out[presale] = legacy_presale(vip[presale], credit[presale])
    refund = ~presale
    if refund.any():
        ref = tables["refunds"].set_index("refund_id").reindex(decisions.loc[refund, "ref_id"].to_numpy())
        out[refund] = legacy_fast_refund(
            vip[refund], ref["kind"].eq(RETURN_KIND), decisions.loc[refund, "at_risk"], ref["evidence_photos"]
        )
    return out


def band(star: pd.Series) -> pd.Series:
    """Star bands of the report: 1-2 together (hard facts cap there), then 3, 4, 5."""
    s = star.astype("Float64")
    out = pd.Series("unrated", index=star.index)
    out[s <= 2] = "1-2"
    for k in (3, 4, 5):
        out[s == k] = str(k)
    return out


def _bootstrap(buyer: np.ndarray, money: np.ndarray, loss: np.ndarray, seed: int) -> np.ndarray:
    """(REPLICATES, 2) of (money, loss) under buyer-level Poisson(1) weights."""
    ids, inverse = np.unique(buyer, return_inverse=True)
    per_money = np.bincount(inverse, weights=money, minlength=len(ids))
    per_loss = np.bincount(inverse, weights=loss, minlength=len(ids))
    weights = np.random.default_rng(seed).poisson(1.0, size=(REPLICATES, len(ids))).astype(np.float64)
    return np.stack([weights @ per_money, weights @ per_loss], axis=1)


def summarise(frame: pd.DataFrame, approved: np.ndarray, seed: int = 0) -> dict:
    """Requests, approvals, money approved and loss (expected, realised) with 95% intervals.

    Args:
        frame: Decisions of one service with ``buyer_id``, ``at_risk``, ``p_true`` (NaN
            without truth) and ``bad``.
        approved: Which of them the policy (or rule) approves.
        seed: Bootstrap seed.
    """
    a = np.asarray(approved, bool)
    money = np.where(a, frame["at_risk"].to_numpy(np.float64), 0.0)
    expected = money * frame["p_true"].to_numpy(np.float64)
    realised = money * frame["bad"].to_numpy(np.float64)
    out = {
        "requests": len(frame),
        "opportunities": int(frame["ref_id"].nunique()),
        "approvals": int(a.sum()),
        "money": float(money.sum()),
        "realised_loss": float(realised.sum()),
    }
    has_truth = not np.isnan(expected).any()
    if has_truth and len(frame):
        reps = _bootstrap(frame["buyer_id"].to_numpy(), money, expected, seed)
        per_unit = np.divide(reps[:, 1], reps[:, 0], out=np.zeros(REPLICATES), where=reps[:, 0] > 0)
        out |= {
            "expected_loss": float(expected.sum()),
            "loss_per_unit": float(expected.sum() / money.sum()) if money.sum() > 0 else 0.0,
            "money_ci": [float(x) for x in np.percentile(reps[:, 0], [2.5, 97.5])],
            "loss_per_unit_ci": [float(x) for x in np.percentile(per_unit, [2.5, 97.5])],
        }
    return out


def report(decisions: pd.DataFrame, legacy_approved: np.ndarray, seed: int = 0) -> dict:
    """Per service: the policy's figures per star band and overall, the legacy rule's overall, their ratios."""
    out = {}
    for service in (PRESALE, FAST_REFUND):
        mask = (decisions["service"] == service).to_numpy()
        frame = decisions[mask]
        approved = (frame["decision"] == "approve").to_numpy()
        bands = band(frame["star"])
        service_out = {
            "policy": summarise(frame, approved, seed),
            "legacy": summarise(frame, legacy_approved[mask], seed),
            "bands": {
                b: summarise(frame[bands == b], approved[(bands == b).to_numpy()], seed) for b in BANDS
            },
        }
        mine, rule = service_out["policy"], service_out["legacy"]
        if rule["money"] > 0 and "loss_per_unit" in mine and rule.get("loss_per_unit"):
            service_out["money_vs_legacy"] = mine["money"] / rule["money"]
            service_out["loss_per_unit_vs_legacy"] = mine["loss_per_unit"] / rule["loss_per_unit"]
        out[service] = service_out
    return out


def _fmt_ci(x: dict, key: str, scale: float = 1.0, digits: int = 0) -> str:
    if key not in x:
        return "-"
    lo, hi = (v * scale for v in x[f"{key}_ci"]) if f"{key}_ci" in x else (None, None)
    value = x[key] * scale
    return f"{value:,.{digits}f}" + (f" [{lo:,.{digits}f}, {hi:,.{digits}f}]" if lo is not None else "")


def render(result: dict, title: str) -> str:
    """The report as text a risk analyst reads."""
    lines = [title]
    for service, s in result.items():
        lines.append(f"\n{service}")
        lines.append(
            f"  {'':10} {'requests':>9} {'approved':>9} {'money approved':>28} {'loss per unit (%)':>24} {'realised':>10}"
        )
        rows = [("policy", s["policy"]), ("legacy", s["legacy"])] + [
            (f"  {b} stars" if b != "unrated" else "  unrated", v)
            for b, v in s["bands"].items()
            if v["requests"]
        ]
        for name, x in rows:
            lines.append(
                f"  {name:10} {x['requests']:>9,} {x['approvals']:>9,} {_fmt_ci(x, 'money'):>28} "
                f"{_fmt_ci(x, 'loss_per_unit', 100, 2):>24} {x['realised_loss']:>10,.0f}"
            )
        if "money_vs_legacy" in s:
            lines.append(
                f"  vs legacy: money {s['money_vs_legacy']:.2f}x, loss per unit {s['loss_per_unit_vs_legacy']:.2f}x"
            )
    return "\n".join(lines)
