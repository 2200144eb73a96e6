"""The product in the loop (``python -m simulator deploy``) on a short run: 2 months, one retrain.

One loop is run for the module (it trains twice, cheaply: no policy search, few boosting
rounds); each test reads what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, select

from features.io import load_tables, read_manifest
from serving.ledger.tables import DECISIONS
from serving.policy import FAST_REFUND, PRESALE
from simulator.config import RunConfig
from simulator.deploy import (
    MODEL_NAME,
    deploy,
    loss_at,
    open_to_the_model,
    rank_within,
    refits_the_champion,
    retrain_split,
    train_command,
    window_args,
)
from simulator.write import write_export

# two trainings of ~65 s CPU each (4,000 buyers is the least that trains: star 1 is 5% of the validation
# rows and needs 100 of them): ~2.5 min of CPU; 16 min wall at load ~14 here
pytestmark = pytest.mark.timeout(1800)

BUYERS, HISTORY, MONTHS, SEED = 4000, 28, 2, 7  # the loop covers May-June 2025: a presale deposit phase
# cheap, robust trainings: no whole-policy search, a short rating fit (the heads keep their own)
TRAIN_ARGS = ["--policy-days=0", '--params={"num_boost_round": 80, "early_stopping_rounds": 15}']


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("deploy")
    write_export(RunConfig(buyers=BUYERS, months=HISTORY, seed=SEED), root / "market")
    summary = deploy(
        root / "market",
        root / "out",
        MONTHS,
        MONTHS,
        naive=False,
        train_args=TRAIN_ARGS,
        progress=lambda m: None,
        always_retrain=True,  # its windows are the first champion's (see test_a_refit_of_the_champion_is_skipped)
    )
    return root / "out", summary


def test_decisions_are_the_services(run: tuple[Path, dict]) -> None:
    """Every opportunity of the loop's months is decided once, and the service's handler logged the same decision."""
    out, _ = run
    made = pd.read_parquet(out / "decisions.parquet")
    world = load_tables(out / "world", ["presales", "refunds"])
    start, end = pd.Timestamp("2025-05-01", tz="UTC"), pd.Timestamp("2025-07-01", tz="UTC")
    pre, ref = world["presales"], world["refunds"]
    expected = {
        PRESALE: set(pre.loc[(pre["deposit_paid_at"] >= start) & (pre["deposit_paid_at"] < end), "order_id"]),
        FAST_REFUND: set(ref.loc[(ref["requested_at"] >= start) & (ref["requested_at"] < end), "refund_id"]),
    }
    for service, refs in expected.items():
        assert len(refs) > 50, service
        assert set(made.loc[made["service"] == service, "ref_id"]) == refs
    d = DECISIONS.c
    with create_engine(f"sqlite:///{out / 'ledger.db'}").connect() as conn:
        logged = pd.DataFrame(conn.execute(select(d.service, d.ref_id, d.decision, d.propensity)).all())
    assert len(logged) == len(made)
    both = made.merge(logged, on=["service", "ref_id"], suffixes=("", "_log"))
    assert len(both) == len(made)
    assert (both["decision"] == both["decision_log"]).all()
    assert np.allclose(both["propensity"], both["propensity_log"].astype(float))
    assert (made["decision"] == "approve").any() and (made["decision"] == "decline").any()


def test_outcomes_follow_decisions(run: tuple[Path, dict]) -> None:
    """Held presales never ship before their balance; declined refunds are never paid at once."""
    out, _ = run
    made = pd.read_parquet(out / "decisions.parquet").set_index(["service", "ref_id"])["decision"]
    tables = load_tables(out / "exports" / f"m{MONTHS:02d}", ["presales", "orders", "refunds"])
    pre = tables["presales"].merge(tables["orders"][["order_id", "shipped_at", "canceled_at"]], on="order_id")
    pre = pre[pre["order_id"].isin(made[PRESALE].index)]
    approved = made[PRESALE].reindex(pre["order_id"]).eq("approve").to_numpy()
    assert (pre["shipped_before_balance"].to_numpy() == approved).all()
    held = pre[~approved]
    early = held["shipped_at"].notna() & (
        held["balance_paid_at"].isna() | (held["shipped_at"] < held["balance_paid_at"])
    )
    assert not early.any(), "a held presale shipped before its balance"
    ref = tables["refunds"]
    ref = ref[ref["refund_id"].isin(made[FAST_REFUND].index)]
    fast = made[FAST_REFUND].reindex(ref["refund_id"]).eq("approve").to_numpy()
    assert (ref["fast_refund"].to_numpy() == fast).all()
    at = pd.Timestamp(read_manifest(out / "exports" / f"m{MONTHS:02d}")["exported_at"])
    # paid within 2 hours, or requested within 2 hours of the export instant and paid after it
    paid_fast = (ref["refunded_at"] - ref["requested_at"] <= pd.Timedelta(hours=2)) | (
        ref["refunded_at"].isna() & (ref["requested_at"] > at - pd.Timedelta(hours=2))
    )
    normal_return = ~fast & ref["kind"].eq("return_and_refund").to_numpy()
    assert (paid_fast[fast]).all()
    assert not (ref["refunded_at"].notna() & ref["return_received_at"].isna())[normal_return].any()


def test_exports_grow_without_future_rows(run: tuple[Path, dict]) -> None:
    """Each export passes the contract, holds nothing after its instant and no truth, and grows."""
    out, _ = run
    sizes = []
    for name in ("m00", f"m{MONTHS:02d}"):
        export = out / "exports" / name
        at = pd.Timestamp(read_manifest(export)["exported_at"])
        tables = load_tables(export)  # raises ContractError on any breach
        assert not (export / "truth").exists()
        for table in ("orders", "refunds"):
            stamps = tables[table].select_dtypes("datetimetz")
            assert (stamps.max() <= at).all(), (name, table)
        sizes.append(sum(len(f) for f in tables.values()))
    assert sizes[1] > sizes[0]


def test_champion_changes_only_through_the_gate(run: tuple[Path, dict]) -> None:
    """The champion is the latest version whose run the gate promoted; the retrain is recorded."""
    out, summary = run
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlruns' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert len(versions) == 2  # the first champion and one retrain
    promoted = [
        int(v.version) for v in versions if client.get_run(v.run_id).data.tags.get("promoted") == "True"
    ]
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert int(champion.version) == max(promoted)
    assert [r["month"] for r in summary["retrains"]] == [MONTHS]
    assert summary["retrains"][0]["promoted"] == (max(promoted) == 2)
    figures = json.loads((out / "deploy.json").read_text())["figures"]
    assert {f["service"] for f in figures} == {PRESALE, FAST_REFUND}


def test_the_policy_in_force_explores(run: tuple[Path, dict]) -> None:
    """The champion's policy carries the shipped exploration: some would-be declines are approved at random,
    logged with the share as their propensity, and the figures count them."""
    out, summary = run
    made = pd.read_parquet(out / "decisions.parquet")
    explored = made[(made["decision"] == "approve") & (made["propensity"] < 1.0)]
    assert len(explored) > 0
    assert np.allclose(explored["propensity"], 0.03)
    stood = made[(made["decision"] == "decline") & (made["propensity"] < 1.0)]
    assert np.allclose(stood["propensity"], 0.97) and len(stood) > len(explored)
    figures = pd.DataFrame(summary["figures"])
    assert figures.loc[figures["month"] == "year", "explored"].sum() == len(explored)


def test_the_retrain_weighs_the_logged_propensities(run: tuple[Path, dict]) -> None:
    """The loop's retrain read the decision log: explored shipped-early presales weighed 1/propensity;
    the naive mode's command ignores them, and train.py then weighs nothing on the same log."""
    from argparse import Namespace

    from training.progress import Progress
    from training.run import weigh_by_propensity

    out, summary = run
    assert summary["retrains"][0]["propensity_weighted_presales"] > 0
    url = f"sqlite:///{out / 'ledger.db'}"
    propensity = train_command(out / "exports" / "m02", url, False, "auto", TRAIN_ARGS)
    naive = train_command(out / "exports" / "m02", url, True, "auto", TRAIN_ARGS)
    assert (
        propensity[propensity.index("--decision-log") + 1] == url
        and "--ignore-propensities" not in propensity
    )
    assert naive[naive.index("--decision-log") + 1] == url and "--ignore-propensities" in naive
    made = pd.read_parquet(out / "decisions.parquet")
    presales = made[made["service"] == PRESALE]
    rows = pd.DataFrame({"order_id": presales["ref_id"], "shipped": presales["decision"].eq("approve")})
    weighed = weigh_by_propensity(rows, Namespace(decision_log=url, ignore_propensities=False), Progress())
    assert (
        (weighed["weight"] > 1).sum()
        == ((presales["decision"] == "approve") & (presales["propensity"] < 1)).sum()
        > 0
    )
    ignored = weigh_by_propensity(rows, Namespace(decision_log=url, ignore_propensities=True), Progress())
    assert "weight" not in ignored


def test_retrains_validate_on_the_products_season_when_a_later_one_can_test() -> None:
    """The windows the loop gives each retrain of a year from May: while the export holds no presale
    season after the product's first (its outcomes take the label horizon, a test window another), the
    default split (the product's presales in the test window); from the month-9 export on, validation
    opens at the product's first season (May) and the test window is the next (October)."""
    from features.outcomes import HORIZON
    from training.snapshots import default_split, month_starts, split_validating

    first = pd.Timestamp("2025-05-01", tz="UTC")
    history = pd.Timestamp("2023-01-01", tz="UTC")
    got = {}
    for months in (3, 6, 9, 12):
        dates = month_starts(history, first + pd.DateOffset(months=months))
        split = split_validating(dates, first)
        got[months] = split
        assert (
            split.valid_first - split.train_last >= HORIZON and split.test_first - split.valid_last >= HORIZON
        )
        if months <= 6:
            assert split == default_split(dates)
    assert got[3].test_first < first and got[6].test_first == first  # the product's presales are tested
    for months in (9, 12):
        assert (got[months].valid_first, got[months].test_first) == (
            first,
            pd.Timestamp("2025-10-01", tz="UTC"),
        )


def test_a_propensity_retrain_weighs_validation_rows_and_differs_from_the_naive_one(
    run: tuple[Path, dict], tmp_path: Path
) -> None:
    """With the product's decisions in the validation window, the weights reach the rows the heads are
    fitted on: the decision log's explored shipped-early presales weigh 1 / propensity, the others 1, and
    the presale head fitted with them prices shipping early differently from the naive retrain's.

    The log is written in the service's schema for the presales of the first export's validation
    season, as the product would log history's decisions (exploration: shipped early where the legacy
    rule declines, at the shipped policy's share); ``retrain_split`` puts that season in validation
    as it does the product's own from the month-9 retrain on."""
    import uuid
    from argparse import Namespace

    from sqlalchemy import insert

    from features.registry import signals
    from serving.ledger.engine import make_engine
    from serving.ledger.store import Ledger
    from training.dataset import assemble
    from training.heads import WEIGHT, context_matrix, fit_heads
    from training.opportunities import legacy_decisions
    from training.progress import Progress
    from training.propensity import propensity_metrics
    from training.run import weigh_by_propensity
    from training.snapshots import snapshot_dates, split_validating

    out, _ = run
    export = out / "exports" / "m00"
    dates = snapshot_dates(export)
    season = pd.Timestamp("2024-05-01", tz="UTC")  # the export's last presale season but one
    split = split_validating(dates, season)
    assert split.valid_first == season
    assert window_args(retrain_split(export, season)) == [
        "--valid-from", season.date().isoformat(), "--test-from", split.test_first.date().isoformat(),
    ]  # fmt: skip
    names = [s.name for s in signals()]
    frames = assemble(export, dates, None, SEED, lambda _m: None, split)
    presales = frames[PRESALE]
    valid = presales[split.assign_instant(presales["as_of"]).to_numpy() == "valid"]
    legacy = np.asarray(legacy_decisions(PRESALE, valid), dtype=bool)
    shipped = valid["shipped"].to_numpy(bool)
    explored = shipped & ~legacy
    assert explored.sum() > 0
    share = 0.03
    propensity = np.where(legacy, 1.0, np.where(shipped, share, 1.0 - share))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    Ledger(engine).create()
    logged = [
        {
            "decision_id": str(uuid.uuid4()),
            "key_id": "k",
            "request_id": str(uuid.uuid4()),
            "fingerprint": "",
            "created_at": t.tz_convert("UTC").tz_localize(None).to_pydatetime(),
            "service": PRESALE,
            "buyer_id": int(b),
            "ref_id": int(o),
            "decision": "approve" if s else "decline",
            "requested_minor": 100_00,
            "reserved_minor": 0,
            "policy_version": "p",
            "latency_ms": 1.0,
            "propensity": float(p),
            "inputs": {},
            "outputs": {},
        }  # fmt: skip
        for t, b, o, s, p in zip(
            valid["as_of"], valid["buyer_id"], valid["order_id"], shipped, propensity, strict=True
        )
    ]
    with engine.begin() as conn:
        conn.execute(insert(DECISIONS), logged)
    engine.dispose()

    weighted = weigh_by_propensity(
        presales, Namespace(decision_log=url, ignore_propensities=False), Progress()
    )
    naive = weigh_by_propensity(presales, Namespace(decision_log=url, ignore_propensities=True), Progress())
    weight = weighted[WEIGHT].to_numpy()
    assert set(weighted.loc[weight > 1, "order_id"]) == set(valid.loc[explored, "order_id"])
    assert np.allclose(weight[weight > 1], 1 / share)
    metrics = propensity_metrics(weighted, split)
    assert metrics["propensity_weighted_presales_valid"] == explored.sum()
    assert metrics["propensity_weighted_presales_train"] == 0
    assert propensity_metrics(naive, split)["propensity_weighted_presales_valid"] == 0

    heads = {
        mode: fit_heads({**frames, PRESALE: rows}, split, names, SEED)[PRESALE]
        for mode, rows in (("propensity", weighted), ("naive", naive))
    }
    X, C = valid[names].to_numpy(np.float64), context_matrix(PRESALE, valid)
    gap = np.abs(heads["propensity"].logit(X, C) - heads["naive"].logit(X, C))
    assert gap.max() > 1e-3, "the weights changed nothing the presale head prices"


def test_loss_at_approves_least_rank_first_and_splits_the_last() -> None:
    """The money goes to the least-ranked opportunities first; the last one is approved in part; a
    replicate's weights count an opportunity that many times."""
    at_risk, p_true = np.array([10.0, 10.0, 10.0]), np.array([0.5, 0.1, 0.2])
    weight = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
    got = loss_at(at_risk, p_true, p_true, weight, np.array([15.0, 25.0, 100.0]))
    assert np.allclose(got, [10 * 0.1 + 5 * 0.2, 20 * 0.2 + 5 * 0.5, 8.0])
    assert np.allclose(loss_at(at_risk, p_true, -p_true, weight[:1], np.array([10.0])), [5.0])


def test_yardsticks_approve_only_what_the_policy_left_to_the_model() -> None:
    """Like for like: the oracle and the ceiling approve the served money from the opportunities that were
    approved or declined only for the model's judgement (expected loss, stars), never from those a cap,
    quota, hard fact or missing rating declined, however cheap the truth says they are."""
    made = pd.DataFrame(
        {
            "decision": ["approve", "decline", "decline", "decline", "decline", "approve"],
            "declines": [
                "",
                "expected_loss_above_allowance",
                "stars_below_minimum,expected_loss_above_allowance",
                "amount_above_cap",
                "expected_loss_above_allowance,quota_count_exceeded",
                "",
            ],
        }  # fmt: skip
    )
    assert open_to_the_model(made).tolist() == [True, True, True, False, False, True]
    at_risk = np.full(6, 10.0)
    p_true = np.array([0.3, 0.2, 0.1, 0.0, 0.0, 0.3])
    rank = rank_within(p_true, open_to_the_model(made))
    # 20 of money: the two cheapest open ones (0.1, 0.2), never the free ones a cap or quota declined
    assert np.allclose(loss_at(at_risk, p_true, rank, np.ones((1, 6)), np.array([20.0])), [3.0])


def test_a_forked_ledger_is_a_deep_copy() -> None:
    """A month's pass decides on ``MemoryLedger.fork()``: what the fork records never reaches the
    original, and the fork holds what ``copy.deepcopy`` would (the same next decision id included)."""
    import copy
    import datetime as dt

    from serving.ledger.in_memory import MemoryLedger
    from serving.ledger.tables import DecisionRow

    def record(ledger: MemoryLedger, ref: int, buyer: int, minute: int) -> None:
        row = DecisionRow(
            decision_id=None, key_id="k", request_id=f"r{ref}", fingerprint="",
            created_at=dt.datetime(2025, 5, 1) + dt.timedelta(minutes=minute), service=PRESALE,
            buyer_id=buyer, ref_id=ref, decision="approve", star=4, score=700, p_bad=0.01,
            requested_minor=50_00, reserved_minor=50_00, model_version=None, policy_version="p",
            latency_ms=0.0, propensity=1.0, explored_minor=3_00, inputs=None, outputs=None,
        )  # fmt: skip
        with ledger.locked(buyer) as tx:
            tx.record(row, 50_00)

    def state(ledger: MemoryLedger) -> tuple:
        return ledger.decisions, ledger.positions, ledger.outcomes, ledger._latest, ledger.explored

    original = MemoryLedger()
    record(original, 1, 7, 0)
    original.new_decision_id()
    before = copy.deepcopy(state(original))
    fork, deep = original.fork(), copy.deepcopy(original)
    for ledger in (fork, deep):
        record(ledger, 2, 7, 1)
        record(ledger, 3, 8, 2)
    assert state(fork) == state(deep) and fork.new_decision_id() == deep.new_decision_id()
    assert state(original) == before and original.new_decision_id() == "m-2"
    assert original.exposure(7) == 50_00 and fork.exposure(7) == 100_00


def test_a_refit_of_the_champion_is_skipped(run: tuple[Path, dict]) -> None:
    """The short loop's retrain has the first champion's training and validation windows, all settled
    before the loop: without ``always_retrain`` the loop would skip it, and it did fit the same model
    (the gate found every yardstick equal and kept the champion)."""
    out, summary = run
    tracking = f"sqlite:///{out / 'mlruns' / 'mlflow.db'}"
    start = pd.Timestamp("2025-05-01", tz="UTC")
    split = retrain_split(out / "exports" / f"m{MONTHS:02d}", start)
    assert not summary["retrains"][0]["promoted"]
    mlflow.set_tracking_uri(tracking)
    client = mlflow.MlflowClient()
    versions = sorted(client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: int(v.version))
    first, retrain = (client.get_run(v.run_id).data for v in versions)
    assert first.metrics["best_iteration"] == retrain.metrics["best_iteration"]
    assert first.metrics["head_presale_best_iteration"] == retrain.metrics["head_presale_best_iteration"]
    assert refits_the_champion(tracking, split, start)
    assert not refits_the_champion(tracking, split, pd.Timestamp("2024-09-01", tz="UTC"))  # labels still open
