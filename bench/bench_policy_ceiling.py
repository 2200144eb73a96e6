"""What money can any presale pricing approve at the legacy rule's loss per unit? The whole-policy search priced by the truth.

    python bench/bench_policy_ceiling.py                     # the champion on data/market
    python bench/bench_policy_ceiling.py --data DIR --model-uri models:/buyer-trust-rating/3

Runs the whole-policy search of a training run (``serving.offline.policy_search``: allowances and caps per
star, every limit of the policy, the upper 95% bound of the loss per unit at the legacy rule's) on
the validation window's presales three times, priced by: the champion's presale head; a model of
the same inputs *trained on the truth's probabilities* (``bench/bench_ceiling.py``'s ceiling, ``bench.ceiling``: the
signals and the presale's context, no label noise, no selection by history; the best a head of
these inputs can learn at this training size); and the simulator's truth itself (each presale's
probability of default if shipped early). The stars, caps and exposure rules stay the model's and
the policy's; each pricing's target is the legacy rule's loss per unit by that pricing. Each
searched policy then decides the test window's presales with its own pricing, judged with the
truth: money approved and loss per unit against the legacy rule's, with 95% buyer-bootstrap
intervals. What separates the head from the ceiling is learning; what separates the ceiling from
the truth is information the inputs do not carry.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.io import export_time, load_tables
from serving.config import load_config
from serving.decide import HeadRisk
from serving.live import load_model
from serving.offline.backtest import daily_signals, day_lives, decide_priced, judged, price, window_events
from serving.offline.backtest_report import legacy, summarise, truth_of
from serving.offline.policy_search import legacy_targets, search, without_exploration
from serving.policy import PRESALE, parse_policy
from training.policy.backtest import judge_window, search_window
from training.progress import Progress
from training.run import BASE_POLICY
from training.snapshots import default_split, snapshot_dates


def presales_of(tables, rating, policy, start, end):
    """The window's presale deposits (and every outcome) as events, priced by the model, and the day's signals."""
    events = window_events(tables, start, end, policy.currency, policy.decimals)
    events = [e for e in events if e.kind == "outcome" or e.body["service"] == PRESALE]
    names = list(rating.model.signal_names)
    signals = daily_signals(tables, events, names)
    priced = price(events, dict(day_lives(signals, names, rating, policy)))
    return events, priced, signals


def signals_ceiling(data: Path, cache: Path, head, seed: int = 7) -> dict[int, float]:
    """order_id -> the truth-trained model's probability of default if shipped early, for the validation
    and test windows' presales (fitted on the training window's, early stopping on validation's)."""
    from bench.ceiling import approval_design
    from training.dataset import SNAPSHOTS, assemble_cached
    from training.evaluation.truth import opportunity_truth
    from training.heads import fit_model

    dates = snapshot_dates(data)
    split = default_split(dates)
    frames = assemble_cached(data, dates, cache, None, seed, Progress(), split)
    frames.pop(SNAPSHOTS)
    rows = {
        w: split.opportunities_in(frames[PRESALE], w).reset_index(drop=True)
        for w in ("train", "valid", "test")
    }
    names = list(head.signal_names)
    X = {w: approval_design(PRESALE, r, names) for w, r in rows.items()}
    y = {w: np.asarray(opportunity_truth(data, PRESALE, r), np.float64) for w, r in rows.items()}
    booster = fit_model(
        X["train"], y["train"], X["valid"], y["valid"], names + list(head.context_names), seed,
        lambda _m: None, PRESALE, {"objective": "cross_entropy"},
    )  # fmt: skip
    out = {}
    for w in ("valid", "test"):
        out |= dict(zip(rows[w]["order_id"].to_numpy(), booster.predict(X[w], num_threads=2), strict=True))
    return out


def by_price(priced, price_of: dict[int, float]):
    """``priced`` with each presale head's probability replaced by ``price_of[order_id]``."""
    out = []
    for p in priced:
        if p.head is None:
            out.append(p)
            continue
        head = HeadRisk.priced(float(price_of[p.request.ref_id]), p.request.at_risk, p.head.reasons)
        out.append(dataclasses.replace(p, head=head))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/market"))
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: the service's default)")
    p.add_argument("--days", type=int, default=30, help="length of each window (default 30, as train.py)")
    p.add_argument(
        "--pricing", default="head,signals,truth", help="which pricings to search with (comma separated)"
    )
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"), help="train.py's assembled frames")
    args = p.parse_args(argv)
    began = time.perf_counter()
    overrides = {"model_uri": args.model_uri, "watch_interval_s": 0}
    if args.tracking_uri:
        overrides["mlflow_tracking_uri"] = args.tracking_uri
    rating = load_model(load_config(overrides))
    tables = load_tables(args.data)
    raw, _ = without_exploration(yaml.safe_load(BASE_POLICY.read_text()))
    base = parse_policy(raw)
    split = default_split(snapshot_dates(args.data))
    windows = {
        "search": search_window(split, args.days),
        "test": judge_window(split, export_time(args.data), args.days),
    }
    print(f"{args.data}: search {windows['search'][0].date()}..{windows['search'][1].date()}, "
          f"test {windows['test'][0].date()}..{windows['test'][1].date()}; model {args.model_uri}", flush=True)  # fmt: skip
    window = {w: presales_of(tables, rating, base, *span) for w, span in windows.items()}
    refs = pd.Series([p.request.ref_id for w in window.values() for p in w[1]])
    truth = truth_of(args.data, PRESALE, refs)
    if truth is None:
        raise SystemExit(f"{args.data} has no truth: the ceiling needs a simulated export")
    chosen = args.pricing.split(",")
    prices = {
        "head": lambda: None,
        "signals": lambda: signals_ceiling(args.data, args.cache_dir, rating.model.heads[PRESALE]),
        "truth": lambda: dict(zip(refs.to_numpy(), truth, strict=True)),
    }
    unknown = set(chosen) - set(prices)
    if unknown:
        raise SystemExit(f"--pricing: unknown {sorted(unknown)}; expected some of {sorted(prices)}")
    prices = {name: make() for name, make in prices.items() if name in chosen}
    print(f"pricings ready ({time.perf_counter() - began:.0f} s)", flush=True)
    rows = []
    for pricing, price_of in prices.items():
        events, priced, signals = window["search"]
        if price_of is not None:
            priced = by_price(priced, price_of)
        made = decide_priced(events, priced, base)
        target = legacy_targets(made, legacy(made, signals, tables))[PRESALE]
        doc, tried = search(events, priced, raw, {PRESALE: target}, lambda m: None)
        best = max(
            (t for t in tried if t.service == PRESALE and t.feasible), key=lambda t: t.money, default=None
        )
        policy = parse_policy(doc)
        events, priced, signals = window["test"]
        if price_of is not None:
            priced = by_price(priced, price_of)
        decided = judged(decide_priced(events, priced, policy), tables, args.data)
        rule = legacy(decided, signals, tables)
        mine = summarise(decided, decided["decision"].eq("approve").to_numpy())
        theirs = summarise(decided, rule)
        rows.append((pricing, target, best, mine, theirs, len(tried)))
        print(
            f"{pricing}: searched {len(tried)} candidates ({time.perf_counter() - began:.0f} s)", flush=True
        )
    print(
        "\npricing  search: target  money approved (upper bound)   test (truth): money vs rule  loss per unit [95%]"
        "            rule's loss per unit [95%]   loss/unit vs rule  approvals"
    )
    for pricing, target, best, mine, theirs, _ in rows:
        found = f"{best.money:13,.0f} ({best.upper:.2%})" if best else f"{'none feasible':>22s}"
        lo, hi = mine["loss_per_unit_ci"]
        rlo, rhi = theirs["loss_per_unit_ci"]
        print(
            f"{pricing:>7s}  {target:13.2%}  {found}   {mine['money'] / theirs['money']:12.2f}x  "
            f"{mine['loss_per_unit']:6.2%} [{lo:.2%}, {hi:.2%}]  {theirs['loss_per_unit']:6.2%} [{rlo:.2%}, {rhi:.2%}]"
            f"   {mine['loss_per_unit'] / theirs['loss_per_unit']:10.2f}x  {mine['approvals']:9,d}"
        )
    print(f"\nlegacy rule on the test window: {rows[0][4]['approvals']:,} approvals, {rows[0][4]['money']:,.0f} money; "
          f"wall {time.perf_counter() - began:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
