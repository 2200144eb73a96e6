"""How close can a model of the product's inputs get to the oracle? The decision goals against a ceiling.

    python bench/bench_ceiling.py                                    # the default marketplace (data/market)
    python bench/bench_ceiling.py --data /tmp/market_200k --train-buyers 50000

The oracle ranks by the simulator's truth, which knows each buyer's latent traits and stress
state; the product sees only the point-in-time signals and the opportunity's context. This bench
fits, on the rows ``train.py`` trains on (same windows, same inputs, the treatment set to the
approval: shipped early, paid fast), LightGBM models whose *labels are the truth's own probabilities*
of the loss an approval adds (cross-entropy on p in [0, 1]; a refund's ``p_loss_if_fast -
p_loss_if_normal``): no label noise, no selection by history, the counterfactual "if approved" on
every row. Two capacities: the heads' parameters, and a roomier one (more leaves,
fewer rows per leaf, less regularisation). For the services a third model learns from 0/1
outcomes drawn from those probabilities: a history that had approved every opportunity. What
they reach on the test window estimates what a model learnt from these inputs at this training
size can reach at best; what separates them from the oracle is information the inputs do not
carry. The presale head is also refitted with other parameters (``HEAD_VARIANTS``) and scored
without its uplift: what tuning and the uplift are worth beside the ceiling. Printed beside the
product's heads and rating (and, for the rating, the optbinning scorecard) on the same test
rows with the same yardsticks and 95% bootstrap intervals over buyers.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.ceiling import CEILINGS, approval_design
from bench.machine import describe
from bench.rows import bench_parser, bench_rows
from features.registry import signals
from training.dataset import SNAPSHOTS
from training.evaluation.report import PREFIX
from training.evaluation.scorecard import OptBinningScorecard
from training.evaluation.truth import opportunity_truth, risk_truth
from training.evaluation.yardsticks import Estimate, auc_comparison, compare_service
from training.heads import (
    add_uplift,
    context_matrix,
    fit_base,
    fit_heads,
    fit_model,
)
from training.model import DEFAULT_PARAMS, Dataset, fit_booster
from training.opportunities import SERVICES, at_risk, legacy_decisions
from training.progress import Progress
from training.snapshots import split_snapshots

HEAD, ORACLE, SCORECARD = "product head", "oracle (truth)", "optbinning scorecard"
HEAD_VARIANTS = {
    "learning rate 0.03": {"learning_rate": 0.03},
    "31 leaves, 50 rows a leaf": {"num_leaves": 31, "min_data_in_leaf": 50},
    "400 rows a leaf": {"min_data_in_leaf": 400},
    "1,000 rows a leaf, l2 30": {"min_data_in_leaf": 1000, "lambda_l2": 30.0},
    "feature fraction 0.2": {"feature_fraction": 0.2},
}
"""Changes to the presale head's base parameters, refitted with the same uplift procedure: does tuning
close the gap to the ceiling?"""
DRAWN = "outcomes, all approved"
"""A service model with the heads' parameters on 0/1 outcomes drawn from the truth's probability if
approved, for every training opportunity: what a history that had approved every opportunity
(full exploration) would teach, label noise included."""


def service_ceiling(
    data: Path, service: str, windows: dict[str, pd.DataFrame], head, names: list[str], seed: int
) -> dict[str, float]:
    """Fit the ceilings of one service and print the yardsticks of the head, the ceilings and the oracle.

    Returns:
        Per ranking, its loss ratio to the oracle at the rule's volume (``<name> / oracle``) and
        its Spearman correlation with the truth (``<name> spearman``), on the test window.
    """
    truth = {w: opportunity_truth(data, service, rows) for w, rows in windows.items()}
    test = windows["test"]
    signals_test, context_test = test[names].to_numpy(np.float64), context_matrix(service, test)
    rankings = {HEAD: head.probability(signals_test, context_test)}
    if head.proxy is not None:  # the presale head's own design with other parameters, and without its uplift
        for label, change in HEAD_VARIANTS.items():
            base = fit_base(service, windows["train"], windows["valid"], names, seed, overrides=change)
            rankings[f"head, {label}"] = add_uplift(base, head.proxy, windows["valid"]).probability(
                signals_test, context_test
            )
        no_uplift = dataclasses.replace(head, proxy=None, uplift=(0.0, 0.0))
        rankings["head without its uplift"] = no_uplift.probability(signals_test, context_test)
    rng = np.random.default_rng(seed)
    drawn = {w: (rng.random(p.size) < p).astype(np.float64) for w, p in truth.items() if w != "test"}
    fits = {**{label: (change, truth) for label, change in CEILINGS.items()}, DRAWN: ({}, drawn)}
    X = {w: approval_design(service, rows, names) for w, rows in windows.items()}  # once for every fit
    for label, (change, labels) in fits.items():
        t = time.perf_counter()
        booster = fit_model(
            X["train"], labels["train"], X["valid"], labels["valid"], names + list(head.context_names), seed,
            lambda _m: None, service, {**change, "objective": "cross_entropy"},
        )  # fmt: skip
        rankings[label] = booster.predict(X["test"], num_threads=2)
        print(f"  {label}: {booster.best_iteration} trees in {time.perf_counter() - t:.1f} s")
    rankings[ORACLE] = truth["test"]
    result = compare_service(
        service, at_risk(service, test), truth["test"], test["bad"].to_numpy(np.float64),
        test["buyer_id"].to_numpy(), legacy_decisions(service, test), rankings, oracle=ORACLE, seed=seed,
    )  # fmt: skip
    prefix = PREFIX[service]
    print(
        f"{service}: train {len(windows['train']):,} opportunities, test {result.opportunities:,} "
        f"of {result.buyers:,} buyers; the rule approves {result.rule_share_opportunities:.1%}"
    )
    print(f"  {'ranking':<34} {prefix + '_loss_ratio_at_rule_volume':<36} {'..._to_oracle_at_rule_volume':<30} "
          "volume multiple at the rule's loss rate")  # fmt: skip
    for name, r in result.at_rule_volume.items():
        to_oracle = result.loss_ratio_to_oracle.get(name)
        print(f"  {name:<34} {r.loss_ratio!s:<36} {str(to_oracle) if to_oracle else '-':<30} "
              f"{result.volume_multiple_at_rule_loss_rate[name]}")  # fmt: skip
    figures = {f"{name} / oracle": e.value for name, e in result.loss_ratio_to_oracle.items()}
    for name in rankings:
        if name != ORACLE:
            constant = np.unique(rankings[name]).size < 2  # no split found (a tiny export): no ranking
            rho = (
                np.nan
                if constant
                else pd.Series(rankings[name]).corr(pd.Series(truth["test"]), method="spearman")
            )
            print(
                f"  Spearman to the truth, {name}: {'undefined (a constant ranking)' if constant else f'{rho:.3f}'}"
            )
            figures[f"{name} spearman"] = float(rho)
    return figures


def rating_ceiling(
    data: Path, windows: dict[str, pd.DataFrame], names: list[str], seed: int
) -> dict[str, float]:
    """The rating's learner on ``bad_90d`` against the same learner fitted to the truth's ``p_bad_90d``.

    Returns:
        Each score's test AUC on ``bad_90d`` (the full sample), by name.
    """
    p = {w: risk_truth(data, rows) for w, rows in windows.items()}
    X = {w: rows[names].to_numpy(np.float32) for w, rows in windows.items()}
    none = [0] * len(names)
    fits = {
        "rating's learner on bad_90d": (
            DEFAULT_PARAMS,
            {w: rows["bad_90d"].to_numpy() for w, rows in windows.items()},
        ),
        **{
            label: ({**DEFAULT_PARAMS, **change, "objective": "cross_entropy"}, p)
            for label, change in CEILINGS.items()
        },
    }
    scores = {}
    t = time.perf_counter()
    directions = [s.risk_direction for s in signals()]
    card = OptBinningScorecard(names, directions).fit(X["train"], windows["train"]["bad_90d"].to_numpy())
    scores[SCORECARD] = card.predict_proba(X["test"])
    print(f"  {SCORECARD}: fitted in {time.perf_counter() - t:.1f} s")
    for label, (params, y) in fits.items():
        t = time.perf_counter()
        booster = fit_booster(
            Dataset(X["train"], y["train"]),
            Dataset(X["valid"], y["valid"]),
            names,
            none,
            {**params, "seed": seed},
        )
        scores[label] = booster.predict(X["test"], num_threads=2)
        print(f"  {label}: {booster.best_iteration} trees in {time.perf_counter() - t:.1f} s")
    test = windows["test"]
    scores[ORACLE] = p["test"]
    aucs = auc_comparison(test["bad_90d"].to_numpy(), test["buyer_id"].to_numpy(), scores, seed=seed)
    print(
        f"rating: train {len(windows['train']):,} snapshots, test {len(test):,} of {test['buyer_id'].nunique():,} buyers"
    )
    for name, a in aucs.items():
        versus = "" if name == ORACLE else f"   ratio to the oracle {Estimate.of(a / aucs[ORACLE])}"
        if name not in (ORACLE, SCORECARD):
            versus += f"   gain over the scorecard {Estimate.of(a - aucs[SCORECARD])}"
        print(f"  {name:<30} AUC {Estimate.of(a)}{versus}")
    return {name: float(a[0]) for name, a in aucs.items()}


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args(argv)
    t0 = time.perf_counter()
    print(describe(args.data))
    rows = bench_rows(args.data, args.train_buyers, args.seed, Progress())
    split, fitting, evaluation = rows.split, rows.fitting, rows.evaluation
    names = [s.name for s in signals()]
    heads = fit_heads(fitting, split, names, args.seed, Progress())
    figures: dict[str, dict[str, float]] = {}
    for service in SERVICES:
        windows = {w: split.opportunities_in(fitting[service], w) for w in ("train", "valid")}
        windows["test"] = split.opportunities_in(evaluation[service], "test")
        figures[service] = service_ceiling(args.data, service, windows, heads[service], names, args.seed)
    train, valid, _ = split_snapshots(fitting[SNAPSHOTS], split)
    test = split_snapshots(evaluation[SNAPSHOTS], split)[2]
    figures["rating_auc"] = rating_ceiling(
        args.data, {"train": train, "valid": valid, "test": test}, names, args.seed
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {time.perf_counter() - t0:.0f} s, peak RSS {peak:,.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
