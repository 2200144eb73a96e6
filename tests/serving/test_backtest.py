"""The backtest decides exactly as the service decides.

A small marketplace is simulated and a model trained on it (train.py, registered in a temporary
MLflow store). The window's opportunities are replayed twice: offline by ``serving.offline.backtest``
(in-memory ledger) and through the production server (gunicorn, SQLite), with the snapshot
republished each day and the server's replay clock set to each event's instant. The decisions
must be the same, one by one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from serving.live import load_model
from serving.offline.backtest import backtest, daily_signals, served_replay, window_events
from serving.policy import load_policy
from serving.publish.snapshot import FileWriter
from simulator.config import RunConfig
from simulator.write import write_export
from tests.serving.conftest import API_KEY
from training import train

NAME = "backtest-test"
FAST = json.dumps({"num_boost_round": 60, "learning_rate": 0.1, "min_data_in_leaf": 50})
SHIPPED_POLICY = Path(__file__).parents[2] / "serving" / "policy.yaml"


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("market")
    write_export(RunConfig(buyers=4000, months=24, seed=5), out)
    return out


@pytest.fixture(scope="module")
def trained(market, tmp_path_factory):
    """(model URI, tracking URI, loaded rating) of a model train.py registered as champion."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlruns')}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        args = ["--data", str(market), "--register-name", NAME, "--experiment", "backtest"]
        args += ["--policy-days", "0"]  # the search is tested with train.py's own tests
        assert train.main([*args, "--cache-dir", "", "--params", FAST, "--promote", "force"]) == 0
        from serving.config import load_config

        config = load_config({"model_uri": f"models:/{NAME}@champion", "mlflow_tracking_uri": uri})
        yield config.model_uri, uri, load_model(config)


@pytest.fixture(scope="module")
def window(market) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The 60 days around the marketplace's last presale peak."""
    deposits = pd.read_parquet(market / "presales")["deposit_paid_at"]
    recent = deposits[deposits > deposits.max() - pd.Timedelta(days=200)]
    peak = recent.dt.floor("D").value_counts().idxmax()
    return peak - pd.Timedelta(days=45), peak + pd.Timedelta(days=15)


def test_backtest_prints_the_policy_beside_the_legacy_rule(market, trained, window, tmp_path, capsys):
    from serving.__main__ import main

    model_uri, tracking, _ = trained
    out = tmp_path / "report.json"
    start, end = (f"{t:%Y-%m-%d}" for t in window)
    args = ["backtest", "--data", str(market), "--from", start, "--to", end, "--model-uri", model_uri]
    assert main([*args, "--tracking-uri", tracking, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "presale_ship_before_balance" in printed and "legacy" in printed
    report = json.loads(out.read_text())["policy in force"]
    for service in ("presale_ship_before_balance", "fast_refund"):
        figures = report[service]
        assert figures["policy"]["requests"] == figures["legacy"]["requests"] > 100
        assert 0 < figures["policy"]["approvals"] < figures["policy"]["requests"]
        assert (
            figures["policy"]["money_ci"][0] <= figures["policy"]["money"] <= figures["policy"]["money_ci"][1]
        )
        bands = sum(b["requests"] for b in figures["bands"].values())
        assert bands == figures["policy"]["requests"]


def test_bad_window_exits_2(market, trained, capsys):
    from serving.__main__ import main

    model_uri, tracking, _ = trained
    args = ["backtest", "--data", str(market), "--from", "2024-05-01", "--to", "2024-04-01"]
    assert main([*args, "--model-uri", model_uri, "--tracking-uri", tracking]) == 2
    assert "--to 2024-04-01 is not after --from 2024-05-01" in capsys.readouterr().err


def test_the_service_decides_as_the_backtest(market, trained, window, tmp_path, gunicorn_server):
    model_uri, tracking, rating = trained
    policy = load_policy(SHIPPED_POLICY, rating.model.signal_names)
    decisions, _ = backtest(market, *window, rating, {"shipped": policy}, progress=lambda _: None)
    offline = decisions["shipped"]
    assert len(offline) >= 2000

    from features.io import load_tables

    tables = load_tables(market)
    events = window_events(tables, *window, policy.currency, policy.decimals)
    names = list(rating.model.signal_names)
    signals = daily_signals(tables, events, names)
    snapshot, clock = tmp_path / "snapshot.parquet", tmp_path / "clock"
    served_replay_first_day(snapshot, signals, names, events)
    url = gunicorn_server(
        workers=1,
        model_uri=model_uri,
        mlflow_tracking_uri=tracking,
        snapshot=str(snapshot),
        policy_path=str(SHIPPED_POLICY),
        replay_clock_file=str(clock),
        max_snapshot_age_s=0,
        watch_interval_s=0,
    )
    served = served_replay(url, API_KEY, events, signals, names, snapshot, clock)
    assert len(served) == len(offline)
    for answer, (_, row) in zip(served, offline.iterrows(), strict=True):
        assert (answer["decision"], answer["star"]) == (row["decision"], row["star"]), answer
        assert answer["expected_loss"] == row["expected_loss"]
        first = answer["declines"][0]["code"] if answer["declines"] else None
        assert first == (None if pd.isna(row["first_decline"]) else row["first_decline"])


def served_replay_first_day(snapshot: Path, signals: pd.DataFrame, names: list[str], events) -> None:
    """A snapshot for the server to start on (the replay republishes it each day)."""
    day = events[0].snapshot_day
    rows = signals[signals["as_of"] == day]
    writer = FileWriter(snapshot, names, day.isoformat())
    writer.append(rows["buyer_id"].to_numpy(), rows[names].to_numpy("float32"))
    writer.commit()


def _policies(tmp_path: Path, names) -> tuple[Path, Path]:
    """The shipped policy exploring 30% of would-be presale declines, and one with 3x its allowance."""
    import copy

    import yaml

    base = yaml.safe_load(SHIPPED_POLICY.read_text())
    exploring = copy.deepcopy(base)
    exploring["version"] = "exploring"
    exploring["services"]["presale_ship_before_balance"]["exploration"] = {
        "share": 0.3,
        "monthly_loss_budget": 10**7,
        "seed": 1,
    }
    looser = copy.deepcopy(base)
    looser["version"] = "looser"
    allowance = looser["services"]["presale_ship_before_balance"]["expected_loss_allowance"]
    looser["services"]["presale_ship_before_balance"]["expected_loss_allowance"] = {
        star: min(3 * share, 1.0) for star, share in allowance.items()
    }
    paths = tmp_path / "exploring.yaml", tmp_path / "looser.yaml"
    for path, doc in zip(paths, (exploring, looser), strict=True):
        path.write_text(yaml.safe_dump(doc))
        load_policy(path, names)
    return paths


def test_off_policy_estimates_of_a_looser_policy_cover_the_truth(market, trained, window, tmp_path):
    """The log of an exploring policy values a looser one: outcomes of its approvals drawn from the truth."""
    import numpy as np

    from serving.offline.ope import estimate

    _, _, rating = trained
    names = rating.model.signal_names
    exploring, looser = (load_policy(p, names) for p in _policies(tmp_path, names))
    made, _ = backtest(
        market, *window, rating, {"log": exploring, "candidate": looser}, progress=lambda _: None
    )
    presale = {k: v[v["service"] == "presale_ship_before_balance"].reset_index() for k, v in made.items()}
    log, candidate = presale["log"], presale["candidate"]["decision"].eq("approve").to_numpy()
    assert (log["propensity"] < 1).sum() > 200, "exploration drew on the would-be declines"
    rng = np.random.default_rng(0)
    approved = log["decision"].eq("approve").to_numpy()
    frame = pd.DataFrame(
        {
            "buyer_id": log["buyer_id"],
            "approved": approved,
            "propensity": log["propensity"],
            "at_risk": log["at_risk"],
            "head_loss": log["expected_loss"],
            "loss": np.where(approved & (rng.uniform(size=len(log)) < log["p_true"]), log["at_risk"], 0.0),
        }
    )
    truth = float((log["p_true"] * log["at_risk"])[candidate].sum())
    out = estimate(frame, candidate)
    assert out["unsupported"] < 0.05 * candidate.sum()
    for name in ("snips", "dr"):
        lo, hi = out[f"{name}_ci"]
        assert lo <= truth <= hi, (name, out, truth)


def test_backtest_log_estimates_a_candidate_from_the_service_ledger(
    market, trained, window, tmp_path, capsys
):
    from features.io import load_tables
    from serving.__main__ import main
    from serving.ledger.store import Ledger, make_engine
    from serving.offline.backtest import day_lives, replay

    _, _, rating = trained
    names = list(rating.model.signal_names)
    exploring_path, looser_path = _policies(tmp_path, names)
    exploring = load_policy(exploring_path, names)
    tables = load_tables(market)
    events = window_events(tables, *window, exploring.currency, exploring.decimals)
    lives = dict(day_lives(daily_signals(tables, events, names), names, rating, exploring))
    url = f"sqlite:///{tmp_path / 'log.db'}"
    ledger = Ledger(make_engine(url))
    try:
        made = replay(events, lives, ledger=ledger)
    finally:
        ledger.close()
    assert main(["backtest", "--log", "--database-url", url, "--policy", str(looser_path)]) == 0
    printed = capsys.readouterr().out
    presale = made[made["service"] == "presale_ship_before_balance"]
    assert f"presale_ship_before_balance: {len(presale):,} logged decisions" in printed
    assert "loss DR" in printed and "loss SNIPS" in printed


def test_a_priced_window_decides_as_the_replay(market, trained, window):
    """What a policy search runs per candidate equals the handler's replay, decision by decision."""
    from features.io import load_tables
    from serving.offline.backtest import day_lives, decide_priced, price, replay

    _, _, rating = trained
    names = list(rating.model.signal_names)
    policy = load_policy(SHIPPED_POLICY, names)
    tables = load_tables(market)
    events = window_events(tables, *window, policy.currency, policy.decimals)
    lives = dict(day_lives(daily_signals(tables, events, names), names, rating, policy))
    slow = replay(events, lives)
    fast = decide_priced(events, price(events, lives), policy)
    assert (fast["decision"].to_numpy() == slow["decision"].to_numpy()).all()
    assert (fast["ref_id"].to_numpy() == slow["ref_id"].to_numpy()).all()


def test_a_window_decided_by_star_groups_decides_as_the_whole_window(market, trained, window):
    """What the policy search runs per candidate (``Banded``: a group of buyers decided again only when the
    candidate changes what its decisions read) equals ``decide_priced`` on a new ledger, row for row, for
    every candidate of a search-like sequence: one star's limits moved per service, a star opened below
    ``min_stars``, the evidence threshold moved (read through each refund's evidence), back to the start
    (reused), and with exploration (the whole window: its budget is shared by every buyer)."""
    import yaml

    from features.io import load_tables
    from serving.config import ServingConfig
    from serving.offline.backtest import Banded, day_lives, decide_priced, prepare, price
    from serving.offline.policy_search import with_settings, without_exploration
    from serving.policy import FAST_REFUND, PRESALE, parse_policy

    _, _, rating = trained
    names = list(rating.model.signal_names)
    raw = yaml.safe_load(SHIPPED_POLICY.read_text())
    start = parse_policy(raw, names)
    tables = load_tables(market)
    events = window_events(tables, *window, start.currency, start.decimals)
    priced = price(events, dict(day_lives(daily_signals(tables, events, names), names, rating, start)))
    own, _ = without_exploration(raw)

    def limits(service: str) -> dict:
        rules = own["services"][service]
        keys = ("expected_loss_allowance", "amount_cap") + (
            ("quota_amount",) if service == FAST_REFUND else ()
        )
        return {key: {int(s): float(v) for s, v in rules[key].items()} for key in keys}

    candidates = [
        own,
        with_settings(own, PRESALE, _moved(limits(PRESALE), "amount_cap", 4, 0.5)),
        with_settings(own, PRESALE, _moved(limits(PRESALE), "expected_loss_allowance", 3, 0.3)),
        with_settings(own, PRESALE, _moved(limits(PRESALE), "amount_cap", 5, 0.6)),
        with_settings(own, FAST_REFUND, _moved(limits(FAST_REFUND), "quota_amount", 1, 0.3)),
        with_settings(own, FAST_REFUND, _moved(limits(FAST_REFUND), "expected_loss_allowance", 1, 0.3)),
        with_settings(own, PRESALE, _opened(limits(PRESALE))),
        with_settings(own, FAST_REFUND, limits(FAST_REFUND), evidence=50.0),
        with_settings(own, FAST_REFUND, limits(FAST_REFUND), evidence=900.0),
        own,
        raw,
    ]
    banded = Banded(events, priced, prepare(events, ServingConfig(watch_interval_s=0), start.decimals))
    approvals = set()
    for doc in candidates:
        policy = parse_policy(doc, names)
        made = banded.decide(policy)
        pd.testing.assert_frame_equal(made, decide_priced(events, priced, policy), check_exact=True)
        approvals.add(tuple(made["decision"]))
    assert len(approvals) >= 6, "the candidates decide differently from one another"
    assert not banded.shared
    assert banded.decided < len(candidates) * len(priced), "groups were reused"


def _moved(limits: dict, key: str, star: int, scale: float) -> dict:
    table = dict(limits[key])
    table[star] *= scale
    return limits | {key: table}


def _opened(limits: dict) -> dict:
    """The limits with the star below the lowest one opened at its limits."""
    lowest = min(limits["amount_cap"])
    return {key: {lowest - 1: table[lowest], **table} for key, table in limits.items()}


def test_the_proposed_policy_keeps_its_target_and_the_service_reads_it(market, trained, window, tmp_path):
    import yaml

    from serving.__main__ import main

    model_uri, tracking, rating = trained
    out, curve = tmp_path / "candidate.yaml", tmp_path / "curve.csv"
    start, end = (f"{t:%Y-%m-%d}" for t in window)
    args = ["propose", "--data", str(market), "--from", start, "--to", end, "--out", str(out)]
    args += [
        "--model-uri",
        model_uri,
        "--tracking-uri",
        tracking,
        "--curve",
        str(curve),
        "--target-presale",
        "0.02",
    ]
    assert main([*args, "--target-refund", "0.05", "--version", "proposed-1"]) == 0
    proposed = load_policy(out, rating.model.signal_names)  # the service's own parser
    assert proposed.version == "proposed-1"
    tried = pd.read_csv(curve)
    chosen = yaml.safe_load(out.read_text())["services"]["presale_ship_before_balance"]
    presale = tried[tried["service"] == "presale_ship_before_balance"]
    feasible = presale[presale["feasible"]]
    assert (feasible["upper"] <= 0.02).all() and not feasible.empty
    best = feasible.loc[feasible["money"].idxmax()]
    assert chosen["expected_loss_allowance"][5] == pytest.approx(best["allowance_5"], rel=1e-5)
