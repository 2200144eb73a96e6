"""The evaluation report of one training run: metrics, tables and figures, and its text summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rating.artifact import RatingModel
from training import plots
from training.evaluate import (
    ServiceComparison,
    approval_curve,
    compare_at_rule_rate,
    discrimination,
    psi,
    star_table,
    stars_monotone,
)
from training.old_rule import old_rule
from training.scorecard import WoEScorecard

# Which rows and which label each service's comparison is about.
SERVICES = {
    "presale_ship_before_balance": ("has_presale_due", "balance_default"),
    "fast_refund": ("has_refund", "refund_loss"),
}


@dataclass
class Report:
    """Everything the run logs and prints."""

    metrics: dict[str, float] = field(default_factory=dict)
    stars: pd.DataFrame | None = None
    services: list[ServiceComparison] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def build_report(
    model: RatingModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    oracle_p: np.ndarray | None,
    scorecard_sample: int = 200_000,
    seed: int = 7,
) -> Report:
    """Evaluate ``model`` on the test window against the scorecard, the old rule and the oracle.

    Args:
        model: The fitted rating.
        train: Training rows (signals and labels), for the scorecard and the PSI baseline.
        test: Out-of-time test rows.
        target: Label the model was trained on.
        oracle_p: True probability of ``bad_90d`` per test row from the simulator's truth, or None.
    """
    names = model.signal_names
    X_test = test[names].to_numpy(np.float32)
    y_test = test[target].to_numpy()
    scored = model.score(X_test)
    rep = Report()
    rep.metrics.update({f"test_{k}": v for k, v in discrimination(y_test, scored.p_bad).items()})

    train_sample = train.sample(n=min(scorecard_sample, len(train)), random_state=seed)
    X_train = train_sample[names].to_numpy(np.float32)
    scorecard = WoEScorecard().fit(X_train, train_sample[target].to_numpy())
    p_card = scorecard.predict_proba(X_test)
    rep.metrics.update({f"scorecard_{k}": v for k, v in discrimination(y_test, p_card).items()})
    rep.metrics["auc_gain_over_scorecard"] = rep.metrics["test_auc"] - rep.metrics["scorecard_auc"]

    train_scores = model.score(X_train).score
    rep.metrics["psi_score_train_test"] = psi(train_scores.astype(float), scored.score.astype(float))

    rep.stars = star_table(y_test, scored.star)
    rep.metrics["stars_monotone"] = float(stars_monotone(rep.stars))
    for star, row in rep.stars.iterrows():
        rep.metrics[f"star{star}_bad_rate"] = float(row["bad_rate"]) if row["rows"] else float("nan")
        rep.metrics[f"star{star}_share"] = float(row["share"])

    if oracle_p is not None:
        oracle = discrimination(test["bad_90d"].to_numpy(), oracle_p)["auc"]
        model_bad90 = discrimination(test["bad_90d"].to_numpy(), scored.p_bad)["auc"]
        rep.metrics.update(
            {"oracle_auc": oracle, "bad_90d_auc": model_bad90, "auc_ratio_to_oracle": model_bad90 / oracle}
        )

    rule = old_rule(test)
    for service, (population, label) in SERVICES.items():
        rows = test[population].to_numpy() == 1
        if rows.sum() == 0 or test.loc[rows, label].sum() == 0:
            continue
        y = test.loc[rows, label].to_numpy()
        cmp = compare_at_rule_rate(service, y, rule[rows], scored.p_bad[rows], p_card[rows])
        rep.services.append(cmp)
        rep.metrics.update(cmp.as_metrics())
        curves = {
            "rating model": approval_curve(y, scored.p_bad[rows]),
            "scorecard": approval_curve(y, p_card[rows]),
        }
        rule_bad_rate = cmp.rule_bad / max(int(rule[rows].sum()), 1)
        rep.figures[f"approval_{service}.png"] = plots.approval_figure(
            service, curves, (cmp.rule_approval_rate, rule_bad_rate)
        )
        rep.tables[f"approval_{service}.csv"] = pd.concat(curves, names=["scorer"]).reset_index(level=0)

    gain = model.booster.feature_importance(importance_type="gain")
    curves = {"rating model": scored.p_bad, "scorecard": p_card}
    if oracle_p is not None and target == "bad_90d":
        curves["oracle (true risk)"] = oracle_p
    rep.figures.update(
        {
            "roc.png": plots.roc_figure(y_test, curves),
            "calibration.png": plots.calibration_figure(y_test, scored.p_bad),
            "bad_rate_per_star.png": plots.star_figure(rep.stars),
            "top_signals.png": plots.importance_figure(names, gain),
        }
    )
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


def _change(model_bad: int, rule_bad: int) -> str:
    if rule_bad == 0:
        return "the rule had none"
    if model_bad <= rule_bad:
        return f"{1 - model_bad / rule_bad:.0%} fewer"
    return f"{model_bad / rule_bad:.1f}x the rule's"


def summary_text(rep: Report, target: str) -> str:
    """A readable summary of the run for the terminal."""
    m = rep.metrics
    lines = [
        f"Out-of-time test window ({target}): AUC {m['test_auc']:.4f}  KS {m['test_ks']:.4f}  "
        f"Gini {m['test_gini']:.4f}  Brier {m['test_brier']:.4f}  calibration error {m['test_calibration_error']:.4f}",
        f"Scorecard (logistic regression, WoE bins): AUC {m['scorecard_auc']:.4f}  "
        f"(model - scorecard = {m['auc_gain_over_scorecard']:+.4f})",
    ]
    if "oracle_auc" in m:
        lines.append(
            f"Oracle (true simulated risk) AUC on bad_90d {m['oracle_auc']:.4f}; model {m['bad_90d_auc']:.4f} "
            f"= {m['auc_ratio_to_oracle']:.3f} x oracle"
        )
    lines.append(f"Score PSI train -> test: {m['psi_score_train_test']:.4f}")
    lines.append("Stars (test window):  star  share   bad rate")
    for star, row in rep.stars.iterrows():
        lines.append(f"                      {star}     {row['share']:6.1%}  {row['bad_rate']:7.2%}")
    for c in rep.services:
        lines.append(
            f"{c.service}: old rule approves {c.rule_approval_rate:.1%} of {c.population:,} buyers with {c.rule_bad} bad; "
            f"at the same approvals the model has {c.model_bad} ({_change(c.model_bad, c.rule_bad)}), the scorecard {c.scorecard_bad}; "
            f"at the rule's bad rate the model approves {c.model_approval_rate_at_rule_bad_rate:.1%}"
        )
    return "\n".join(lines)
