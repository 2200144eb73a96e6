"""The product in the loop for a simulated year: wall time, and served loss beside a truth-trained ceiling, two retrain modes.

    python bench/bench_deploy.py --buyers 20000 --months 12 --retrain-every 3 --out /tmp/bench_deploy

Simulates the marketplace (``--history`` months), then runs ``python -m simulator deploy`` twice
from the same start: retraining with the decision log's propensities, and naively
(``--ignore-propensities``). The first champion is trained once and shared (its MLflow store is
copied into the naive run's folder before it starts). ``--train-arg`` goes to every training
(default ``--policy-days=0``: the allowance proposal, no whole-policy search).

The ceiling is ``bench/bench_ceiling.py``'s "truth-trained" model (its function): per service a
LightGBM with the heads' parameters and design, fitted by cross-entropy on the truth's probability
of the loss an approval adds, on the training and validation windows before the loop (the default
split with the test window opening at the loop's first month), of the propensity run's last export
with the world's truth beside it. Each loop month's opportunities get the ceiling's probability from
the snapshot their head would have used. Like for like: the ceiling (and the oracle) approve the money
the served decisions approved, best first by their probability, from the opportunities the same policy
left to the model's judgement (``simulator.deploy.open_to_the_model``: approved, or declined only for
the expected loss or the stars; not those a hard fact, cap, exposure limit, quota or evidence rule
declined), and their loss is the truth's expected loss of those approvals. Only the ranking differs.

Prints the wall time of each loop with the machine's load, then per mode, month and service: money
approved, the served decisions' truth-expected loss per unit, the ceiling's at the same money, their
ratio (served / ceiling; the goal is at most 1.10) with a 95% bootstrap interval over buyers, and
the ratio to the oracle (the truth itself) at the same money. The product approves most of the open
refunds, where any ranking approves nearly the same ones; so beside it, the rankings alone at a fixed
volume (``FIXED_SHARE`` of the served money, from the same open opportunities): the head's ranking (the
served ``p_loss``) against the ceiling's, loss over loss, with its interval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.config import RunConfig
from simulator.deploy import APPROVE, FIRST_CHAMPION, deploy, loss_at, open_to_the_model, rank_within
from simulator.write import write_export

REPLICATES = 400
FIXED_SHARE = 0.5
"""The rankings' yardstick at a fixed volume: the head's ranking (the served ``p_loss``) and the ceiling's,
each approving this share of the money the served decisions approved, from the same open opportunities."""


def ceiling_probabilities(world: Path, export: Path, loop_start: pd.Timestamp, seed: int, work: Path) -> dict:
    """Per service: ``ref_id`` -> the truth-trained ceiling's probability, for the opportunities from ``loop_start``.

    ``export`` (contract tables as the product left them) is read with ``world``'s truth beside it
    (a folder of links in ``work``); see the module docstring.
    """
    from bench.ceiling import CEILINGS, approval_design
    from features.io import read_manifest
    from features.registry import signals
    from training.dataset import assemble
    from training.evaluation.truth import opportunity_truth
    from training.heads import CONTEXT, fit_model
    from training.opportunities import KEYS, SERVICES
    from training.progress import Progress
    from training.snapshots import default_split, snapshot_dates

    data = work / "ceiling_data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    for item in export.iterdir():
        (data / item.name).symlink_to(item.resolve())
    (data / "truth").symlink_to((world / "truth").resolve())
    names = [s.name for s in signals()]
    usable = snapshot_dates(data)
    split = default_split(usable, test_first=loop_start)
    fitting = assemble(data, [d for d in usable if d <= split.valid_last], None, seed, Progress(), split)
    # every month start of the loop, also those whose label window is not over (only signals are needed)
    loop = pd.date_range(
        loop_start, pd.Timestamp(read_manifest(data)["exported_at"]), freq="MS", inclusive="left"
    )
    evaluation = assemble(data, list(loop), None, seed, Progress(), split)
    out = {}
    for service in SERVICES:
        windows = {w: split.opportunities_in(fitting[service], w) for w in ("train", "valid")}
        test = split.opportunities_in(evaluation[service], "test")
        truth = {w: opportunity_truth(data, service, rows) for w, rows in windows.items()}
        X = {w: approval_design(service, rows, names) for w, rows in windows.items()}
        booster = fit_model(
            X["train"], truth["train"], X["valid"], truth["valid"], names + list(CONTEXT[service]), seed,
            lambda _m: None, service, {**CEILINGS["truth-trained"], "objective": "cross_entropy"},
        )  # fmt: skip
        p = booster.predict(approval_design(service, test, names), num_threads=2)
        out[service] = pd.Series(p, index=test[KEYS[service]].to_numpy(np.int64)).groupby(level=0).first()
        print(
            f"ceiling {service}: {len(windows['train']):,} training opportunities, {booster.best_iteration} trees, "
            f"{len(test):,} loop opportunities priced"
        )
    return out


def versus_ceiling(frame: pd.DataFrame, seed: int) -> dict:
    """Money, served and ceiling loss per unit, and served / ceiling and / oracle with 95% intervals (buyers resampled)."""
    at_risk = frame["at_risk"].to_numpy(np.float64)
    p_true = frame["p_true"].to_numpy(np.float64)
    served = (frame["decision"] == APPROVE).to_numpy() * at_risk
    ids, inverse = np.unique(frame["buyer_id"].to_numpy(), return_inverse=True)
    draws = np.random.default_rng(seed).poisson(1.0, size=(REPLICATES, len(ids))).astype(np.float64)
    weight = np.vstack([np.ones(len(frame)), draws[:, inverse]])  # row 0: the sample itself
    money = weight @ served
    loss = weight @ (served * p_true)
    open_ = open_to_the_model(frame)
    ceiling = loss_at(
        at_risk, p_true, rank_within(frame["p_ceiling"].to_numpy(np.float64), open_), weight, money
    )
    oracle = loss_at(at_risk, p_true, rank_within(p_true, open_), weight, money)
    ok = (ceiling > 0) & (oracle > 0)
    to_ceiling = np.divide(loss, ceiling, out=np.full(len(loss), np.nan), where=ok)
    to_oracle = np.divide(loss, oracle, out=np.full(len(loss), np.nan), where=ok)
    # the rankings alone at a fixed share of that money: near full approval of the open
    # opportunities any ranking approves the same ones, and served / ceiling reads 1 by construction
    fixed = FIXED_SHARE * money
    head_fixed = loss_at(
        at_risk, p_true, rank_within(frame["p_loss"].to_numpy(np.float64), open_), weight, fixed
    )
    ceiling_fixed = loss_at(
        at_risk, p_true, rank_within(frame["p_ceiling"].to_numpy(np.float64), open_), weight, fixed
    )
    head_to_ceiling = np.divide(
        head_fixed, ceiling_fixed, out=np.full(len(loss), np.nan), where=ceiling_fixed > 0
    )

    def ci(x: np.ndarray) -> str:
        lo, hi = np.nanpercentile(x[1:], [2.5, 97.5]) if np.isfinite(x[1:]).any() else (np.nan, np.nan)
        return f"{x[0]:.3f} [{lo:.3f}, {hi:.3f}]"

    return {
        "opportunities": len(frame),
        "open": int(open_.sum()),
        "approvals": int((served > 0).sum()),
        "explored": int(((frame["decision"] == APPROVE) & (frame["propensity"] < 1.0)).sum()),
        "money": money[0],
        "served_loss_per_unit": loss[0] / money[0] if money[0] else np.nan,
        "ceiling_loss_per_unit": ceiling[0] / money[0] if money[0] else np.nan,
        "served/ceiling": ci(to_ceiling),
        "served/oracle": ci(to_oracle),
        "open_money_share": money[0] / at_risk[open_].sum() if open_.any() else np.nan,
        f"head/ceiling at {FIXED_SHARE:g}x": ci(head_to_ceiling),
    }


def served_decisions(folder: Path, loop_start: pd.Timestamp) -> pd.DataFrame:
    """A loop's decisions: ``decisions.parquet``, or, for a loop stopped before its end, the months
    its ledger logged (the service's handler logs every decision, as ``decide_priced`` made it).
    """
    if (folder / "decisions.parquet").exists():
        return pd.read_parquet(folder / "decisions.parquet")
    from sqlalchemy import create_engine, select

    from serving.ledger.tables import DECISIONS
    from serving.money import currency_decimals

    d = DECISIONS.c
    query = select(
        d.service, d.ref_id, d.buyer_id, d.decision, d.propensity, d.requested_minor, d.created_at, d.outputs
    )
    with create_engine(f"sqlite:///{folder / 'ledger.db'}").connect() as conn:
        made = pd.DataFrame(conn.execute(query).all())
    answers = [json.loads(o) if isinstance(o, str) else o for o in made.pop("outputs")]
    made["declines"] = [",".join(x["code"] for x in a.get("declines") or ()) for a in answers]
    made["p_loss"] = pd.to_numeric(pd.Series([a.get("p_loss") for a in answers], dtype=object))
    t = pd.to_datetime(made["created_at"]).dt.tz_localize("UTC")
    first = loop_start.tz_convert("UTC")
    made["month"] = (t.dt.year - first.year) * 12 + (t.dt.month - first.month) + 1
    made["at_risk"] = made["requested_minor"] / 10 ** currency_decimals("CNY")
    print(
        f"{folder.name}: no decisions.parquet (stopped early); {len(made):,} decisions of months 1-{made['month'].max()} from its ledger"
    )
    return made


def compare(out: Path, mode: str, ceiling: dict, loop_start: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Per month and service (and the whole loop), ``versus_ceiling`` of one mode's served decisions."""
    from serving.offline.backtest_report import truth_of

    made = served_decisions(out / mode, loop_start)
    rows = []
    for service, p in ceiling.items():
        d = made[made["service"] == service].copy()
        d["p_true"] = truth_of(out / mode / "world", service, d["ref_id"])
        d["p_ceiling"] = p.reindex(d["ref_id"].to_numpy(np.int64)).to_numpy()
        priced = d[d["p_ceiling"].notna()]
        for month, frame in [*priced.groupby("month", sort=True), ("all", priced)]:
            covered = len(frame) / max(1, len(d) if month == "all" else (d["month"] == month).sum())
            rows.append(
                {"mode": mode, "month": month, "service": service, "covered": f"{covered:.0%}"}
                | versus_ceiling(frame, seed)
            )
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--buyers", type=int, default=20_000)
    p.add_argument(
        "--history", type=int, default=28, help="months before the loop (default 28: it starts in May)"
    )
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--retrain-every", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--train-arg",
        action="append",
        default=None,
        help="argument for every training/train.py run, repeatable (default --policy-days=0)",
    )
    p.add_argument(
        "--naive", action=argparse.BooleanOptionalAction, default=True, help="also run the naive retrain"
    )
    p.add_argument(
        "--compare-only",
        action="store_true",
        help="run no loop: compare the loops already in --out (a stopped one through the months its ledger logged)",
    )
    args = p.parse_args()
    train_args = ["--policy-days=0"] if args.train_arg is None else args.train_arg

    market = args.out / "market"
    if not (market / "manifest.json").exists():
        write_export(RunConfig(buyers=args.buyers, months=args.history, seed=args.seed), market)
    modes = {"propensity": False, **({"naive": True} if args.naive else {})}
    for mode, naive in modes.items() if not args.compare_only else ():
        out = args.out / mode
        if naive and not (out / "mlruns").exists():  # share the first champion and the world
            out.mkdir(parents=True, exist_ok=True)
            shutil.copytree(args.out / "propensity" / FIRST_CHAMPION, out / "mlruns")
            shutil.copytree(args.out / "propensity" / "world", out / "world")
        if (out / "deploy.json").exists():  # a finished loop is reused: rerun by removing its folder
            summary = json.loads((out / "deploy.json").read_text())
            load, wall = float("nan"), summary["seconds"]
        else:
            load = os.getloadavg()[0]
            began = time.perf_counter()
            summary = deploy(
                market, out, args.months, args.retrain_every, naive, train_args=train_args, progress=print
            )
            wall = time.perf_counter() - began
        print(
            f"{mode}: {args.buyers:,} buyers, {args.months} months, retrain every {args.retrain_every} "
            f"({len(summary['retrains'])} retrains: "
            + ", ".join(
                f"month {r['month']} skipped (the same fit as the champion)"
                if "skipped" in r
                else f"month {r['month']} v{r['version']} {'promoted' if r['promoted'] else 'kept the champion'}, "
                f"{r['propensity_weighted_presales_valid'] or 0:.0f} weighted presales in validation"
                for r in summary["retrains"]
            )
            + f"), {wall:.0f} s wall on {os.cpu_count()} cores, load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
        )
    began = time.perf_counter()
    exports = sorted((args.out / "propensity" / "exports").iterdir())
    loop_start = pd.Timestamp(json.loads((exports[0] / "manifest.json").read_text())["exported_at"])
    cached = args.out / f"ceiling-{exports[-1].name}.parquet"  # the ceiling of that export, once fitted
    if cached.exists():
        kept = pd.read_parquet(cached)
        ceiling = {s: f.set_index("ref_id")["p"] for s, f in kept.groupby("service")}
    else:
        ceiling = ceiling_probabilities(
            args.out / "propensity" / "world", exports[-1], loop_start, args.seed, args.out
        )
        pd.concat(
            [pd.DataFrame({"service": s, "ref_id": p.index, "p": p.to_numpy()}) for s, p in ceiling.items()]
        ).to_parquet(cached)
    table = pd.concat(
        [compare(args.out, mode, ceiling, loop_start, args.seed) for mode in modes], ignore_index=True
    )
    print(f"ceiling fitted and compared in {time.perf_counter() - began:.0f} s")
    with pd.option_context(
        "display.width", 250, "display.max_rows", 500, "display.float_format", "{:,.4f}".format
    ):
        for service, frame in table.groupby("service", sort=False):
            print(f"\n{service}")
            print(frame.drop(columns="service").to_string(index=False))
    table.to_csv(args.out / "versus_ceiling.csv", index=False)


if __name__ == "__main__":
    main()
