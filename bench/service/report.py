"""The benchmark's report: per target the median over rounds of each figure, and the goals met or missed."""

from __future__ import annotations

import math
import os

import numpy as np


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _ms(value: float) -> str:
    return "saturated" if math.isnan(value) else f"{value:.2f} ms"


SUSTAINED = 0.95  # an open loop is sustained when the target answered at >= 95% of the offered rate


DURABILITY = {
    "FULL": "an fsync per decision inside the SQLite write lock",
    "GROUP": "the default: as durable for an acknowledged decision, one fsync after "
    "the commit shared by concurrent decisions",
    "NORMAL": "NOT durable on power loss: no fsync per decision; for comparison only",
}


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def goal_figures(summary: dict, args, durability: dict[str, str]) -> None:
    """The throughput and latency goals: decisions/s of the per-request path, its ratio to parse-only, p99 at ``--rate``."""
    a = summary["a parse-only"]
    print(
        f"\nthroughput and latency (goals: >= 0.5x parse-only in decisions/s; p99 <= 10 ms at {args.rate:g} requests/s)"
    )
    print(f"  (a) parse-only Flask: {a['rps']:,.0f} requests/s")
    for name, row in summary.items():
        if name not in durability:
            continue
        mode = durability[name]
        ratio = row["rps"] / a["rps"]
        where = ", snapshot in Redis" if name.startswith("d") else ""
        print(
            f"  ({name.split()[0]}) per-request path, synchronous={mode} ({DURABILITY.get(mode, mode)}{where}):"
        )
        print(f"      {row['rps']:,.0f} decisions/s = {ratio:.2f}x parse-only   [{_verdict(ratio >= 0.5)}]")
        if row["open_rate"] >= SUSTAINED * args.rate:
            print(
                f"      p99 at {args.rate:g}/s: {row['open_p99']:.2f} ms (p50 {row['open_p50']:.2f} ms)   "
                f"[{_verdict(row['open_p99'] <= 10)}]"
            )
        else:
            print(
                f"      p99 at {args.rate:g}/s: not sustained (achieved {row['open_rate']:,.0f}/s; "
                f"p99 {row['open_p99']:,.0f} ms counting the queue)   [MISSED]"
            )


def report(results: dict[str, list[dict]], args, load_at_start) -> None:
    """Per target the median over rounds of each figure, and the goals."""
    print(
        f"\nclosed loop: {args.requests} requests, {args.concurrency} connections; open loop: {args.rate:g}/s "
        f"for {args.rate_seconds:g} s (and with {args.stalled} stalled clients for b); "
        f"median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'target':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'| open p50':>11}{'p99 ms':>9}{'rate/s':>8}"
        f"{'| stalled p50':>14}{'p99 ms':>9}  per-round req/s"
    )
    summary = {}
    for name, rounds in results.items():
        closed = [r["closed"] for r in rounds]
        opened = [r["open"] for r in rounds if r["open"] is not None]
        stalled = [r["stalled"] for r in rounds if r["stalled"] is not None]
        row = {
            "rps": _median([c.throughput for c in closed]),
            "open_rate": _median([o.throughput for o in opened]),
            "p50": _median([c.pct(50) for c in closed]),
            "p99": _median([c.pct(99) for c in closed]),
            "open_p50": _median([o.pct(50) for o in opened]),
            "open_p99": _median([o.pct(99) for o in opened]),
            "stalled_p50": _median([o.pct(50) for o in stalled]),
            "stalled_p99": _median([o.pct(99) for o in stalled]),
        }
        summary[name] = row
        errors = sum(c.errors for c in closed + opened + stalled)
        statuses: dict = {}
        for r in closed + opened + stalled:
            for k, v in r.statuses.items():
                if k != "rate/s":
                    statuses[k] = statuses.get(k, 0) + v
        row["stalled_rate"] = _median([o.statuses["rate/s"] for o in stalled])
        opened_text = f"{row['open_p50']:>11.2f}{row['open_p99']:>9.2f}{row['open_rate']:>8.0f}"
        stalled_text = f"{row['stalled_p50']:>14.2f}{row['stalled_p99']:>9.2f}" if stalled else f"{'-':>23}"
        print(
            f"{name:<16}{row['rps']:>10.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{opened_text}{stalled_text}  "
            f"{[round(c.throughput) for c in closed]} statuses {statuses} errors {errors}"
        )
    b = summary["b decisions"]
    durability = {"b decisions": args.synchronous}
    for name in summary:
        if name.startswith("b'"):
            durability[name] = args.group_synchronous
        if name.startswith("d "):
            durability[name] = (
                args.group_synchronous if args.group_synchronous != "none" else args.synchronous
            )
    goal_figures(summary, args, durability)
    print(
        f"\nload average at start {tuple(round(x, 2) for x in load_at_start)}, "
        f"at end {tuple(round(x, 2) for x in os.getloadavg())}"
    )
    print(
        f"(b) p99 at {b['stalled_rate']:.0f}/s with {args.stalled} stalled clients: {_ms(b['stalled_p99'])}   "
        f"goal <= 20 ms (at {args.rate:g}/s, or half its closed-loop throughput if lower)"
    )
    for name, row in summary.items():
        if name.startswith("b'"):
            print(
                f"({name.split()[0]}) p99 at {row['stalled_rate']:.0f}/s with {args.stalled} stalled clients: "
                f"{_ms(row['stalled_p99'])}"
            )
    if "d per-request" in summary and "c mlflow serve" in summary:
        d, c = summary["d per-request"], summary["c mlflow serve"]
        print(
            f"(d)/(c) throughput, per-request scoring (synchronous="
            f"{args.group_synchronous if args.group_synchronous != 'none' else args.synchronous}) "
            f"vs mlflow models serve: {d['rps'] / c['rps']:.1f}   goal >= 20"
        )
    if "c mlflow serve" in summary:
        print(f"(b)/(c) throughput: {b['rps'] / summary['c mlflow serve']['rps']:.1f}")
