"""Decision yardsticks benchmark: the legacy rules, the rating, the scorecard and the oracle side by side.

    python bench/bench_decisions.py                                  # the default marketplace (data/market)
    python bench/bench_decisions.py --data /tmp/market_200k --train-buyers 50000

Builds the honest split (``training.snapshots``), trains the rating, the service heads and the
optbinning scorecard on the training window (on a random sample of ``--train-buyers`` buyers when
given; the heads on those buyers' opportunities), then evaluates
on every buyer's test-window snapshots (the rows ``train.py`` evaluates: one per buyer and label
window) and opportunities: each service's expected loss (truth; for a fast refund the loss paying
fast adds) at the legacy rule's volume and at its loss rate, realised losses beside them, AUCs,
and the caps count, each with a 95% bootstrap interval over buyers; for refunds also the head
against the reason-only ranking and the share of the approved expected loss on requests whose true
loss probability is above ``HIGH_RISK_P``. Prints the sizes, wall time and peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from bench.machine import describe
from bench.rows import bench_parser, bench_rows
from features.registry import signals
from training.dataset import SNAPSHOTS
from training.evaluation.report import FIXED_METRICS, PREFIX, build_report
from training.evaluation.truth import risk_truth
from training.evaluation.yardsticks import HIGH_RISK_P
from training.heads import fit_heads
from training.model import DEFAULT_PARAMS
from training.progress import Progress
from training.run import PSI_SAMPLE, fit_scorers, window_opportunities
from training.snapshots import split_snapshots


def _ci(m: dict[str, float], name: str) -> str:
    if name not in m:
        return "n/a"
    return f"{m[name]:8.3f} [{m.get(name + '_ci_low', float('nan')):.3f}, {m.get(name + '_ci_high', float('nan')):.3f}]"


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args(argv)

    t0 = time.perf_counter()
    print(describe(args.data))
    progress = Progress()
    rows = bench_rows(args.data, args.train_buyers, args.seed, progress)
    split, fitting, evaluation = rows.split, rows.fitting, rows.evaluation
    train, valid, _ = split_snapshots(fitting[SNAPSHOTS], split)
    _, _, test = split_snapshots(evaluation[SNAPSHOTS], split)
    opportunities = window_opportunities(args.data, evaluation, split)
    t_build = time.perf_counter() - t0

    registry = signals()
    params = {**DEFAULT_PARAMS, "seed": args.seed}
    model, scorecard, _, _ = fit_scorers(train, valid, "bad_90d", registry, params, args.seed, progress)
    model.set_heads(fit_heads(fitting, split, [s.name for s in registry], args.seed, progress))
    report = build_report(
        model, scorecard, train.sample(n=min(PSI_SAMPLE, len(train)), random_state=args.seed), test, "bad_90d",
        risk_truth(args.data, test), opportunities, seed=args.seed,
    )  # fmt: skip
    m = report.metrics
    print(
        f"rows: train {len(train):,} ({train['buyer_id'].nunique():,} buyers), valid {len(valid):,}, "
        f"test {len(test):,} ({int(m['test_buyers']):,} buyers); build {t_build:.0f} s"
    )
    for service, result in report.services.items():
        prefix = PREFIX[service]
        print(f"\n{service}: {result.opportunities:,} distinct opportunities of {result.buyers:,} buyers, "
              f"money at risk {result.total_value:,.0f}")  # fmt: skip
        print(f"  legacy rule approves {result.rule_approved:,} ({result.rule_share_opportunities:.1%} of opportunities, "
              f"{result.rule_share_volume:.1%} of volume): expected loss {result.rule_expected_loss:,.0f}, "
              f"realised {result.rule_realised_loss:,.0f}")  # fmt: skip
        print(f"  {'at the rule volume':<12} {'approved':>9} {'value':>13} {'exp. loss':>10} {'realised':>10}   "
              f"{'loss / rule [95% CI]':<28} {'loss / oracle [95% CI]':<28} volume at rule loss rate / rule [95% CI]")  # fmt: skip
        for name, r in result.at_rule_volume.items():
            to_oracle = result.loss_ratio_to_oracle.get(name)
            mult = result.volume_multiple_at_rule_loss_rate[name]
            print(f"  {name:<18} {r.approved:>9,} {r.approved_value:>13,.0f} {r.expected_loss:>10,.0f} {r.realised_loss:>10,.0f}   "
                  f"{str(r.loss_ratio):<28} {str(to_oracle) if to_oracle else '-':<28} {mult}")  # fmt: skip
        print(
            f"  fixed metrics: {prefix}_loss_ratio_at_rule_volume {_ci(m, f'{prefix}_loss_ratio_at_rule_volume')}"
        )
        for name in (
            f"{prefix}_loss_ratio_to_reason_only_at_rule_volume",
            f"reason_only_{prefix}_loss_ratio_at_rule_volume",
        ):
            if name in m:
                print(f"  {name} {_ci(m, name)}")
        for name in (f"{prefix}_high_risk_loss_share_at_rule_volume", f"{prefix}_rule_high_risk_loss_share"):
            if name in m:
                print(
                    f"  {name} (true p_loss_if_fast > {HIGH_RISK_P}: share of approved expected loss) {m[name]:.3f}"
                )
    print("\nrating (bad_90d, test snapshots):")
    for name in (
        "rating_auc",
        "oracle_auc",
        "rating_auc_ratio_to_oracle",
        "scorecard_auc_ratio_to_oracle",
        "rating_auc_gain_over_scorecard",
    ):
        print(f"  {name:<36} {_ci(m, name)}")
    print(
        f"  buyers_above_cap {int(m['buyers_above_cap']):,} of {int(m['test_buyers_with_hard_fact']):,} test buyers with a hard fact"
    )
    print("\nfixed metric names (value [95% CI]):")
    for name in FIXED_METRICS:
        print(f"  {name:<46} {_ci(m, name)}")
    for name in ("buyers_above_cap", "test_presale_opportunities", "test_refund_opportunities", "test_buyers",
                 "presale_rule_share_opportunities", "presale_rule_share_volume", "refund_rule_share_opportunities",
                 "refund_rule_share_volume"):  # fmt: skip
        print(f"  {name:<46} {m[name]:8.4g}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {time.perf_counter() - t0:.0f} s, peak RSS {peak:,.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(m, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
