"""Judge what the service decides, as served, on a marketplace training never saw.

    python bench/bench_replay.py [--buyers 20000] [--seed 11] [--data DIR] [--from DATE --to DATE]
                                 [--model-uri URI] [--tracking-uri URI] [--policy FILE] [--json FILE]

1. Simulates a marketplace with a seed training never used (kept in ``--data``).
2. Starts the production service (gunicorn, SQLite ledger) on the champion and the policy.
3. Sends every presale deposit and refund request of a 30-day window around the last presale
   peak through ``POST /v1/decisions`` in time order, republishing the snapshot each day as of
   its midnight, with payments, cancellations, defaults, returns and abuse posted as outcomes
   when they happened (the service's replay clock set to each instant).
4. Replays the same window offline with ``python -m serving backtest``'s code.
5. Prints, with the simulator's truth: money approved and loss per unit as served, beside the
   legacy rules and beside the backtest's prediction (95% buyer-bootstrap intervals), and the
   presale head's money-weighted probability on approved presales against the truth's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from features.io import load_tables
from serving.config import load_config
from serving.http.auth import SCOPES, key_entry, new_key
from serving.live import load_model
from serving.offline.backtest import (
    backtest,
    daily_signals,
    decision_row,
    judged,
    served_replay,
    window_events,
)
from serving.offline.backtest_report import legacy, render, report
from serving.policy import PRESALE, load_policy
from serving.publish.snapshot import FileWriter

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--buyers", type=int, default=20_000, help="marketplace size (default 20,000)")
    p.add_argument("--months", type=int, default=30, help="months simulated (default 30)")
    p.add_argument("--seed", type=int, default=11, help="simulator seed; training uses 7 (default 11)")
    p.add_argument(
        "--data", type=Path, default=None, help="marketplace directory (default /tmp/replay-<seed>)"
    )
    p.add_argument("--from", dest="start", default=None, help="first day (default: 20 days before the peak)")
    p.add_argument(
        "--to", dest="end", default=None, help="day after the window (default: 30 days after --from)"
    )
    defaults = load_config({"watch_interval_s": 0})
    p.add_argument("--model-uri", default=defaults.model_uri)
    p.add_argument("--tracking-uri", default=defaults.mlflow_tracking_uri)
    p.add_argument("--policy", type=Path, default=Path(defaults.policy_path))
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    return p.parse_args(argv)


def peak_window(data: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    """30 days around the busiest deposit day of the last presale season."""
    deposits = pd.read_parquet(data / "presales", columns=["deposit_paid_at"])["deposit_paid_at"]
    recent = deposits[deposits > deposits.max() - pd.Timedelta(days=200)]
    peak = recent.dt.floor("D").value_counts().idxmax()
    start = peak - pd.Timedelta(days=20)
    return start, start + pd.Timedelta(days=30)


def start_server(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:serving.http.gunicorn_conf", "-w", "1"]
    cmd += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", "serving.http.app:create_app()"]
    log = open(workdir / "gunicorn.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {(workdir / 'gunicorn.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("gunicorn not ready in 180 s")


def absolute_uri(uri: str) -> str:
    """A relative ``sqlite:///path`` made absolute (the server runs from the repository root)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str((Path.cwd() / uri[len(prefix) :]).resolve())
    return uri


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = args.data or Path(tempfile.gettempdir()) / f"replay-{args.seed}-{args.buyers}"
    began = time.perf_counter()
    if not (data / "manifest.json").exists():
        print(f"simulating {args.buyers:,} buyers x {args.months} months, seed {args.seed}, into {data} ...")
        subprocess.run(
            [sys.executable, "-m", "simulator", "--buyers", str(args.buyers), "--months", str(args.months)]
            + ["--seed", str(args.seed), "--out", str(data)],
            check=True,
        )
    start, end = peak_window(data)
    if args.start:
        start = pd.Timestamp(args.start, tz="UTC")
        end = pd.Timestamp(args.end, tz="UTC") if args.end else start + pd.Timedelta(days=30)
    tracking = absolute_uri(args.tracking_uri)
    config = load_config(
        {"model_uri": args.model_uri, "mlflow_tracking_uri": tracking, "watch_interval_s": 0}
    )
    rating = load_model(config)
    names = list(rating.model.signal_names)
    policy = load_policy(args.policy, names)
    print(
        f"window {start:%Y-%m-%d} to {end:%Y-%m-%d}, model {args.model_uri} v{rating.version}, policy {policy.version}"
    )

    decisions, reports = backtest(data, start, end, rating, {"backtest": policy})
    predicted = reports["backtest"]

    tables = load_tables(data)
    events = window_events(tables, start, end, policy.currency, policy.decimals)
    signals = daily_signals(tables, events, names)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        snapshot, clock = work / "snapshot.parquet", work / "clock"
        day = events[0].snapshot_day
        rows = signals[signals["as_of"] == day]
        writer = FileWriter(snapshot, names, day.isoformat())
        writer.append(rows["buyer_id"].to_numpy(np.int64), rows[names].to_numpy(np.float32))
        writer.commit()
        key, secret = new_key(), "bench-replay-secret-0123456789"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")} | {
            "SERVING_DATABASE_URL": f"sqlite:///{work / 'ledger.db'}",
            "SERVING_MODEL_URI": args.model_uri,
            "SERVING_MLFLOW_TRACKING_URI": tracking,
            "SERVING_SNAPSHOT": str(snapshot),
            "SERVING_POLICY_PATH": str(args.policy.resolve()),
            "SERVING_REPLAY_CLOCK_FILE": str(clock),
            "SERVING_MAX_SNAPSHOT_AGE_S": "0",
            "SERVING_WATCH_INTERVAL_S": "0",
            "SERVING_API_KEY_SECRET": secret,
            "SERVING_API_KEYS": key_entry(key, secret, SCOPES),
            "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
        }
        proc, url = start_server(env, work)
        try:
            served_started = time.perf_counter()
            answers = served_replay(url, key, events, signals, names, snapshot, clock)
            served_s = time.perf_counter() - served_started
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    decide_events = [e for e in events if e.kind == "decide"]
    served = judged(
        pd.DataFrame([decision_row(e, a) for e, a in zip(decide_events, answers, strict=True)]), tables, data
    )
    served_report = report(served, legacy(served, signals, tables))
    agree = float((served["decision"].to_numpy() == decisions["backtest"]["decision"].to_numpy()).mean())

    print(render(served_report, f"\nAS SERVED ({len(answers):,} decisions over HTTP in {served_s:.0f} s)"))
    print(render(predicted, "\nBACKTEST'S PREDICTION (same window, in memory)"))
    print(f"\ndecisions equal to the backtest's: {agree:.4%}")
    summary = {}
    for service, goal in ((PRESALE, (2.0, 1.0)), ("fast_refund", (1.5, 0.5))):
        s, b = served_report[service], predicted[service]
        inside = {
            k: b["policy"][f"{k}_ci"][0] <= s["policy"][k] <= b["policy"][f"{k}_ci"][1]
            for k in ("money", "loss_per_unit")
            if f"{k}_ci" in b["policy"] and k in s["policy"]
        }
        summary[service] = {
            "money_vs_legacy": s.get("money_vs_legacy"),
            "loss_per_unit_vs_legacy": s.get("loss_per_unit_vs_legacy"),
            "goal": {"money_vs_legacy_min": goal[0], "loss_per_unit_vs_legacy_max": goal[1]},
            "inside_backtest_interval": inside,
        }
        print(
            f"{service}: as served {s.get('money_vs_legacy', float('nan')):.2f}x the legacy money at "
            f"{s.get('loss_per_unit_vs_legacy', float('nan')):.2f}x its loss per unit (goal >= {goal[0]}x at "
            f"<= {goal[1]}x); inside the backtest's 95% interval: {inside}"
        )
    approved = served[(served["service"] == PRESALE) & (served["decision"] == "approve")]
    if len(approved) and approved["p_true"].notna().all():
        weight = approved["at_risk"].to_numpy(np.float64)
        p_head = float(np.average(approved["p_loss"].astype(float), weights=weight))
        p_true = float(np.average(approved["p_true"], weights=weight))
        summary["presale_head_calibration_on_approvals"] = {
            "head": p_head,
            "truth": p_true,
            "ratio": p_head / p_true,
        }
        print(
            f"presale head on its {len(approved):,} approvals, money-weighted: p {p_head:.4f} vs the truth's "
            f"{p_true:.4f} ({p_head / p_true:.2f}x; goal 0.8-1.25x)"
        )
    print(f"total {time.perf_counter() - began:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps({"served": served_report, "backtest": predicted, "summary": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
