"""How often the served head reasons agree with LightGBM's exact TreeSHAP, and what each way costs.

A decision's reasons rank the service head's inputs by exact TreeSHAP computed from per-leaf tables
(``rating.path_shap``); LightGBM's own ``pred_contrib`` is the reference, and Saabas' attribution
from per-leaf paths (``rating.leaf_paths``: one leaf walk) the cheap alternative. On the real
opportunities of a window of the export (every presale deposit and refund request, as
``serving.offline.backtest`` sends them, with the signals the service had that day), each decision
is priced each way and decided as the backtest decides it (the policy and the ledger's rules), and
the answer's reasons (caps first, then the head's inputs, then the uplift; the rating's when the
head cites nothing) are compared with LightGBM's:

    identical top-k   the same set of codes
    top-1             the same first code
    overlap           mean |served ∩ exact| / |exact|

per service and overall, for approvals and declines apart, with counts and Wilson 95% intervals.
It also checks that no ``p_loss`` (6 decimals), expected loss or decision differs from LightGBM's
pricing, and times the head per decision (single row, median over the decisions).

    python bench/bench_head_reasons.py --data data/market --model-uri models:/buyer-trust-rating@champion
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.machine import describe

DECIDE = "decide"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="raw export (the backtest's input)")
    p.add_argument("--model-uri", default="models:/buyer-trust-rating@champion")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    p.add_argument("--policy", type=Path, default=Path("serving/policy.yaml"), help="the policy deciding")
    p.add_argument(
        "--days", type=int, default=60, help="window: the last DAYS days of the export (default 60)"
    )
    p.add_argument("--max-decisions", type=int, default=0, help="at most this many, the first ones (0: all)")
    p.add_argument("--timed", type=int, default=1000, help="decisions timed per service (default 1000)")
    return p.parse_args(argv)


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of ``hits`` out of ``n``."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.96, hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def codes(priced, k: int) -> tuple[str, ...]:
    """The answer's reason codes: the head's (caps first), or the rating's when the head cites none."""
    found = priced.head.reasons if priced.head.reasons else priced.rating.reasons
    return tuple(f.code for f in found[:k])


def agreement(rows: pd.DataFrame, column: str) -> str:
    """``column``'s codes against exact TreeSHAP's over ``rows``: identical set, top-1, overlap."""
    n = len(rows)
    if n == 0:
        return "n 0"
    same = int(sum(set(a) == set(b) for a, b in zip(rows[column], rows["exact"], strict=True)))
    top1 = int(sum(a[:1] == b[:1] for a, b in zip(rows[column], rows["exact"], strict=True)))
    overlap = np.mean(
        [len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(rows[column], rows["exact"], strict=True)]
    )
    lo, hi = wilson(same, n)
    lo1, hi1 = wilson(top1, n)
    return (
        f"n {n:>6,}  identical {same:>6,} {same / n:6.1%} [{lo:.1%}, {hi:.1%}]  "
        f"top-1 {top1:>6,} {top1 / n:6.1%} [{lo1:.1%}, {hi1:.1%}]  overlap {overlap:.3f}"
    )


def priced_window(args) -> tuple[list, dict[str, list], object, dict]:
    """The window's events, its decisions priced with each attribution (``ATTRIBUTIONS``; TREESHAP's
    as the service prices them), the policy and the ``Live`` of each day."""
    from features.io import export_time, load_tables
    from rating.heads import ATTRIBUTIONS, TREESHAP
    from serving.config import ServingConfig, load_config
    from serving.handle import assess
    from serving.live import load_model
    from serving.offline.backtest import daily_signals, day_lives, window_events
    from serving.policy import load_policy
    from serving.schema import parse_decision

    config = load_config(
        {"model_uri": args.model_uri, "mlflow_tracking_uri": args.tracking_uri, "watch_interval_s": 0}
    )
    rating = load_model(config)
    names = list(rating.model.signal_names)
    policy = load_policy(args.policy, names)
    tables = load_tables(args.data)
    end = export_time(args.data).normalize()
    events = window_events(tables, end - pd.Timedelta(days=args.days), end, policy.currency, policy.decimals)
    if args.max_decisions:
        decides = np.cumsum([e.kind == DECIDE for e in events])
        events = events[: int(np.searchsorted(decides, args.max_decisions, side="right"))]
    lives = dict(day_lives(daily_signals(tables, events, names), names, rating, policy))
    serving = ServingConfig(watch_interval_s=0)
    priced: dict[str, list] = {a: [] for a in ATTRIBUTIONS}
    for event in (e for e in events if e.kind == DECIDE):
        live = lives[event.snapshot_day]
        request = parse_decision(event.body, serving.max_amount, policy.currency, policy.decimals)
        now = event.t.tz_convert("UTC").tz_localize(None)
        served = assess(request, live, now)  # as the service prices it: TREESHAP
        for attribution in ATTRIBUTIONS:
            head = None if served.rating is None else live.head_risk(request, served.rating, now, attribution)
            priced[attribution].append(served if attribution == TREESHAP else replace(served, head=head))
    return events, priced, policy, lives


def timings(served: list, lives: dict, events: list, n: int) -> list[str]:
    """Per service, median microseconds of one row's attribution each way and of ``head_risk``."""
    from rating.heads import ATTRIBUTIONS, SAABAS, TREESHAP
    from serving.live import request_context

    decided = [e for e in events if e.kind == DECIDE]
    lines = []
    for service in ("presale_ship_before_balance", "fast_refund"):
        picked = [
            (p, e) for p, e in zip(served, decided, strict=True) if p.head and p.request.service == service
        ]
        picked = picked[:n]
        if not picked:
            continue
        head = lives[picked[0][1].snapshot_day].rating.model.heads[service]
        one_row = head._predictors()
        shap, saabas, leaf = head._table(TREESHAP), head._table(SAABAS), head._compared("leaf")
        steps = {
            "TreeSHAP from per-leaf tables": shap.contributions,
            "TreeSHAP by LightGBM (single row)": head._compared("contrib"),
            "Saabas (leaf walk + table)": lambda x, t=saabas, leaf=leaf: t.contributions(t.leaf_ids(leaf(x))),
            "raw score alone (single row)": one_row["raw"],
        }
        times: dict[str, list[float]] = {name: [] for name in steps}
        times |= {f"head_risk, {a}": [] for a in ATTRIBUTIONS}
        for priced, event in picked:
            now = event.t.tz_convert("UTC").tz_localize(None)
            live = lives[event.snapshot_day]
            x = head.inputs(priced.rating.row, request_context(priced.request, now, live.policy.decimals))[0]
            for name, step in steps.items():
                times[name].append(_once(step, x))
            for a in ATTRIBUTIONS:
                times[f"head_risk, {a}"].append(
                    _once(
                        lambda _x, a=a, p=priced, live=live, now=now: live.head_risk(
                            p.request, p.rating, now, a
                        ),
                        x,
                    )
                )
        lines.append(f"{service} ({head.base.num_trees()} trees; {len(picked)} decisions):")
        lines += [f"  {name:<36}{np.median(values):9.1f} us (median)" for name, values in times.items()]
    return lines


def _once(step, x: np.ndarray) -> float:
    """Microseconds of the fastest of three calls of ``step(x)`` (one row)."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter_ns()
        step(x)
        best = min(best, (time.perf_counter_ns() - started) / 1e3)
    return best


def main(argv=None) -> int:
    from rating.heads import LIGHTGBM, SAABAS, TREESHAP
    from serving.offline.backtest import decide_priced

    args = parse_args(argv)
    print(describe(args.data), flush=True)
    began = time.perf_counter()
    events, priced, policy, lives = priced_window(args)
    served, exact = priced[TREESHAP], priced[LIGHTGBM]
    print(f"priced {len(served):,} decisions each way ({time.perf_counter() - began:.0f} s)", flush=True)
    made = decide_priced(events, served, policy)
    made_exact = decide_priced(events, exact, policy)
    keep = np.array([p.head is not None for p in served])
    k = policy.max_reasons
    rows = made[keep].reset_index(drop=True)
    for name, attribution in (("served", TREESHAP), ("saabas", SAABAS), ("exact", LIGHTGBM)):
        rows[name] = [codes(p, k) for p, ok in zip(priced[attribution], keep, strict=True) if ok]
    p_served = np.array([p.head.p_loss for p in served if p.head is not None])
    p_exact = np.array([p.head.p_loss for p in exact if p.head is not None])
    losses = sum(
        a.head.expected_loss != b.head.expected_loss for a, b in zip(served, exact, strict=True) if a.head
    )
    print(
        f"window: the last {args.days} days of the export; {len(made):,} decisions, {int(keep.sum()):,} priced "
        f"by a head (the rest unrated); max_reasons {k}"
    )
    print(
        f"pricing with TreeSHAP tables vs LightGBM's contributions: max |p_loss diff| "
        f"{np.abs(p_served - p_exact).max():.2e}; p_loss (6 decimals) differs "
        f"{int((np.round(p_served, 6) != np.round(p_exact, 6)).sum())}; expected loss differs {losses}; "
        f"decisions differ {int((made['decision'] != made_exact['decision']).sum())}"
    )
    for service in ("presale_ship_before_balance", "fast_refund", None):
        part = rows if service is None else rows[rows["service"] == service]
        print(f"\n{service or 'overall'} (against LightGBM's TreeSHAP):")
        for label, subset in (("all", part), ("approvals", part[part["decision"] == "approve"]),
                              ("declines", part[part["decision"] == "decline"])):  # fmt: skip
            print(f"  {label:<10} served  {agreement(subset, 'served')}")
            print(f"  {'':<10} saabas  {agreement(subset, 'saabas')}")
    print("\ncost of the head per decision (single row):")
    for line in timings(served, lives, events, args.timed):
        print(line)
    print(f"\nload average at end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
