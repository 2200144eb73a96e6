"""The numbers of one training run: rating metrics, the honest yardsticks and the baselines.

Presentation (figures, the terminal summary) is ``training.evaluation.presentation``; this module only
computes. Metric names are fixed (``docs/evaluation.md`` explains each).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.hard_facts import CAPPED_MAX_STAR, has_hard_fact
from rating.artifact import RatingModel
from rating.reasons import top_k
from training.evaluation.metrics import discrimination, psi, star_table, stars_monotone
from training.evaluation.scorecard import OptBinningScorecard
from training.evaluation.trust import (
    LOW_STARS,
    activity_fifths_ratio,
    opportunity_auc,
    reason_stability,
    star_rates_per_opportunity,
)
from training.evaluation.yardsticks import (
    HIGH_RISK_P,
    Estimate,
    ServiceYardsticks,
    auc_comparison,
    compare_service,
    high_risk_loss_share,
    service_metrics,
)
from training.heads import context_matrix
from training.labels import target_weights
from training.opportunities import FAST_REFUND, PRESALE, at_risk, legacy_decisions
from training.policy.proposal import Proposal, approved

# The fixed metric prefix of each service.
PREFIX = {PRESALE: "presale", FAST_REFUND: "refund"}
HEAD, RATING, SCORECARD, ORACLE = "head", "rating", "scorecard", "oracle"
REASON_ONLY = "reason only"  # refunds ranked by their stated reason's loss rate in the training window
FIXED_METRICS = (
    "presale_loss_ratio_at_rule_volume",
    "presale_loss_ratio_to_oracle_at_rule_volume",
    "presale_volume_multiple_at_rule_loss_rate",
    "refund_loss_ratio_at_rule_volume",
    "refund_loss_ratio_to_oracle_at_rule_volume",
    "refund_loss_ratio_to_reason_only_at_rule_volume",
    "rating_auc_ratio_to_oracle",
    "rating_auc_gain_over_scorecard",
)
"""The yardsticks' fixed names (``docs/evaluation.md``), each logged with ``_ci_low`` and ``_ci_high``."""
CURVE_POINTS = 200


@dataclass(frozen=True)
class Opportunities:
    """One service's test-window opportunities with their buyers' signals, and the truth if any."""

    rows: pd.DataFrame
    p_true: np.ndarray | None
    p_if_approved: np.ndarray | None = None
    """The truth's probability that the opportunity goes bad if approved, where it differs from the
    loss the approval adds (``p_true``): a refund's ``p_loss_if_fast``; for the high-risk share."""
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    """Further rankings per row (``REASON_ONLY`` for refunds), judged beside the head."""


@dataclass
class Report:
    """Everything the run logs and prints."""

    metrics: dict[str, float] = field(default_factory=dict)
    stars: pd.DataFrame | None = None
    services: dict[str, ServiceYardsticks] = field(default_factory=dict)
    curves: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    rule_points: dict[str, tuple[float, float]] = field(default_factory=dict)
    test_scores: dict[str, np.ndarray] = field(default_factory=dict)
    test_y: np.ndarray | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def loss_curve(
    value: np.ndarray, expected: np.ndarray, p: np.ndarray, points: int = CURVE_POINTS
) -> pd.DataFrame:
    """Approve in ascending ``p``: approved share of value against expected loss per approved unit."""
    order = np.argsort(p, kind="stable")
    cum_v, cum_l = np.cumsum(value[order]), np.cumsum(expected[order])
    idx = np.unique(np.linspace(0, len(order) - 1, points).astype(int))
    return pd.DataFrame(
        {
            "approved": idx + 1,
            "volume_share": cum_v[idx] / cum_v[-1],
            "expected_loss": cum_l[idx],
            "loss_rate": cum_l[idx] / np.maximum(cum_v[idx], 1e-12),
        }
    )


HEAD_ROWS = 20_000
"""Opportunities scored by a head at once (its inputs are float64: 20,000 rows take 56 MB)."""


def decision_ranking(model: RatingModel, service: str, rows: pd.DataFrame) -> np.ndarray:
    """What ``model`` decides ``service`` by, per opportunity row: its head's probability of a loss
    if approved, or, for an artifact without that head, the rating's p_bad."""
    if service not in model.heads:
        return model.score(rows[model.signal_names].to_numpy(np.float32)).p_bad
    out = []
    for first in range(0, len(rows), HEAD_ROWS):  # the head's float64 inputs, a block at a time
        block = rows.iloc[first : first + HEAD_ROWS]
        X = block[model.signal_names].to_numpy(np.float32)
        out.append(model.head_probability(service, X, context_matrix(service, block)))
    return np.concatenate(out) if out else np.empty(0)


def reason_only_ranking(history: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The reason-only baseline: each refund request ranked by its stated reason's loss rate (``bad``)
    among the ``history`` requests (the training window); a reason never seen there gets the overall rate."""
    rates = history.groupby("reason")["bad"].mean()
    overall = float(history["bad"].mean()) if len(history) else 0.0
    return rows["reason"].map(rates).fillna(overall).to_numpy(np.float64)


def silence_metrics(test: pd.DataFrame, star: np.ndarray, capped: np.ndarray) -> dict[str, float]:
    """Does the rating reward silence? Dormant buyers with a fraud history against active buyers who pay.

    Dormant: no order in the past 180 days. Fraud history: confirmed fraud on record. Active payer:
    an order in the past 90 days, no hard fact, and no late bill or balance in the past year.
    """
    orders_180 = test["orders_count_180d"].fillna(0).to_numpy()
    dormant_fraud = (orders_180 == 0) & (
        test["violations_confirmed_fraud_count_all"].fillna(0).to_numpy() > 0
    )
    late = (
        test["bills_late_count_365d"].fillna(0).to_numpy()
        + test["balances_late_count_365d"].fillna(0).to_numpy()
    )
    payer = (test["orders_count_90d"].fillna(0).to_numpy() > 0) & ~capped & (late == 0)
    out = {
        "test_dormant_fraud_rows": float(dormant_fraud.sum()),
        "test_active_payer_rows": float(payer.sum()),
    }
    if dormant_fraud.any() and payer.any():
        top = int(star[dormant_fraud].max())
        out["dormant_fraud_max_star"] = float(top)
        out["active_payers_below_dormant_fraud_share"] = float((star[payer] < top).mean())
        out["active_payer_mean_star"] = float(star[payer].mean())
    return out


def top_reason_codes(model: RatingModel, X: np.ndarray, k: int = 4) -> np.ndarray:
    """``rows x k`` reason entries (columns of ``RatingModel.reason_points``, -1 pads) of each row by
    the model's lookup table, without the hard facts that come first."""
    if model.reason_table is None:
        return np.full((len(X), k), -1, dtype=np.int16)
    parts = [
        top_k(model.reason_points(model.reason_table.contributions(X[i : i + 4096])), k)[0]
        for i in range(0, len(X), 4096)
    ]
    return np.concatenate(parts) if parts else np.full((0, k), -1, dtype=np.int16)


def trust_metrics(
    model: RatingModel,
    test: pd.DataFrame,
    scored_star: np.ndarray,
    p_bad: np.ndarray,
    oracle_p: np.ndarray | None,
    traits: pd.DataFrame | None,
    twin: RatingModel | None,
    seed: int,
) -> dict[str, float]:
    """The rating's trust figures (``training.evaluation.trust``): star bad rates per opportunity, the activity
    fifths of honest reliable buyers (rating and truth), and reason stability against ``twin`` (the
    same rating retrained with another seed) over the test rows rated 1-2 stars."""
    buyer = test["buyer_id"].to_numpy()
    out: dict[str, float] = {}
    if "exposure_90d" in test.columns:
        events, exposure = test["bad_events_90d"].to_numpy(), test["exposure_90d"].to_numpy()
        auc = opportunity_auc(events, exposure, buyer, {"rating": p_bad}, seed=seed)["rating"]
        out.update(Estimate.of(auc).metrics("rating_auc_per_opportunity"))
        out.update(
            star_rates_per_opportunity(
                scored_star,
                test["bad_events_90d"].to_numpy(),
                test["exposure_90d"].to_numpy(),
                buyer,
                seed=seed,
            )
        )
    if traits is not None:
        out.update(
            activity_fifths_ratio(p_bad, buyer, traits, "honest_reliable_activity_fifths_ratio", seed=seed)
        )
        if oracle_p is not None:
            name = "honest_reliable_activity_fifths_ratio_truth"
            out.update(activity_fifths_ratio(oracle_p, buyer, traits, name, seed=seed))
    if twin is not None:
        low = scored_star <= LOW_STARS
        X = test[model.signal_names].to_numpy(np.float32)[low]
        out.update(reason_stability(top_reason_codes(model, X), top_reason_codes(twin, X)))
        out["reason_stability_rows"] = float(low.sum())
    return out


def rating_metrics(
    model: RatingModel,
    scorecard: OptBinningScorecard,
    train_sample: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    oracle_p: np.ndarray | None,
    seed: int,
    rep: Report,
    traits: pd.DataFrame | None = None,
    twin: RatingModel | None = None,
) -> np.ndarray:
    """Discrimination, stars, stability, caps, AUC ratios and trust figures of the rating on the test
    snapshots (``traits``: the truth's buyer traits; ``twin``: the rating retrained with another seed).

    Returns:
        The rating's p_bad per test row.
    """
    names = model.signal_names
    X_test = test[names].to_numpy(np.float32)
    y = test[target].to_numpy()
    scored = model.score(X_test)
    p_card = scorecard.predict_proba(X_test)
    y_outcome = test["bad_90d"].to_numpy() if "bad_90d" in test.columns else y  # discrimination needs 0/1
    rep.test_y, rep.test_scores = y_outcome, {RATING: scored.p_bad, SCORECARD: p_card}
    rep.metrics.update({f"test_{k}": v for k, v in discrimination(y_outcome, scored.p_bad).items()})
    rep.metrics.update({f"scorecard_{k}": v for k, v in discrimination(y_outcome, p_card).items()})
    rep.metrics["psi_score_train_test"] = psi(
        model.score(train_sample[names].to_numpy(np.float32)).score.astype(float), scored.score.astype(float)
    )
    rep.stars = star_table(y, scored.star, target_weights(test, target))
    rep.metrics["stars_monotone"] = float(stars_monotone(rep.stars))
    for star, row in rep.stars.iterrows():
        rep.metrics[f"star{star}_bad_rate"] = float(row["bad_rate"]) if row["rows"] else float("nan")
        rep.metrics[f"star{star}_share"] = float(row["share"])

    buyer = test["buyer_id"].to_numpy()
    capped = has_hard_fact(test)
    rep.metrics["test_buyers"] = float(np.unique(buyer).size)
    rep.metrics["test_buyers_with_hard_fact"] = float(np.unique(buyer[capped]).size)
    rep.metrics["buyers_above_cap"] = float(np.unique(buyer[capped & (scored.star > CAPPED_MAX_STAR)]).size)

    rep.metrics.update(silence_metrics(test, scored.star, capped))
    rep.metrics.update(trust_metrics(model, test, scored.star, scored.p_bad, oracle_p, traits, twin, seed))

    bad90 = test["bad_90d"].to_numpy()
    scores = {RATING: scored.p_bad, SCORECARD: p_card}
    if oracle_p is not None:
        scores[ORACLE] = oracle_p
    aucs = auc_comparison(bad90, buyer, scores, seed=seed)
    rep.metrics.update(Estimate.of(aucs[RATING]).metrics("rating_auc"))
    rep.metrics.update(Estimate.of(aucs[RATING] - aucs[SCORECARD]).metrics("rating_auc_gain_over_scorecard"))
    if oracle_p is not None:
        rep.metrics.update(Estimate.of(aucs[ORACLE]).metrics("oracle_auc"))
        rep.metrics.update(Estimate.of(aucs[RATING] / aucs[ORACLE]).metrics("rating_auc_ratio_to_oracle"))
        rep.metrics.update(
            Estimate.of(aucs[SCORECARD] / aucs[ORACLE]).metrics("scorecard_auc_ratio_to_oracle")
        )
        rep.test_scores[ORACLE] = oracle_p
    return scored.p_bad


def service_yardsticks(
    service: str,
    opp: Opportunities,
    model: RatingModel,
    scorecard: OptBinningScorecard,
    seed: int,
    rep: Report,
) -> None:
    """The rule, the rating, the scorecard and the oracle on one service's test opportunities."""
    rows, prefix = opp.rows, PREFIX[service]
    names = model.signal_names
    X = rows[names].to_numpy(np.float32)
    rankings = {}
    if service in model.heads:
        rankings[HEAD] = decision_ranking(model, service, rows)
    rankings.update({RATING: model.score(X).p_bad, SCORECARD: scorecard.predict_proba(X)})
    bad = rows["bad"].to_numpy(np.float64)
    p_true = bad if opp.p_true is None else opp.p_true
    if opp.p_true is not None:
        rankings[ORACLE] = opp.p_true
    rankings.update(opp.baselines)
    value = at_risk(service, rows)
    rule = legacy_decisions(service, rows)
    result = compare_service(
        service,
        value,
        p_true,
        bad,
        rows["buyer_id"].to_numpy(),
        rule,
        rankings,
        oracle=ORACLE if opp.p_true is not None else None,
        seed=seed,
        high_risk=None if opp.p_if_approved is None else opp.p_if_approved > HIGH_RISK_P,
    )
    rep.services[service] = result
    rep.metrics[f"test_{prefix}_opportunities"] = float(result.opportunities)
    rep.metrics[f"test_{prefix}_buyers"] = float(result.buyers)
    rep.metrics[f"{prefix}_rule_share_opportunities"] = result.rule_share_opportunities
    rep.metrics[f"{prefix}_rule_share_volume"] = result.rule_share_volume
    rep.metrics[f"{prefix}_rule_expected_loss_rate"] = (
        result.rule_expected_loss / result.rule_value if result.rule_value else float("nan")
    )
    decider = HEAD if HEAD in rankings else RATING
    rep.metrics.update(service_metrics(prefix, result, decider))
    rep.metrics.update(service_metrics(prefix, result, RATING, scorer_prefix="rating_"))
    rep.metrics.update(service_metrics(prefix, result, SCORECARD, scorer_prefix="scorecard_"))
    if ORACLE in rankings:
        rep.metrics.update(service_metrics(prefix, result, ORACLE, scorer_prefix="oracle_"))
    if REASON_ONLY in rankings:
        rep.metrics.update(service_metrics(prefix, result, REASON_ONLY, scorer_prefix="reason_only_"))
        ours, theirs = result.loss_ratio_replicates[decider], result.loss_ratio_replicates[REASON_ONLY]
        rep.metrics.update(
            Estimate.of(np.divide(ours, theirs, out=np.full_like(ours, np.nan), where=theirs > 0)).metrics(
                f"{prefix}_loss_ratio_to_reason_only_at_rule_volume"
            )
        )
    if opp.p_if_approved is not None:
        rep.metrics[f"{prefix}_high_risk_loss_share_at_rule_volume"] = result.at_rule_volume[
            decider
        ].high_risk_loss_share
        rep.metrics[f"{prefix}_rule_high_risk_loss_share"] = result.rule_high_risk_loss_share
    if opp.p_true is not None and HEAD in rankings:
        # the head must rank the opportunities history never approved, not only those it did
        taken = rows["shipped" if service == PRESALE else "fast"].to_numpy(bool)
        for name, mask in (("historically_declined", ~taken), ("historically_approved", taken)):
            if mask.sum() > 2:
                rho = pd.Series(rankings[HEAD][mask]).corr(pd.Series(opp.p_true[mask]), method="spearman")
                rep.metrics[f"{prefix}_head_spearman_to_truth_{name}"] = float(rho)
    expected = value * p_true
    rep.curves[service] = {name: loss_curve(value, expected, p) for name, p in rankings.items()}
    total = value.sum()
    rep.rule_points[service] = (
        result.rule_value / total if total else float("nan"),
        result.rule_expected_loss / result.rule_value if result.rule_value else float("nan"),
    )
    rep.tables[f"yardsticks_{service}.csv"] = result.table()


def build_report(
    model: RatingModel,
    scorecard: OptBinningScorecard,
    train_sample: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    oracle_p: np.ndarray | None,
    opportunities: dict[str, Opportunities],
    seed: int = 7,
    traits: pd.DataFrame | None = None,
    twin: RatingModel | None = None,
) -> Report:
    """Evaluate ``model`` on the test window against the scorecard, the legacy rules and the oracle.

    Args:
        model: The fitted rating.
        scorecard: The fitted baseline, on the same signals and training rows.
        train_sample: Training rows (signals), the PSI baseline.
        test: Out-of-time test snapshot rows (signals and labels).
        target: Label the model was trained on.
        oracle_p: True ``p_bad_90d`` per test row from the simulator's truth, or None.
        opportunities: Per service, the test window's opportunities (and truth).
        seed: Bootstrap seed.
        traits: The truth's latent buyer traits (``truth/traits.parquet``), or None.
        twin: The rating retrained with another seed (reason stability), or None.
    """
    rep = Report()
    rating_metrics(model, scorecard, train_sample, test, target, oracle_p, seed, rep, traits, twin)
    for service, opp in opportunities.items():
        if len(opp.rows):
            service_yardsticks(service, opp, model, scorecard, seed, rep)
    names = model.signal_names
    gain = model.booster.feature_importance(importance_type="gain")
    rep.tables["stars.csv"] = rep.stars.reset_index()
    rep.tables["signal_importance.csv"] = pd.DataFrame({"signal": names, "gain": gain}).sort_values(
        "gain", ascending=False
    )
    rep.tables["scorecard_signals.csv"] = pd.DataFrame(
        {
            "signal": [names[j] for j in scorecard.selected_],
            "information_value": scorecard.information_value_[scorecard.selected_],
        }
    )
    return rep


def proposal_inputs(model: RatingModel, service: str, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """What an allowance policy reads per opportunity: head probability, money at risk, the buyer's
    star at the decision (caps applied) and the legacy rule's decision."""
    return {
        "p": decision_ranking(model, service, rows),
        "at_risk": at_risk(service, rows),
        "star": model.score(rows[model.signal_names].to_numpy(np.float32)).star,
        "rule": legacy_decisions(service, rows),
    }


def proposal_metrics(model: RatingModel, proposal: Proposal, opp: Opportunities) -> dict[str, float]:
    """The proposed allowances on the test window, judged by the truth (realised outcomes without one):
    approved money / the rule's, and expected loss per approved unit / the rule's."""
    prefix = PREFIX[proposal.service]
    x = proposal_inputs(model, proposal.service, opp.rows)
    loss = x["at_risk"] * (opp.rows["bad"].to_numpy(np.float64) if opp.p_true is None else opp.p_true)
    ok = approved(x["p"], x["star"], proposal.allowances)
    rule = x["rule"]
    rule_volume, volume = x["at_risk"][rule].sum(), x["at_risk"][ok].sum()
    rule_rate = loss[rule].sum() / rule_volume if rule_volume else float("nan")
    rate = loss[ok].sum() / volume if volume else float("nan")
    out = {f"policy_{prefix}_allowance_star{band}": value for band, value in proposal.allowances.items()}
    if opp.p_if_approved is not None:
        out[f"policy_{prefix}_high_risk_loss_share"] = high_risk_loss_share(
            loss, ok, opp.p_if_approved > HIGH_RISK_P
        )
    out.update(
        {
            f"policy_{prefix}_valid_volume_multiple": proposal.volume_multiple,
            f"policy_{prefix}_volume_multiple": volume / rule_volume if rule_volume else float("nan"),
            f"policy_{prefix}_loss_rate_ratio": rate / rule_rate if rule_rate else float("nan"),
            f"policy_{prefix}_approved_share": float(ok.mean()) if ok.size else float("nan"),
        }
    )
    return out
