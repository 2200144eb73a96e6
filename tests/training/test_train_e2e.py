"""End to end: train.py on a small simulated marketplace, MLflow run, registry aliases, artifact."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from features.registry import signals
from rating.artifact import load_rating
from simulator.config import RunConfig
from simulator.write import write_export
from training import run as pipeline
from training import train
from training.evaluation.report import FIXED_METRICS
from training.evaluation.skew import SKEW_GOAL, busiest_days, measure, opportunity_rows, trained_probability
from training.opportunities import PRESALE
from training.snapshots import default_split, snapshot_dates

# A hang guard, not a speed limit: a training run here takes 1-5 minutes, the suite's 300 s
# per test is not enough on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1800)
NAME = "trust-test"
FAST = json.dumps({"num_boost_round": 80, "learning_rate": 0.1, "min_data_in_leaf": 50})
# Signals that record a buyer failing to pay or to return goods: more of them may never raise the star.
WORSENING = [
    s.name
    for s in signals()
    if s.name.startswith(("balances_late_count", "balances_unpaid_7d_count", "returns_not_shipped_count"))
]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    write_export(RunConfig(buyers=4000, months=24, seed=3), out)
    return out


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


def run_train(market, *extra: str) -> int:
    return train.main(
        [
            "--data",
            str(market),
            "--register-name",
            NAME,
            "--experiment",
            "e2e",
            "--cache-dir",
            "",
            "--params",
            FAST,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def first_run(market, tracking):
    assert run_train(market) == 0
    return MlflowClient(tracking)


def test_first_run_is_logged_registered_and_becomes_champion(first_run, tracking, capsys):
    client = first_run
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "1"
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    with_intervals = list(FIXED_METRICS)
    assert len(with_intervals) == 8 and "presale_loss_ratio_at_rule_volume" in with_intervals
    for metric in (
        "test_auc",
        "test_ks",
        "test_brier",
        "scorecard_auc",
        "psi_score_train_test",
        "oracle_auc",
        "star5_bad_rate",
        "buyers_above_cap",
        "test_presale_opportunities",
        "test_refund_opportunities",
        "test_buyers",
        "presale_rule_share_opportunities",
        "presale_rule_share_volume",
        "refund_rule_share_opportunities",
        "refund_rule_share_volume",
        "refund_high_risk_loss_share_at_rule_volume",
        "refund_rule_high_risk_loss_share",
        "reason_only_refund_loss_ratio_at_rule_volume",
        "stars_monotone_per_opportunity",
        *(
            f"star{s}_bad_rate_per_opportunity{end}"
            for s in range(1, 6)
            for end in ("", "_ci_low", "_ci_high")
        ),
        "honest_reliable_activity_fifths_ratio",
        "honest_reliable_activity_fifths_ratio_truth",
        "reason_stability",
        "reason_stability_identical",
        "rating_auc_per_opportunity",
        *with_intervals,
        *(f"{m}_ci_{side}" for m in with_intervals for side in ("low", "high")),
    ):
        assert metric in run.data.metrics, metric
    m = run.data.metrics
    for name in with_intervals:
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"], name
    assert 0 < m["rating_auc_ratio_to_oracle"] < 1.05
    assert m["test_presale_opportunities"] > 100 and m["test_refund_opportunities"] > 100
    params = run.data.params
    assert (
        params["train_as_of_last"]
        < params["valid_as_of_first"]
        <= params["valid_as_of_last"]
        < params["test_as_of_first"]
    )
    gap = pd.Timestamp(params["valid_as_of_first"]) - pd.Timestamp(params["train_as_of_last"])
    assert gap >= pd.Timedelta(days=90)
    assert run.info.artifact_uri.startswith(tracking.rsplit("/", 1)[0].replace("sqlite:///", "file://"))
    # the rating estimates bad outcomes per opportunity; on the per-buyer label bad_90d, which rises with
    # activity, it ranks less well by design (0.68 on this 4,000-buyer market, 0.76 on the default one)
    assert run.data.metrics["test_auc"] > 0.65
    assert run.data.metrics["rating_auc_per_opportunity"] > 0.65
    assert run.data.metrics["stars_monotone"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/roc.png",
        "evaluation/calibration.png",
        "evaluation/bad_rate_per_star.png",
        "evaluation/loss_volume_presale_ship_before_balance.png",
        "evaluation/loss_volume_fast_refund.png",
        "evaluation/yardsticks_fast_refund.csv",
    } <= artifacts
    assert "signals.md" in {a.path for a in client.list_artifacts(run.info.run_id)}
    for name in ("review_head_at_flag_caught", "review_head_at_q10_caught", "review_head_at_q10_honest_held",
                 "review_head_vs_truth_at_flag", "review_hold_above", "head_review_best_iteration"):  # fmt: skip
        assert name in m, name
    assert 0 <= m["review_head_at_q10_caught_ci_low"] <= m["review_head_at_q10_caught"] <= 1
    candidate = yaml.safe_load(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="policy/candidate_policy.yaml"
            )
        ).read_text()
    )
    assert candidate["reviews"]["hold_above"] == pytest.approx(m["review_hold_above"], rel=1e-5)


def test_pyfunc_of_the_registered_version_agrees_with_the_booster(first_run, market, tmp_path):
    rating = load_rating(f"models:/{NAME}@champion")
    model = rating.model
    assert rating.version == "1"
    assert sorted(model.heads) == ["fast_refund", "presale_ship_before_balance"]
    assert model.review_head is not None and model.review_head.signal_names == model.signal_names
    assert model.caps and all(c in model.signal_names for c in model.caps)
    rng = np.random.default_rng(0)
    X = rng.gamma(1.0, 2.0, size=(200, len(model.signal_names))).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = np.nan
    frame = pd.DataFrame(X, columns=model.signal_names)
    served = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(frame)
    model.booster.save_model(str(tmp_path / "b.txt"))
    raw = lgb.Booster(model_file=str(tmp_path / "b.txt")).predict(X, raw_score=True)
    np.testing.assert_allclose(served["p_bad"].to_numpy(), model.calibration.apply(raw), rtol=1e-9)
    assert served["star"].between(1, 5).all() and served["score"].between(350, 950).all()
    presale, refund = model.heads[PRESALE], model.heads["fast_refund"]
    assert refund.prior is None  # the presale base alone boosts from the rating's margin, as the registered
    assert presale.prior.model_to_string() == model.booster.model_to_string()  # booster computes it
    np.testing.assert_allclose(presale.prior.predict(X, raw_score=True), raw, rtol=0, atol=1e-12)
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{NAME}/1")).read_text().split()
    assert f"lightgbm=={lgb.__version__}" in requirements  # declared: the model cannot load without it
    assert not any(r.startswith("buyer-trust") for r in requirements)  # this project travels as code


def test_more_unpaid_balances_or_unreturned_goods_never_raise_the_star(first_run):
    model = load_rating(f"models:/{NAME}@champion").model
    assert len(WORSENING) >= 6
    rng = np.random.default_rng(1)
    X = rng.gamma(0.5, 1.0, size=(500, len(model.signal_names))).astype(np.float32)
    base = model.score(X)
    for name in WORSENING:
        j = model.signal_names.index(name)
        worse = X.copy()
        worse[:, j] = np.nan_to_num(worse[:, j]) + 1 + rng.integers(0, 3, len(X))
        after = model.score(worse)
        assert np.all(after.p_bad >= base.p_bad - 1e-12), name
        assert np.all(after.star <= base.star), name


def test_an_equal_model_does_not_replace_the_champion(first_run, market):
    assert run_train(market, "--policy-days", "0") == 0
    client = first_run
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    run = client.get_run(client.get_model_version(NAME, "2").run_id)
    assert run.data.tags["promoted"] == "False"
    assert "does not beat" in run.data.tags["promotion_reason"]
    # the gate compared the rating and each service's expected loss on the same rows, and logged it
    yardsticks = (
        "rating_auc_per_opportunity",
        "presale_loss_ratio_at_rule_volume",
        "refund_loss_ratio_at_rule_volume",
    )
    for name in yardsticks:
        assert run.data.metrics[f"gate_{name}_diff"] == pytest.approx(0.0, abs=1e-12), name
        assert f"gate_{name}_diff_ci_low" in run.data.metrics


def test_a_failed_run_registers_nothing_and_is_marked_failed(first_run, market, capsys):
    client = first_run
    before = len(client.search_model_versions(f"name='{NAME}'"))
    degenerate = json.dumps({"num_boost_round": 1, "learning_rate": 1e-6, "num_leaves": 2})
    code = run_train(market, "--params", degenerate, "--policy-days", "0")  # the last --params wins
    assert code == 1
    assert "nothing registered" in capsys.readouterr().err
    assert len(client.search_model_versions(f"name='{NAME}'")) == before
    runs = client.search_runs(
        [client.get_experiment_by_name("e2e").experiment_id], order_by=["start_time DESC"], max_results=1
    )
    assert runs[0].info.status == "FAILED"


def test_bad_data_stops_with_the_validator_message(tmp_path, capsys):
    write_export(RunConfig(buyers=300, months=24, seed=1), tmp_path)
    orders = tmp_path / "orders" / "part-00000.parquet"
    table = pq.read_table(orders)
    amount = table["amount"].to_numpy().copy()
    amount[0] = -5.0
    pq.write_table(
        table.set_column(table.schema.get_field_index("amount"), "amount", pa.array(amount)), orders
    )
    assert train.main(["--data", str(tmp_path), "--cache-dir", ""]) == 2
    err = capsys.readouterr().err
    assert "orders" in err and "amount" in err


def test_the_decisions_bench_measures_the_rows_train_py_measures(first_run, market, tmp_path, capsys):
    bench = runpy.run_path(
        str(Path(__file__).parents[2] / "bench" / "bench_decisions.py"), run_name="bench_script"
    )
    assert bench["main"](["--data", str(market), "--json", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in FIXED_METRICS)
    measured = json.loads((tmp_path / "m.json").read_text())
    logged = first_run.get_run(first_run.get_model_version_by_alias(NAME, "champion").run_id).data.metrics
    same_rows = ["test_buyers", "test_presale_opportunities", "test_refund_opportunities", "oracle_auc",
                 "presale_rule_share_volume", "refund_rule_share_volume", "test_buyers_with_hard_fact"]  # fmt: skip
    assert {k: measured[k] for k in same_rows} == pytest.approx({k: logged[k] for k in same_rows})


def test_the_ceiling_bench_learns_the_truth_it_is_given(market, tmp_path, capsys):
    bench = runpy.run_path(
        str(Path(__file__).parents[2] / "bench" / "bench_ceiling.py"), run_name="bench_script"
    )
    assert bench["main"](["--data", str(market), "--json", str(tmp_path / "c.json")]) == 0
    figures = json.loads((tmp_path / "c.json").read_text())
    for service in ("presale_ship_before_balance", "fast_refund"):
        # trained on the truth of the same rows: ranks the test rows like the truth (a row
        # misaligned with its truth would give about 0)
        assert figures[service]["truth-trained spearman"] > 0.5, figures[service]
        assert np.isfinite(figures[service]["truth-trained / oracle"])
    auc = figures["rating_auc"]
    assert auc["oracle (truth)"] >= max(auc["truth-trained"], auc["optbinning scorecard"]) > 0.6, auc
    assert "product head" in capsys.readouterr().out


def test_the_logged_candidate_policy_is_read_by_the_service(first_run):
    from features.registry import signal_names
    from serving.policy import parse_policy

    run = first_run.get_run(first_run.get_model_version_by_alias(NAME, "champion").run_id)
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/policy/candidate_policy.yaml")
    policy = parse_policy(yaml.safe_load(text), signal_names())
    assert policy.version == f"candidate-{run.info.run_id[:8]}"
    assert run.data.metrics["policy_searched"] == 1.0 and run.data.tags["policy_search"] == "searched"
    reviewed = yaml.safe_load(pipeline.BASE_POLICY.read_text())
    for rules, service in (
        (policy.presale, "presale_ship_before_balance"),
        (policy.fast_refund, "fast_refund"),
    ):
        declared = reviewed["services"][service].get("exploration")  # set aside by the search, declared again
        assert (rules.exploration is None) == (declared is None), service
    tried = pd.read_csv(
        mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/policy/search_curve.csv")
    )
    for prefix, rules, service in (
        ("presale", policy.presale, "presale_ship_before_balance"),
        ("refund", policy.fast_refund, "fast_refund"),
    ):
        assert run.data.metrics[f"policy_{prefix}_proposed"] == 1.0
        assert run.data.tags[f"policy_proposal_{prefix}"] == "proposed"
        feasible = tried[(tried["service"] == service) & tried["feasible"]]
        if feasible.empty:  # nothing feasible: the allowance proposal stands
            for star in range(rules.min_stars, 6):
                logged = run.data.metrics[f"policy_{prefix}_allowance_star{star}"]
                assert rules.expected_loss_allowance[star - 1] == pytest.approx(logged, rel=1e-5)
            continue
        best = feasible.loc[feasible["money"].idxmax()]  # the candidate is the search's best
        for star in range(rules.min_stars, 6):
            assert rules.expected_loss_allowance[star - 1] == pytest.approx(
                best[f"allowance_{star}"], rel=1e-5
            )
            assert rules.amount_cap[star - 1] == pytest.approx(round(best[f"cap_{star}"], 2) * 100, abs=1)
        assert run.data.metrics[f"policy_{prefix}_search_money"] == pytest.approx(best["money"])
        # judged on the test window beside the reviewed policy and the legacy rule, with the truth
        for name in ("candidate", "reviewed"):
            for figure in (
                "money",
                "legacy_money",
                "loss_per_unit",
                "loss_per_unit_hi",
                "high_risk_loss_share",
            ):
                assert f"policy_{prefix}_{name}_{figure}" in run.data.metrics, (prefix, name, figure)
    curve_png = mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/policy/search_curve.png")
    assert Path(curve_png).stat().st_size > 10_000
    report = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/policy/backtest_test_window.txt")
    assert "legacy" in report


def test_a_failed_proposal_is_recorded_and_announced(first_run, market, monkeypatch, capsys):
    """A service without a proposal does not stop the run (the rating and heads stand without it)
    but cannot be missed: metric policy_<prefix>_proposed = 0, a tag with the reason, a header in
    the candidate policy and a warning at the end of the output; a whole-policy search that fails
    likewise (``policy_searched`` = 0, the ``policy_search`` tag, a header, a warning)."""
    real = pipeline.propose

    def refund_fails(service, **kwargs):
        if service == "fast_refund":
            raise ValueError("fast_refund: the legacy rule approves nothing on this window")
        return real(service, **kwargs)

    def search_fails(*_args, **_kwargs):
        raise ValueError("no presale deposit or refund request to decide in 2024-05-20..2024-06-19")

    monkeypatch.setattr(pipeline, "propose", refund_fails)
    monkeypatch.setattr(pipeline, "search_and_judge", search_fails)
    assert run_train(market, "--promote", "never") == 0
    err = capsys.readouterr().err
    assert "WARNING: no expected-loss allowance proposed for fast_refund" in err
    assert "WARNING: the whole-policy search failed" in err
    client = first_run
    latest = max(client.search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))
    run = client.get_run(latest.run_id)
    assert run.data.metrics["policy_refund_proposed"] == 0.0
    assert run.data.metrics["policy_presale_proposed"] == 1.0
    assert run.data.tags["policy_proposal_refund"].startswith("failed: fast_refund: the legacy rule")
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/policy/candidate_policy.yaml")
    assert text.startswith("# NOT PROPOSED: fast_refund keeps the reviewed policy's allowance")
    assert "# NOT SEARCHED: caps and allowances are the allowance proposal's (no presale deposit" in text
    assert run.data.metrics["policy_searched"] == 0.0
    assert run.data.tags["policy_search"].startswith("failed: no presale deposit")
    assert "policy_refund_allowance_star5" not in run.data.metrics


def test_the_heads_price_what_the_service_prices(first_run, market, tracking):
    """Training's head rows and the service (the day's snapshot published, loaded and scored per request)
    give each opportunity the same probability; the signals of the decision instant would not."""
    rows = opportunity_rows(market)
    split = default_split(snapshot_dates(market))
    both = pd.concat([r[["signals_as_of"]] for r in rows.values()], ignore_index=True)
    days = busiest_days(both, split.test_first, both["signals_as_of"].max(), 2)
    policy = Path(train.__file__).resolve().parent.parent / "serving" / "policy.yaml"
    skew, priced = measure(market, rows, days, f"models:/{NAME}@champion", tracking, policy)
    for service, result in skew.items():
        assert result.rows >= 20, service
        assert result.median <= SKEW_GOAL and result.p90 <= SKEW_GOAL, result
    model = load_rating(f"models:/{NAME}@champion").model
    instant = {s: r.assign(signals_as_of=r["as_of"]) for s, r in priced.items()}  # the decision instant
    p_instant = trained_probability(market, model, instant)[PRESALE]
    presales = priced[PRESALE]
    served = presales["p_served"].to_numpy()
    ok = np.isfinite(served)
    moved = np.abs(np.log(p_instant[ok] / served[ok]))
    assert np.median(moved) > SKEW_GOAL  # the presale's own order, placed seconds before, moves the head
