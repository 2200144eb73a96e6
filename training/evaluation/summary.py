"""A run's numbers as the terminal summary (the numbers: ``training.evaluation.report``; the figures:
``training.evaluation.figures``)."""

from __future__ import annotations

from serving.offline.policy_search import TARGET_SHARE
from training.evaluation.report import PREFIX, Report
from training.evaluation.yardsticks import Estimate


def _estimate(m: dict[str, float], name: str) -> str:
    if name not in m:
        return "n/a"
    return str(
        Estimate(m[name], m.get(f"{name}_ci_low", float("nan")), m.get(f"{name}_ci_high", float("nan")))
    )


def summary_text(rep: Report, target: str) -> str:
    """A readable summary of the run for the terminal."""
    m = rep.metrics
    lines = [
        f"Out-of-time test window ({target}, {int(m['test_buyers']):,} buyers): AUC {m['test_auc']:.4f}  "
        f"KS {m['test_ks']:.4f}  Brier {m['test_brier']:.4f}  calibration error {m['test_calibration_error']:.4f}",
        f"Rating AUC on bad_90d {_estimate(m, 'rating_auc')}; gain over the optbinning scorecard "
        f"{_estimate(m, 'rating_auc_gain_over_scorecard')}",
    ]
    if "oracle_auc" in m:
        lines.append(
            f"Oracle (truth p_bad_90d) AUC {_estimate(m, 'oracle_auc')}; rating / oracle {_estimate(m, 'rating_auc_ratio_to_oracle')}"
        )
    lines.append(
        f"Buyers with a hard fact: {int(m['test_buyers_with_hard_fact']):,}; rated above {2} stars: {int(m['buyers_above_cap']):,}"
    )
    lines.append(f"Score PSI train -> test: {m['psi_score_train_test']:.4f}")
    lines.append("Stars (test window):  star  share   bad rate")
    for star, row in rep.stars.iterrows():
        lines.append(f"                      {star}     {row['share']:6.1%}  {row['bad_rate']:7.2%}")
    for service, result in rep.services.items():
        p = PREFIX[service]
        lines.append(
            f"{service}: {result.opportunities:,} opportunities of {result.buyers:,} buyers; legacy rule approves "
            f"{result.rule_share_opportunities:.1%} of them, {result.rule_share_volume:.1%} of the money at risk, "
            f"expected loss {result.rule_expected_loss:,.0f} on {result.rule_value:,.0f}"
        )
        decider = "head" if "head" in result.at_rule_volume else "rating"
        lines.append(
            f"  at the rule's volume, expected loss / rule's: {decider} {_estimate(m, f'{p}_loss_ratio_at_rule_volume')}, "
            f"rating as the ranking {_estimate(m, f'rating_{p}_loss_ratio_at_rule_volume')}, "
            f"scorecard {_estimate(m, f'scorecard_{p}_loss_ratio_at_rule_volume')}, oracle {_estimate(m, f'oracle_{p}_loss_ratio_at_rule_volume')}"
        )
        lines.append(
            f"  {decider} / oracle at the rule's volume {_estimate(m, f'{p}_loss_ratio_to_oracle_at_rule_volume')}; "
            f"volume at the rule's loss rate / rule's: {decider} {_estimate(m, f'{p}_volume_multiple_at_rule_loss_rate')}, "
            f"oracle {_estimate(m, f'oracle_{p}_volume_multiple_at_rule_loss_rate')}"
        )
        if f"policy_{p}_volume_multiple" in m:
            bands = ", ".join(
                f"{k[-5:]} {v:.4%}" for k, v in sorted(m.items()) if k.startswith(f"policy_{p}_allowance_")
            )
            lines.append(
                f"  proposed allowances (expected loss / order value: {bands}): on the test window they approve "
                f"{m[f'policy_{p}_volume_multiple']:.2f}x the rule's money at {m[f'policy_{p}_loss_rate_ratio']:.2f}x its "
                f"loss per unit (fitted on validation for {TARGET_SHARE[service]:.2f}x at "
                f"{m[f'policy_{p}_valid_volume_multiple']:.2f}x its volume)"
            )
    return "\n".join(lines)
