"""The presale head's uplift, linear or with a knot: what each decides on the test window, judged with the truth.

    python bench/bench_presale_uplift.py                       # the champion on data/market
    python bench/bench_presale_uplift.py --knots none,0.5 --fit-on shipped --model-uri models:/buyer-trust-rating/3

Keeps the champion's presale base and opportunism proxy and refits only the uplift
``a + b * max(z, knot)`` (``training.heads.add_uplift``) on the validation presales shipped early
at random among the legacy rule's declines (``--fit-on explored``, training's default) or on every
one shipped early (``shipped``), with the knot at each given quantile of their proxy log-odds
(``none``: linear; ``1``: a shift only). For each variant it does what ``train.py`` does after the heads: proposes the
allowances, searches the whole policy on the validation window and backtests it on the test
window, and prints the presale figures with the truth: money and loss per unit against the
legacy rule, the head's expected loss on the policy's approvals against the truth's, and the
fitted uplift's log-likelihood on the rows it was fitted on (the only figure a variant may be
chosen by without the truth). First it prints the champion's presale head by window (train,
validation, test) against the truth: on the legacy rule's presales, on the head's cheapest 30% of
the others (where a policy extends), on all, and the explored presales' realised default rate.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import log_loss

from bench.machine import describe
from rating.artifact import load_rating
from training.dataset import SNAPSHOTS, assemble_cached
from training.evaluation.truth import opportunity_truth
from training.heads import UPLIFT_ROWS, _weight, add_uplift, context_matrix, fit_proxy
from training.opportunities import FAST_REFUND, PRESALE, legacy_decisions
from training.policy.backtest import search_and_judge
from training.policy.proposal import candidate_policy
from training.progress import Progress
from training.run import BASE_POLICY, propose_policy
from training.snapshots import default_split, snapshot_dates
from training.tracking import configure_tracking


def _knot(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def log_likelihood(head, rows) -> float:
    """Mean log-likelihood of the head's probability on the shipped-early presales ``rows`` (weighted)."""
    shipped = rows[rows["shipped"].to_numpy(bool)]
    logit = head.logit(shipped[head.signal_names].to_numpy(np.float64), context_matrix(PRESALE, shipped))
    return -float(
        log_loss(shipped["bad"], 1 / (1 + np.exp(-logit)), sample_weight=_weight(shipped), labels=[0, 1])
    )


def calibration_by_window(head, frames, split, data: Path) -> str:
    """Money-weighted head / truth (the truth's shipped-arm probability) on each window's presales: the
    legacy rule's, the head's cheapest 30% of the others, all; and the explored ones' realised defaults."""
    lines = [
        f"{'window':>6s}  {'rule: head/truth':>16s}  {'not rule, cheapest 30%: head/truth (truth loss/unit)':>52s}  "
        f"{'all':>5s}  explored: rows, defaults, realised vs head"
    ]
    for window in ("train", "valid", "test"):
        rows = split.opportunities_in(frames[PRESALE], window).reset_index(drop=True)
        truth = np.asarray(opportunity_truth(data, PRESALE, rows), np.float64)
        rule = legacy_decisions(PRESALE, rows)
        p = head.probability(rows[head.signal_names].to_numpy(np.float64), context_matrix(PRESALE, rows))
        money = rows["balance"].to_numpy(np.float64)
        cheap = ~rule & (p <= np.quantile(p[~rule], 0.3))

        head_loss, true_loss = money * p, money * truth

        explored = rows["shipped"].to_numpy(bool) & ~rule
        y = rows["bad"].to_numpy(np.float64)
        lines.append(
            f"{window:>6s}  {head_loss[rule].sum() / true_loss[rule].sum():16.3f}  {head_loss[cheap].sum() / true_loss[cheap].sum():42.3f} ({(money * truth)[cheap].sum() / money[cheap].sum():.2%})  "
            f"{head_loss.sum() / true_loss.sum():5.3f}  {explored.sum():,}, {int(y[explored].sum())}, "
            f"{y[explored].mean():.2%} vs {p[explored].mean():.2%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/market"))
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--knots", default="none,1,0.5,0.25", help="quantiles of the knot, comma separated")
    p.add_argument("--fit-on", default=UPLIFT_ROWS, choices=("shipped", "explored"), help="the uplift's rows")
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    print(describe(args.data))
    progress = Progress()
    dates = snapshot_dates(args.data)
    split = default_split(dates)
    frames = assemble_cached(args.data, dates, args.cache_dir, None, args.seed, progress, split)
    frames.pop(SNAPSHOTS)
    valid = split.opportunities_in(frames[PRESALE], "valid")
    configure_tracking()
    rating = load_rating(args.model_uri)
    print(f"the presale head of {args.model_uri} by window, with the truth:")
    print(calibration_by_window(rating.model.heads[PRESALE], frames, split, args.data), flush=True)
    reviewed = yaml.safe_load(BASE_POLICY.read_text())
    proxy = rating.model.heads[PRESALE].proxy
    if proxy is None:  # a head with a constant shift: the proxy its slope would use, fitted as training would
        progress("the champion's presale head has no proxy: fitting it ...")
        refunds = [split.opportunities_in(frames[FAST_REFUND], w) for w in ("train", "valid")]
        proxy = fit_proxy(*refunds, rating.model.heads[PRESALE].signal_names, args.seed, progress)
    lines = []
    for text in args.knots.split(","):
        knot = _knot(text)
        model = copy.copy(rating.model)
        model.booster = rating.model.booster  # a copy drops it, as a pickle does
        fitted = model.heads[PRESALE]
        # the base alone (no proxy: its logit is the offset the uplift is fitted on), as training has it
        base = dataclasses.replace(
            fitted, proxy=None, uplift=(0.0, 0.0), knot=None, metrics=dict(fitted.metrics)
        )
        head = add_uplift(base, proxy, valid, knot, args.fit_on)
        model.heads = {**model.heads, PRESALE: head}
        ll = log_likelihood(head, valid)
        progress(
            f"knot quantile {text}: uplift {head.uplift}, knot {head.knot}, validation log-likelihood {ll:.5f}"
        )
        proposals, _ = propose_policy(model, frames, split, progress)
        candidate = candidate_policy(BASE_POLICY, proposals, f"uplift-knot-{text}")
        judged = search_and_judge(
            model, rating.run_id or "bench", candidate, reviewed, args.data, split, 30, progress
        )
        m = judged.metrics
        pre = "policy_presale_candidate_"
        a, b = head.uplift
        lines.append(
            f"{text:>6s} {a:7.3f} {b:6.3f} {head.knot if head.knot is not None else float('nan'):7.3f} {ll:9.5f} "
            f"{m[pre + 'money_vs_legacy']:6.2f}x {m[pre + 'loss_per_unit_vs_legacy']:6.2f}x "
            f"{m[pre + 'loss_per_unit']:.2%} [{m[pre + 'loss_per_unit_lo']:.2%}, {m[pre + 'loss_per_unit_hi']:.2%}] "
            f"(legacy {m[pre + 'legacy_loss_per_unit']:.2%}) {m.get(pre + 'head_vs_truth_on_approvals', float('nan')):6.3f} "
            f"{m.get(pre + 'high_risk_loss_share', float('nan')):6.1%} {m[pre + 'approvals']:7,.0f}"
        )
        print(lines[-1], flush=True)
    print(
        "\nknot q      a      b    knot   valid LL  money  loss/unit  loss per unit [95%] (legacy)  head/truth  "
        "high-risk approvals"
    )
    print("\n".join(lines))
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
