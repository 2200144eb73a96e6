"""What any presale ranking of the product's inputs reaches, and why the search's target is high.

    python bench/bench_presale_frontier.py                     # the champion on data/market
    python bench/bench_presale_frontier.py --data DIR --model-uri models:/buyer-trust-rating/3

The presale goal is at least 2x the legacy rule's money at no more than its loss per unit. Whatever
the policy's target, its approvals are the presales a head prices cheapest, so the goal is within
reach of a head only if its ranking is. This bench prints, on the test window and with the truth,
each ranking's *frontier*: approving presales cheapest first by its probability until the money
reaches k times the legacy rule's, the truth's loss per unit of those approvals against the rule's
(no stars, caps or exposure limits: the ranking alone; the policy's limits only remove choices).
Rankings: the truth itself, the champion's head, the head refitted as training fits it (stacked on
the rating's margin, ``training.heads.fit_base``'s ``prior``), the base alone (no rating margin), and
that base with monotone constraints (the registry's risk directions), with fewer and larger leaves,
with the rating's log-odds as an input; and the rating alone.

Second, the shift shipping early adds, by arm (the legacy rule's presales, shipped by the rule;
the explored ones, shipped at random among its declines), per window: fitted on the realised
defaults (logistic regression with the champion's base as offset) and what the truth's own
probabilities give on the same rows. The champion prices every presale with the explored shift,
and the search's target is the rule's loss per unit as the champion prices it: where the rule's
arm carries a smaller shift, the target is high by the difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import describe
from features.registry import monotone_constraints
from rating.artifact import load_rating
from rating.calibrate import newton_logistic
from training.dataset import SNAPSHOTS, assemble_cached
from training.evaluation.truth import opportunity_truth
from training.heads import CONTEXT, add_shift, context_matrix, fit_base
from training.opportunities import PRESALE, legacy_decisions
from training.progress import Progress
from training.snapshots import default_split, snapshot_dates
from training.tracking import configure_tracking

MULTIPLES = (0.5, 1.0, 2.0, 3.0, 4.0)  # of the legacy rule's money
RATING_LOGIT = "rating_logit"  # the rating's log-odds, as an input of the stacked variant
MONOTONE = {"monotone_constraints_method": "intermediate"}


def frontier(p: np.ndarray, money: np.ndarray, truth: np.ndarray, rule: np.ndarray) -> list[float]:
    """Per multiple of the rule's money: the truth's loss per unit of the cheapest presales by ``p`` up to it,
    over the rule's loss per unit."""
    rule_rate = (money * truth)[rule].sum() / money[rule].sum()
    order = np.argsort(p, kind="stable")
    cum_money, cum_loss = np.cumsum(money[order]), np.cumsum((money * truth)[order])
    out = []
    for k in MULTIPLES:
        i = min(int(np.searchsorted(cum_money, k * money[rule].sum())), len(order) - 1)
        out.append(float(cum_loss[i] / cum_money[i] / rule_rate))
    return out


def shift_on(base_logit: np.ndarray, y: np.ndarray) -> float:
    """The constant shift fitting ``y`` (0/1, or probabilities) with ``base_logit`` as offset (NaN: no fit)."""
    if not 0 < y.sum() < len(y):
        return float("nan")
    return float(newton_logistic(np.ones((len(y), 1)), y.astype(np.float64), offset=base_logit)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/market"))
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    print(describe(args.data))
    dates = snapshot_dates(args.data)
    split = default_split(dates)
    frames = assemble_cached(args.data, dates, args.cache_dir, None, args.seed, Progress(), split)
    frames.pop(SNAPSHOTS)
    configure_tracking()
    rating = load_rating(args.model_uri)
    champion = rating.model.heads[PRESALE]
    names = list(champion.signal_names)

    def rating_logit(rows):
        signals = rows[rating.model.signal_names].to_numpy(np.float32)
        return rating.model.booster.predict(signals, raw_score=True)

    rows = {
        w: split.opportunities_in(frames[PRESALE], w).reset_index(drop=True)
        for w in ("train", "valid", "test")
    }
    rows = {w: r.assign(**{RATING_LOGIT: rating_logit(r)}) for w, r in rows.items()}
    test = rows["test"]
    truth = np.asarray(opportunity_truth(args.data, PRESALE, test), np.float64)
    money = test["balance"].to_numpy(np.float64)
    rule = legacy_decisions(PRESALE, test)
    print(
        f"test window: {len(test):,} presales; the legacy rule approves {rule.sum():,} "
        f"({money[rule].sum():,.0f} of money) at a true loss per unit of "
        f"{(money * truth)[rule].sum() / money[rule].sum():.2%}"
    )

    def head_p(head, columns):
        return head.probability(test[columns].to_numpy(np.float64), context_matrix(PRESALE, test))

    mono = monotone_constraints(names) + [0] * len(CONTEXT[PRESALE])
    rankings = {"truth": truth, "the champion's head": head_p(champion, names)}
    prior = rating.model.booster
    variants = {
        "refitted, stacked on the rating's margin": ({}, names, prior),
        "the base alone (no rating margin)": ({}, names, None),
        "monotone (registry directions)": ({**MONOTONE, "monotone_constraints": mono}, names, None),
        "7 leaves, 300 rows a leaf": ({"num_leaves": 7, "min_data_in_leaf": 300}, names, None),
        "with the rating's log-odds as an input": ({}, [*names, RATING_LOGIT], None),
    }
    for label, (overrides, columns, stacked) in variants.items():
        head = fit_base(
            PRESALE,
            rows["train"],
            rows["valid"],
            columns,
            args.seed,
            overrides=overrides or None,
            prior=stacked,
        )
        rankings[f"{label} ({head.metrics['best_iteration']:.0f} trees)"] = head_p(
            add_shift(head, rows["valid"]), columns
        )
    rankings["the rating alone"] = 1 / (1 + np.exp(-test[RATING_LOGIT].to_numpy()))
    print("\nloss per unit of the cheapest presales by each ranking / the rule's, at k x the rule's money")
    print(f"{'ranking':58s}" + "".join(f"{k:>7.1f}x" for k in MULTIPLES))
    for label, prob in rankings.items():
        print(f"{label:58s}" + "".join(f"{v:8.2f}" for v in frontier(prob, money, truth, rule)))

    base = dataclasses.replace(champion, uplift=(0.0, 0.0))
    print(
        f"\nthe shift shipping early adds, by arm (the champion prices every presale with {champion.uplift[0]:+.2f})"
    )
    print(f"{'window':6s} {'arm':9s} {'rows':>6s} {'defaults':>8s} {'fitted':>7s} {'truth':>7s}")
    for window, r in rows.items():
        shipped = r["shipped"].to_numpy(bool)
        by_rule = legacy_decisions(PRESALE, r)
        p_true = np.asarray(opportunity_truth(args.data, PRESALE, r), np.float64)
        for arm, mask in (("rule", shipped & by_rule), ("explored", shipped & ~by_rule)):
            x = r[mask]
            z = base.logit(x[names].to_numpy(np.float64), context_matrix(PRESALE, x))
            y = x["bad"].to_numpy(np.float64)
            print(
                f"{window:6s} {arm:9s} {mask.sum():6,d} {int(y.sum()):8d} {shift_on(z, y):+7.2f} "
                f"{shift_on(z, p_true[mask]):+7.2f}"
            )
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
