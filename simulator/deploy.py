"""``python -m simulator deploy``: the product in the loop, month by month after a marketplace's export.

    python -m simulator deploy --data DIR --months 12 --retrain-every 3 --out DIR2

The marketplace of ``DIR`` (its manifest: buyers, seed, start, shard size) is simulated once
for ``months + 12 + 2`` months (``DIR2/world``; the two spare months let the last decisions'
outcomes happen). The product starts at ``DIR``'s export instant with a champion trained on the
world as the platform saw it then (``DIR2/exports/m00``). Each month every presale deposit and
refund request is decided through the service's decision path (``serving.offline.backtest``: daily
snapshots as of the previous midnight, the champion and its policy, exploration with
propensities, the ledger's exposure and quotas); the outcomes the decisions imply
(``simulator.observe``) are written back to the tables and posted to the ledger as they happen.
Every ``--retrain-every`` months ``training/train.py`` retrains on the export as of that month
(``DIR2/exports/mNN``, contract-validated, no truth) and the decision log; the promotion gate
decides and a new champion brings its proposed policy. See docs/simulator.md, "The product in
the loop".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.io import load_tables, read_manifest
from features.signals_devices import SHARED_DEVICES, device_first_use, shared_devices
from features.validate import ContractError, validate
from serving.ledger.in_memory import MemoryLedger
from serving.offline.backtest import (
    Event,
    daily_signals,
    day_lives,
    decide_priced,
    event_key,
    price,
    replay,
    window_events,
)
from serving.offline.backtest_report import REPLICATES, summarise, truth_of
from serving.policy import FAST_REFUND, PRESALE
from simulator.calendar import build_calendar
from simulator.config import RunConfig
from simulator.observe import World, as_of, decide_presales, decide_refunds
from simulator.write import part_name, write_export

SPARE_MONTHS = 2  # simulated past the loop so the last decisions' outcomes happen
MODEL_NAME = "buyer-trust-rating"
EXPERIMENT = "deploy"
TRAIN_SCRIPT = Path(__file__).resolve().parent.parent / "training" / "train.py"
APPROVE = "approve"
FIRST_CHAMPION = "first-champion"  # a copy of the MLflow store holding only the first champion
SAME_FIT = "its training and validation windows are the champion's, settled before the loop: the same fit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``deploy``."""
    parser.add_argument("--data", type=Path, required=True, help="the marketplace's export (its manifest)")
    parser.add_argument("--months", type=int, default=12, help="months the product decides (default 12)")
    parser.add_argument("--retrain-every", type=int, default=3, help="retrain every N months (default 3)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--ignore-propensities",
        action="store_true",
        help="retrain naively: training/train.py --ignore-propensities (the decision log's weights unused)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=6,
        help="most passes per month to settle decisions made on signals of that month's earlier ones (default 6)",
    )
    parser.add_argument(
        "--train-arg",
        action="append",
        default=[],
        help="extra argument for training/train.py, repeatable (e.g. --train-arg=--max-buyers=5000)",
    )
    parser.add_argument(
        "--always-retrain",
        action="store_true",
        help="retrain even when the retrain would fit the champion again (same windows, all before the loop)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def world_config(manifest: dict, months: int) -> RunConfig:
    """The marketplace of ``manifest`` simulated ``months`` past its export (plus the spare months)."""
    import datetime as dt

    missing = [k for k in ("buyers", "months", "seed", "start", "shard_size") if k not in manifest]
    if missing:
        raise ValueError(f"manifest.json lacks {missing}: --data must be a simulator export")
    return RunConfig(
        buyers=int(manifest["buyers"]),
        months=int(manifest["months"]) + months + SPARE_MONTHS,
        seed=int(manifest["seed"]),
        start=dt.date.fromisoformat(manifest["start"]),
        shard_size=int(manifest["shard_size"]),
    )


def _arrow(series: pd.Series, kind: pa.DataType) -> pa.Array:
    # pyarrow reads tz-aware pandas columns through the deprecated Series.values: hand it naive UTC
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return pa.array(series.dt.tz_convert(None)).cast(kind)
    return pa.array(series, type=kind, from_pandas=True)


def write_tables(
    frames: dict[str, pd.DataFrame], cfg: RunConfig, at: pd.Timestamp, months: int, out: Path
) -> None:
    """Write an export (one part per shard, a manifest, no truth) after validating it against the contract.

    Raises:
        ContractError: The frames break the contract (nothing is written then).
    """
    problems = validate(frames, at)
    if problems:
        raise ContractError(problems)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for part in range(cfg.shards):
        lo, hi = cfg.shard_range(part)
        shards.append({"part": part, "buyer_id_min": lo, "buyer_id_max": hi})
        for spec in contract.TABLES:
            frame = frames[spec.name]
            frame = frame[(frame["buyer_id"] >= lo) & (frame["buyer_id"] <= hi)]
            (out / spec.name).mkdir(exist_ok=True)
            table = pa.Table.from_arrays(
                [_arrow(frame[f.name], f.type) for f in contract.arrow_schema(spec.name)],
                schema=contract.arrow_schema(spec.name),
            )
            pq.write_table(table, out / spec.name / part_name(part))
    manifest = {
        "exported_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start": cfg.start.isoformat(),
        "months": months,
        "buyers": cfg.buyers,
        "seed": cfg.seed,
        "shard_size": cfg.shard_size,
        "shards": shards,
        "tables": list(contract.TABLE_NAMES),
        "truth": [],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def train_command(
    export: Path, ledger_url: str | None, naive: bool, promote: str, extra: list[str]
) -> list[str]:
    """The ``training/train.py`` command of one training: with the decision log once there is one,
    ``--ignore-propensities`` when retraining naively."""
    cmd = [
        sys.executable, str(TRAIN_SCRIPT), "--data", str(export), "--promote", promote, "--cache-dir", "",
        "--no-stability", "--experiment", EXPERIMENT, "--register-name", MODEL_NAME, *extra,
    ]  # fmt: skip
    if ledger_url is not None:
        cmd += ["--decision-log", ledger_url] + (["--ignore-propensities"] if naive else [])
    return cmd


def retrain_split(export: Path, first: pd.Timestamp):
    """The windows of a retrain on ``export`` after the product's first decision at ``first``:
    validation opens at the product's first presale season when a later one is usable for the test
    window (``training.snapshots.split_validating``), so the propensities weigh validation rows
    (early stopping, calibration, the presale uplift); else the default split."""
    from training.snapshots import snapshot_dates, split_validating

    return split_validating(snapshot_dates(export), first)


def window_args(split) -> list[str]:
    """``training/train.py``'s arguments for ``split``'s windows."""
    return ["--valid-from", f"{split.valid_first.date()}", "--test-from", f"{split.test_first.date()}"]


def refits_the_champion(tracking_uri: str, split, first: pd.Timestamp) -> bool:
    """Whether a retrain with ``split`` would fit the champion again: its training and validation
    windows are the champion's, and every row they hold (opportunities decided up to a month after the
    last validation date, labels a horizon later) was settled before the product's first decision, so
    no export since holds anything else in them. The gate then keeps the champion (the same model is
    better on no yardstick): the retrain is skipped."""
    import mlflow

    from features.outcomes import HORIZON
    from training.snapshots import MONTH

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version_by_alias(MODEL_NAME, "champion").run_id)
    fitted_on = {k: v for k, v in split.params().items() if k != "test_as_of_first"}
    same = all(run.data.params.get(k) == v for k, v in fitted_on.items())
    return same and split.valid_last + MONTH + HORIZON <= first


def train(
    export: Path, tracking_uri: str, ledger_url: str | None, naive: bool, promote: str, extra: list[str]
) -> str:
    """Run ``training/train.py`` on ``export`` (``train_command``); its output (raises on failure)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    cmd = train_command(export, ledger_url, naive, promote, extra)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training on {export} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def latest_run(tracking_uri: str) -> tuple[str, str, dict[str, float]]:
    """The newest registered version (the last training, promoted or not): version, run id, metrics."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    newest = max(client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: int(v.version))
    return str(newest.version), newest.run_id, dict(client.get_run(newest.run_id).data.metrics)


def has_champion(tracking_uri: str) -> bool:
    """Whether the registry already has a champion (a rerun into the same folder reuses it)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        return False
    return True


def champion(tracking_uri: str, policies: Path) -> tuple[str, object, object]:
    """The champion's version, its loaded rating and the policy its training proposed."""
    import mlflow

    from rating.artifact import load_rating
    from serving.policy import load_policy

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    rating = load_rating(f"models:/{MODEL_NAME}/{version.version}")
    policies.mkdir(parents=True, exist_ok=True)
    path = Path(
        mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            artifact_path="policy/candidate_policy.yaml",
            dst_path=str(policies / str(version.version)),
        )
    )
    return str(version.version), rating, load_policy(path, list(rating.model.signal_names))


def decided_in(
    tables: dict[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """What ``window_events`` reads of the opportunities decided in ``[start, end)``: their presales and
    refunds and only their orders (it indexes the orders it is given, the world's are many)."""
    pre, ref = tables["presales"], tables["refunds"]
    pre = pre[(pre["deposit_paid_at"] >= start) & (pre["deposit_paid_at"] < end)]
    ref = ref[(ref["requested_at"] >= start) & (ref["requested_at"] < end)]
    orders = tables["orders"]
    ids = np.union1d(pre["order_id"].to_numpy(np.int64), ref["order_id"].to_numpy(np.int64))
    return {"presales": pre, "refunds": ref, "orders": orders[orders["order_id"].isin(ids)]}


def carried_outcomes(
    tables: dict[str, pd.DataFrame], first: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp, policy
) -> list[Event]:
    """The outcomes falling in ``[start, end)`` of the opportunities decided in ``[first, start)``.

    A month's passes change only the month's own presales and refunds (and their orders), so these
    are read once a month, not once a pass."""
    events = window_events(decided_in(tables, first, start), first, end, policy.currency, policy.decimals)
    return [e for e in events if e.kind == "outcome" and e.t >= start]


def month_events(
    tables: dict[str, pd.DataFrame], carried: list[Event], start: pd.Timestamp, end: pd.Timestamp, policy
) -> list[Event]:
    """Decisions of ``[start, end)`` with their outcomes in it, and the ``carried`` outcomes of earlier
    months' opportunities (``carried_outcomes``), in the order ``window_events`` sends them."""
    own = window_events(decided_in(tables, start, end), start, end, policy.currency, policy.decimals)
    return sorted([*carried, *own], key=event_key)


def decided(made: pd.DataFrame, service: str) -> pd.Series:
    """ref_id -> approved, for one service's decisions."""
    rows = made[made["service"] == service]
    return pd.Series((rows["decision"] == APPROVE).to_numpy(), index=rows["ref_id"].to_numpy(np.int64))


def decide_month(
    base: dict[str, pd.DataFrame],
    world: World,
    until: pd.Timestamp,
    first: pd.Timestamp,
    start: pd.Timestamp,
    end: pd.Timestamp,
    rating,
    policy,
    ledger: MemoryLedger,
    iterations: int,
) -> tuple[dict[str, pd.DataFrame], list[Event], dict, pd.DataFrame, MemoryLedger, int]:
    """Decide every opportunity of ``[start, end)`` and apply the decisions to the tables.

    A decision on day ``d`` reads the snapshot as of ``d``'s midnight, which may hold facts of
    the month's earlier decisions (a fast refund is known from its request). The month is
    decided in passes: the tables carry the previous pass's decisions, and the passes stop when
    a pass decides exactly what its tables hold (then every decision saw exactly the facts the
    earlier ones imply: the sequential answer).

    Returns:
        The tables with the month decided, its events, the days' ``Live``, the decisions
        (``decide_priced`` rows), the ledger after the month and how many decisions still
        differed from their tables' in the last pass (0 when settled).
    """
    pre, ref = base["presales"], base["refunds"]
    mine = pre[(pre["deposit_paid_at"] >= start) & (pre["deposit_paid_at"] < end)]
    ship = pd.Series(mine["shipped_before_balance"].to_numpy(bool), index=mine["order_id"].to_numpy(np.int64))
    mine = ref[(ref["requested_at"] >= start) & (ref["requested_at"] < end)]
    fast = pd.Series(mine["fast_refund"].to_numpy(bool), index=mine["refund_id"].to_numpy(np.int64))
    names = list(rating.model.signal_names)
    carried = carried_outcomes(base, first, start, end, policy)
    unsettled = 0
    for _ in range(max(iterations, 1)):
        tables = decide_refunds(decide_presales(base, world, ship, until), world, fast, until)
        events = month_events(tables, carried, start, end, policy)
        signals = daily_signals(tables, events, names)
        lives = dict(day_lives(signals, names, rating, policy))
        after = ledger.fork()
        made = decide_priced(events, price(events, lives), policy, ledger=after)
        new_ship, new_fast = decided(made, PRESALE), decided(made, FAST_REFUND)
        unsettled = int(
            (new_ship != ship.reindex(new_ship.index)).sum()
            + (new_fast != fast.reindex(new_fast.index)).sum()
        )
        ship, fast = new_ship, new_fast
        if unsettled == 0:
            break
    if unsettled:
        tables = decide_refunds(decide_presales(base, world, ship, until), world, fast, until)
    return tables, events, lives, made, after, unsettled


def loss_at(
    at_risk: np.ndarray, p_true: np.ndarray, rank: np.ndarray, weight: np.ndarray, money: np.ndarray
) -> np.ndarray:
    """Truth-expected loss of approving ``money`` of the opportunities, least ``rank`` first (the last one in part).

    Args:
        at_risk, p_true, rank: Per opportunity.
        weight: (replicates, opportunities) weights (bootstrap draws; a row of ones: the sample).
        money: (replicates,) money to approve.
    """
    order = np.argsort(rank, kind="stable")
    risk, p, w = at_risk[order], p_true[order], weight[:, order]
    cum = np.cumsum(w * risk, axis=1)
    cum_loss = np.cumsum(w * risk * p, axis=1)
    out = np.empty(len(money))
    for r in range(len(money)):
        k = int(np.searchsorted(cum[r], money[r], side="left"))
        if k >= cum.shape[1]:
            out[r] = cum_loss[r, -1] if k else 0.0
            continue
        before, before_loss = (cum[r, k - 1], cum_loss[r, k - 1]) if k else (0.0, 0.0)
        out[r] = before_loss + (money[r] - before) * p[k]
    return out


def open_to_the_model(made: pd.DataFrame) -> np.ndarray:
    """Per decision: whether the model's judgement alone decided it, so another model could have
    approved it under the same policy: approved, or declined only for ``EXPLORABLE`` reasons (the
    expected loss above the allowance, the stars below the minimum); never one a hard fact, a cap,
    an exposure limit, a quota, an evidence rule or a missing rating declined.

    A yardstick that approves the same money from these opportunities (the oracle, a truth-trained
    ceiling) compares like for like: the same policy's constraints, another ranking."""
    from serving.decide import EXPLORABLE

    only_model = [
        bool(codes) and set(codes.split(",")) <= EXPLORABLE for codes in made["declines"].fillna("")
    ]
    return (made["decision"] == APPROVE).to_numpy() | np.array(only_model, dtype=bool)


def rank_within(rank: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """``rank`` where the opportunity is open to the model, +inf elsewhere (``loss_at`` reaches those last,
    never when it approves at most the money the served decisions approved from the open ones)."""
    return np.where(open_, rank, np.inf)


def oracle_at(frame: pd.DataFrame, money: float) -> float:
    """The least truth-expected loss of approving ``money`` of the opportunities open to the model
    (``open_to_the_model``), best first by the truth."""
    p = frame["p_true"].to_numpy(np.float64)
    at_risk = frame["at_risk"].to_numpy(np.float64)
    rank = rank_within(p, open_to_the_model(frame))
    return float(loss_at(at_risk, p, rank, np.ones((1, len(p))), np.array([money]))[0])


def monthly_figures(
    decisions: pd.DataFrame, tables: dict[str, pd.DataFrame], world_dir: Path
) -> pd.DataFrame:
    """Per month and service: money approved, realised and truth-expected loss, loss per unit (95% CI), and
    the oracle's loss at the same money from the opportunities open to the model (``open_to_the_model``)."""
    from features.outcomes import presale_outcomes, refund_outcomes

    bad = {
        PRESALE: presale_outcomes(tables["presales"]).set_index("order_id")["bad"],
        FAST_REFUND: refund_outcomes(tables["refunds"]).set_index("refund_id")["bad"],
    }
    rows = []
    for service in (PRESALE, FAST_REFUND):
        d = decisions[decisions["service"] == service].copy()
        if d.empty:
            continue
        d["p_true"] = truth_of(world_dir, service, d["ref_id"])
        d["bad"] = bad[service].reindex(d["ref_id"].to_numpy()).fillna(False).to_numpy(bool)
        for month, frame in [*d.groupby("month", sort=True), ("year", d)]:
            s = summarise(frame, (frame["decision"] == APPROVE).to_numpy(), seed=0)
            floor = oracle_at(frame, s["money"])
            rows.append(
                {
                    "month": month,
                    "service": service,
                    "requests": s["requests"],
                    "approvals": s["approvals"],
                    "money": s["money"],
                    "realised_loss": s["realised_loss"],
                    "expected_loss": s["expected_loss"],
                    "loss_per_unit": s["loss_per_unit"],
                    "loss_per_unit_lo": s["loss_per_unit_ci"][0],
                    "loss_per_unit_hi": s["loss_per_unit_ci"][1],
                    "oracle_loss_same_money": floor,
                    "loss_vs_oracle": s["expected_loss"] / floor if floor > 0 else float("nan"),
                    "explored": int(((frame["decision"] == APPROVE) & (frame["propensity"] < 1.0)).sum()),
                }
            )
    return pd.DataFrame(rows)


def deploy(
    data: Path,
    out: Path,
    months: int,
    retrain_every: int,
    naive: bool,
    iterations: int = 6,
    train_args: list[str] | None = None,
    progress: Callable[[str], None] = print,
    always_retrain: bool = False,
) -> dict:
    """Run the loop; write ``out`` (see the module docstring) and return the summary written to ``out/deploy.json``."""
    from serving.ledger.engine import make_engine
    from serving.ledger.store import Ledger

    began = time.perf_counter()

    def say(message: str) -> None:
        progress(f"[{time.perf_counter() - began:7.1f} s] {message}")

    if months < 1 or retrain_every < 1:
        raise ValueError(f"--months and --retrain-every must be >= 1, got {months} and {retrain_every}")
    manifest = read_manifest(data)
    cfg = world_config(manifest, months)
    history = int(manifest["months"])
    out.mkdir(parents=True, exist_ok=True)
    world_dir = out / "world"
    if (
        read_manifest(world_dir).get("months") != cfg.months
        or read_manifest(world_dir).get("seed") != cfg.seed
    ):
        write_export(cfg, world_dir)
    say(f"world simulated: {cfg.buyers:,} buyers x {cfg.months} months ({world_dir})")
    cal = build_calendar(cfg.start, cfg.months, cfg.params)
    world = World.of(cfg, cal)
    tables = load_tables(world_dir)
    # the device index of the world: no decision moves a device or an order's time, so it holds for
    # every pass of every month (the signal builder would derive it again from the tables each pass)
    tables[SHARED_DEVICES.name] = shared_devices(device_first_use(tables))
    until = pd.Timestamp(cal.export_at, unit="s", tz="UTC")
    starts = [
        pd.Timestamp(int(t), unit="s", tz="UTC") for t in cal.month_start[history : history + months + 1]
    ]
    tracking = f"sqlite:///{(out / 'mlruns' / 'mlflow.db').resolve()}"
    ledger_url = f"sqlite:///{(out / 'ledger.db').resolve()}"
    (out / "ledger.db").unlink(missing_ok=True)
    sql = Ledger(make_engine(ledger_url, sqlite_synchronous="NORMAL"))
    sql.create()
    exports = out / "exports"
    first_export = exports / "m00"
    write_tables(as_of(tables, starts[0]), cfg, starts[0], history, first_export)
    if not has_champion(tracking):
        say(f"export as of {starts[0].date()} written; training the first champion on it ...")
        train(first_export, tracking, None, naive, "force", train_args or [])
    if not (out / FIRST_CHAMPION).exists():  # the store before any retrain: another mode starts from it
        shutil.copytree(out / "mlruns", out / FIRST_CHAMPION)
    version, rating, policy = champion(tracking, out / "policies")
    say(f"champion version {version}, policy {policy.version}")
    memory = MemoryLedger()
    all_made, retrains = [], []
    try:
        for m in range(months):
            start, end = starts[m], starts[m + 1]
            tables, events, lives, made, memory, unsettled = decide_month(
                tables, world, until, starts[0], start, end, rating, policy, memory, iterations
            )
            served = replay(events, lives, ledger=sql)
            same = served["decision"].to_numpy() == made["decision"].to_numpy() if len(made) else np.array([])
            if len(made) and not same.all():
                raise RuntimeError(
                    f"month {m + 1}: the service's handler and decide_priced disagree on {int((~same).sum())}"
                )
            made = made.assign(month=m + 1, model_version=version, policy_version=policy.version)
            all_made.append(made)
            counts = (
                made.groupby("service")["decision"]
                .agg(lambda d: f"{(d == APPROVE).sum()}/{len(d)}")
                .to_dict()
            )
            say(
                f"month {m + 1}/{months} ({start.date()}): approved {counts}"
                + (f"; {unsettled} decisions unsettled after {iterations} passes" if unsettled else "")
            )
            if (m + 1) % retrain_every == 0:
                export = exports / f"m{m + 1:02d}"
                write_tables(as_of(tables, end), cfg, end, history + m + 1, export)
                split = retrain_split(export, starts[0])
                windows = window_args(split)
                own_windows = any(
                    a.split("=")[0] in ("--valid-from", "--test-from") for a in train_args or []
                )
                if not (always_retrain or own_windows) and refits_the_champion(tracking, split, starts[0]):
                    say(f"no retrain on the export as of {end.date()}: {SAME_FIT}")
                    retrains.append(
                        {"month": m + 1, "export": str(export), "windows": windows, "skipped": SAME_FIT}
                    )
                    continue
                say(
                    f"retraining on the export as of {end.date()} and the decision log ({' '.join(windows)}) ..."
                )
                train(export, tracking, ledger_url, naive, "auto", windows + (train_args or []))
                before = version
                version, rating, policy = champion(tracking, out / "policies")
                trained, run_id, metrics = latest_run(tracking)
                retrains.append(
                    {
                        "month": m + 1,
                        "export": str(export),
                        "version": trained,
                        "run_id": run_id,
                        "windows": windows,
                        **{
                            k: metrics.get(k)
                            for k in (
                                "propensity_weighted_presales",
                                "propensity_weighted_presales_train",
                                "propensity_weighted_presales_valid",
                            )
                        },
                        "champion": version,
                        "promoted": version != before,
                    }
                )
                say(
                    f"champion version {version} ({'new' if version != before else 'kept'}), policy {policy.version}"
                )
    finally:
        sql.close()
    decisions = pd.concat(all_made, ignore_index=True)
    decisions.to_parquet(out / "decisions.parquet")
    figures = monthly_figures(decisions, tables, world_dir)
    figures.to_csv(out / "figures.csv", index=False)
    summary = {
        "data": str(data),
        "buyers": cfg.buyers,
        "months": months,
        "retrain_every": retrain_every,
        "propensities": not naive,
        "bootstrap_replicates": REPLICATES,
        "retrains": retrains,
        "seconds": round(time.perf_counter() - began, 1),
        "figures": figures.to_dict("records"),
    }
    (out / "deploy.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    say(f"done: {len(decisions):,} decisions; figures in {out / 'figures.csv'}")
    return summary


def run(args: argparse.Namespace) -> int:
    """``python -m simulator deploy``; exit code 0, 2 on bad input."""
    try:
        deploy(
            args.data,
            args.out,
            args.months,
            args.retrain_every,
            args.ignore_propensities,
            args.iterations,
            args.train_arg,
            always_retrain=args.always_retrain,
            progress=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
        )
    except (ValueError, ContractError) as exc:
        print(f"simulator deploy: {exc}", file=sys.stderr)
        return 2
    return 0
