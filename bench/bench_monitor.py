"""Shift detection yardstick of the daily monitor: days from a declared shift to its first alert, and
false alerts per month without one.

    python bench/bench_monitor.py --buyers 20000 --out /tmp/bench_monitor

One marketplace (``--buyers`` x ``--months``, seed ``--seed``) is simulated without a shift and once
with each kind of shift from ``--shift-month`` (``simulator.shifts``). A champion is trained on the
unshifted export (``training/train.py``: the reference is the run's ``monitor/reference.json``).
On each export, the days from ``--days-before`` before the shift to the export's end are replayed
through the decision path into a SQLite decision log (``serving.offline.backtest.replay``, the service's
handler and ledger rules), and the monitor judges each day (``serving.monitor.run.monitor_day``:
the snapshot of that day for a sample of buyers, the log read as it was at the day's end, the export's
pay-later bills, whole, with their payments before the day's end). Alerts
are the rules' (``serving.monitor.rules.firing``: a rule with ``runs: 2`` raises on the second
consecutive breaching run).

Goals: each shift alerted within two daily runs of its start; at most one false alert per month.
Steps are cached in ``--out`` (exports, the trained model); delete the folder to start afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_signals, make_spine
from features.io import load_tables
from features.registry import get as get_signal
from serving.config import ServingConfig, default_policy_path
from serving.ledger.engine import make_engine
from serving.ledger.store import Ledger
from serving.monitor.measure import MOVE_RUNS
from serving.monitor.rules import firing
from serving.monitor.run import WINDOW_DAYS, load_reference, monitor_day
from serving.offline.backtest import daily_signals, day_lives, replay, window_events
from serving.policy import load_policy
from simulator.shifts import KINDS

DAY = pd.Timedelta(days=1)
REGISTER = "bench-monitor"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--buyers", type=int, default=20_000)
    p.add_argument("--months", type=int, default=27, help="simulated months (default 27: 2023-01..2025-03)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--shift-month", default="2025-03", help="the month every shift starts (default 2025-03)")
    p.add_argument(
        "--days-before",
        type=int,
        default=MOVE_RUNS,
        help=f"monitored days before the shift (default {MOVE_RUNS}: the history a signal's move is judged on)",
    )
    p.add_argument(
        "--sample", type=int, default=5000, help="snapshot buyers the signal drift reads (default 5000)"
    )
    p.add_argument(
        "--window-days", type=int, default=WINDOW_DAYS, help="days of decisions a run's request drift reads"
    )
    p.add_argument("--kinds", default=",".join(KINDS), help="shift kinds to inject (default: all)")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def simulate(args: argparse.Namespace, name: str, shift: str | None) -> Path:
    out = args.out / name
    if not (out / "manifest.json").exists():
        cmd = [sys.executable, "-m", "simulator", "--buyers", str(args.buyers), "--months", str(args.months),
               "--seed", str(args.seed), "--out", str(out), "--quiet"]  # fmt: skip
        subprocess.run([*cmd, *(["--shift", shift] if shift else [])], check=True)
    return out


def train(args: argparse.Namespace, data: Path) -> str:
    """Train the champion on the unshifted export; returns the tracking URI."""
    uri = f"sqlite:///{(args.out / 'mlruns' / 'mlflow.db').resolve()}"
    if not (args.out / "mlruns" / "trained").exists():
        (args.out / "mlruns").mkdir(parents=True, exist_ok=True)
        env = os.environ | {"MLFLOW_TRACKING_URI": uri}
        subprocess.run(
            [sys.executable, "training/train.py", "--data", str(data), "--no-stability", "--cache-dir", "",
             "--register-name", REGISTER, "--promote", "force"],
            check=True, env=env, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        (args.out / "mlruns" / "trained").touch()
    return uri


def snapshots(
    tables: dict, days: list[pd.Timestamp], names: list[str], sample: int
) -> dict[pd.Timestamp, np.ndarray]:
    """Each day's snapshot of the first ``sample`` buyers: as of the midnight that ends it (the daily
    job publishes, then monitors the day that just ended). Keyed by the day judged."""
    spine = make_spine(tables["buyers"], [(d + DAY).tz_localize("UTC") for d in days], limit=sample)
    frame = build_signals(tables, spine, [get_signal(n) for n in names])
    return {
        day.tz_convert("UTC").tz_localize(None) - DAY: rows[names].to_numpy(np.float32)
        for day, rows in frame.groupby("as_of", sort=True)
    }


def monitor_export(
    args, data: Path, rating, reference, policy, shift_day: pd.Timestamp
) -> tuple[list, float]:
    """The monitor's records over the export's monitored days, and the seconds it took."""
    began = time.perf_counter()
    tables = load_tables(data)
    exported = pd.Timestamp(json.loads((data / "manifest.json").read_text())["exported_at"]).tz_localize(None)
    first = shift_day - args.days_before * DAY
    days = list(pd.date_range(first, exported.normalize() - DAY, freq="D"))
    names = list(rating.model.signal_names)
    start = (first - args.window_days * DAY).tz_localize("UTC")
    events = window_events(tables, start, exported.tz_localize("UTC"), policy.currency, policy.decimals)
    lives = dict(day_lives(daily_signals(tables, events, names), names, rating, policy))
    db = args.out / f"log-{data.name}.db"
    db.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    ledger = Ledger(engine)
    ledger.create()
    replay(events, lives, ledger, ServingConfig(watch_interval_s=0))
    snaps = snapshots(tables, days, names, args.sample)
    registered = tables["buyers"]["registered_at"]
    history = []
    for day in days:
        matrix = snaps[day]
        scores = rating.model.score(matrix).score
        history.append(
            monitor_day(
                engine,
                day,
                reference,
                names,
                matrix,
                scores,
                policy,
                history,
                args.window_days,
                150,
                {"run_at": time.time(), "model_version": rating.version, "reference_run": rating.run_id},
                population=int((registered < (day + DAY).tz_localize("UTC")).sum()),  # the whole base
                bills=tables.get("credit_bills", f"export {data} has no credit_bills table"),
            )
        )
    ledger.close()
    return history, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    load = os.getloadavg()[0]
    shift_day = pd.Timestamp(f"{args.shift_month}-01")
    kinds = [k for k in args.kinds.split(",") if k]
    exports = {"none": simulate(args, "none", None)}
    for kind in kinds:
        exports[kind] = simulate(args, kind, f"{kind}@{args.shift_month}")
    uri = train(args, exports["none"])
    import mlflow

    from rating.artifact import load_rating

    mlflow.set_tracking_uri(uri)
    rating = load_rating(f"models:/{REGISTER}@champion")
    reference = load_reference(None, rating.run_id)
    policy = load_policy(default_policy_path(), rating.model.signal_names)
    print(f"bench_monitor: {args.buyers:,} buyers x {args.months} months, seed {args.seed}, shifts from "
          f"{args.shift_month}, {args.days_before} days monitored before; snapshot sample {args.sample:,}; "
          f"decision window {args.window_days} day(s); load {load:.2f} at start; setup {time.perf_counter() - began:.0f} s")  # fmt: skip
    results, twin = {}, set()
    for name, data in exports.items():
        history, seconds = monitor_export(args, data, rating, reference, policy, shift_day)
        raised = firing(history)
        days = len(history)
        if name == "none":
            twin = {(a["day"], a["alert"], json.dumps(a["labels"], sort_keys=True)) for a in raised}
        # a detection is an alert the unshifted twin did not raise on that day for that series
        before = [a for a in raised if pd.Timestamp(a["day"]) < shift_day]
        after = [
            a
            for a in raised
            if pd.Timestamp(a["day"]) >= shift_day
            and (a["day"], a["alert"], json.dumps(a["labels"], sort_keys=True)) not in twin
        ]
        first = min((pd.Timestamp(a["day"]) for a in after), default=None)
        runs = None if first is None else (first - shift_day).days + 1
        results[name] = {"days": days, "raised": raised, "runs_to_first_alert": runs, "seconds": seconds}
        (args.out / f"records-{name}.json").write_text(json.dumps(history))
        if name == "none":
            per_month = len(raised) / (days / 30.4)
            print(f"  no shift: {len(raised)} alerts in {days} daily runs = {per_month:.2f} per month (goal <= 1); "
                  f"{seconds:.0f} s")  # fmt: skip
        else:
            alerts = (
                sorted({a["alert"] for a in after if pd.Timestamp(a["day"]) == first})
                if first is not None
                else []
            )
            print(f"  {name}: first alert of its own on run {runs} after the shift (goal <= 2): {', '.join(alerts) or 'none'}; "
                  f"{len(before)} alerts before the shift in {args.days_before} runs; {seconds:.0f} s")  # fmt: skip
        for a in raised:
            print(f"      {a['day']} {a['alert']} {a['labels']}")
    print(f"bench_monitor: {time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.2f} at end")
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
