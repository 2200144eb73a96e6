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
from simulator.deploy import MODEL_NAME, deploy, loss_at, train_command
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


def test_loss_at_approves_least_rank_first_and_splits_the_last() -> None:
    """The money goes to the least-ranked opportunities first; the last one is approved in part; a
    replicate's weights count an opportunity that many times."""
    at_risk, p_true = np.array([10.0, 10.0, 10.0]), np.array([0.5, 0.1, 0.2])
    weight = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
    got = loss_at(at_risk, p_true, p_true, weight, np.array([15.0, 25.0, 100.0]))
    assert np.allclose(got, [10 * 0.1 + 5 * 0.2, 20 * 0.2 + 5 * 0.5, 8.0])
    assert np.allclose(loss_at(at_risk, p_true, -p_true, weight[:1], np.array([10.0])), [5.0])
