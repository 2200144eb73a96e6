"""``python training/train.py --cluster`` on a LocalCluster(2): the assembled frames are the
in-process ones on an export whose devices cross shards, the booster's training partitions are
the shards' training rows, and a model trained with ``--cluster local:2`` registers with a test
AUC within 0.01 of the in-process rating on the same data; a worker lost while boosting fails the
run (exit 1, nothing registered) instead of leaving it waiting; the round kept after training on
Dask is the one in-process early stopping keeps."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.build import export_shared_devices
from features.io import read_table
from features.registry import activity_signals, monotone_constraints, reasons, signals
from rating.scale import ScoreScale
from simulator.config import RunConfig
from simulator.write import write_export
from tests.cluster.conftest import cross_shard_devices, killer, local_client
from training import dataset, on_cluster, train
from training import run as pipeline
from training.evaluation.trust import opportunity_auc
from training.labels import PER_OPPORTUNITY
from training.model import DEFAULT_PARAMS, Dataset, checked_monotone, fit_rating, split_params
from training.snapshots import default_split, snapshot_dates, split_snapshots

NAME = "trust-cluster-test"
ROUNDS = json.dumps({"num_boost_round": 300})  # the default parameters, a smaller round budget
NAMES = [s.name for s in signals()]
TARGET = PER_OPPORTUNITY  # the rating's default target: bad outcomes per opportunity, exposure-weighted


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 buyers x 24 months in 4 shards of 1,000, with devices shared across shards."""
    out = tmp_path_factory.mktemp("market") / "export"
    write_export(RunConfig(buyers=4000, months=24, seed=3, shard_size=1000), out)
    cross_shard_devices(out)
    return out


def test_training_on_the_cluster_assembles_the_same_frames_and_registers_as_good_a_model(
    market, tmp_path, monkeypatch
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assembled: list[tuple[dict[str, pd.DataFrame], tuple[np.ndarray, np.ndarray]]] = []
    original = on_cluster.assemble

    def assemble(*args, **kwargs):
        frames, fit = original(*args, **kwargs)
        X, y, w = fit.args[0].X.compute(), fit.args[0].y.compute(), fit.args[0].w.compute()
        assembled.append(({name: frame.copy() for name, frame in frames.items()}, (X, y, w)))
        return frames, fit

    monkeypatch.setattr(pipeline.on_cluster, "assemble", assemble)
    argv = ["--data", str(market), "--register-name", NAME, "--experiment", "cluster", "--cache-dir", ""]
    argv += ["--policy-days", "0"]
    argv += ["--params", ROUNDS, "--max-buyers", "3900"]
    assert train.main([*argv, "--cluster", "local:2"]) == 0
    client = MlflowClient(uri)
    run = client.get_run(client.get_model_version_by_alias(NAME, "champion").run_id)
    assert run.info.status == "FINISHED" and run.data.params["cluster"] == "local:2"
    assert 0 < run.data.metrics["best_iteration"] <= 300

    # the frames are the in-process ones, and the booster's partitions are their training rows
    shards = pd.concat([read_table(market, "buyers", part=k)[["buyer_id"]].assign(part=k) for k in range(4)])
    owners = export_shared_devices(market).merge(shards, on="buyer_id").groupby("device_id")["part"].nunique()
    assert (owners > 1).sum() >= 50  # devices do cross shards
    args = train.parse_args(argv)
    dates = snapshot_dates(market)
    split = default_split(dates)
    expected = dataset.assemble(market, dates, args.max_buyers, args.seed, split=split)
    frames, (X, y, w) = assembled[0]
    assert sorted(frames) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(frames[name], frame, check_exact=True)
    rows, valid, test = split_snapshots(expected[dataset.SNAPSHOTS], split)
    np.testing.assert_array_equal(X, rows[NAMES].to_numpy(np.float32))
    np.testing.assert_array_equal(y, rows[TARGET].to_numpy())
    np.testing.assert_array_equal(w, rows["exposure_90d"].to_numpy())

    # the in-process rating (training.run.fit_scorers' booster, early stopping and the rest) on the same rows
    d_train, d_valid = (pipeline.rating_rows(f, NAMES, TARGET) for f in (rows, valid))
    outcome = rows["bad_90d"].to_numpy()
    kept = activity_signals(NAMES)
    monotone, _ = checked_monotone(d_train.X, outcome, monotone_constraints(NAMES), seed=args.seed, kept=kept)
    params = {**DEFAULT_PARAMS, "seed": args.seed, **args.params}
    model = fit_rating(
        d_train, d_valid, NAMES, reasons(NAMES), monotone, params, ScoreScale(), seed=args.seed
    )
    p_in_process = model.score(test[NAMES].to_numpy(np.float32)).p_bad
    events, exposure = test["bad_events_90d"].to_numpy(), test["exposure_90d"].to_numpy()
    buyers = test["buyer_id"].to_numpy()
    in_process = opportunity_auc(events, exposure, buyers, {"in_process": p_in_process}, replicates=0)
    # what the rating estimates: its AUC over opportunities (training.evaluation.trust)
    assert abs(run.data.metrics["rating_auc_per_opportunity"] - in_process["in_process"][0]) < 0.01


def test_a_worker_lost_while_boosting_fails_the_run_instead_of_hanging(market, tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    argv = ["--data", str(market), "--register-name", NAME, "--experiment", "lost", "--cache-dir", ""]
    argv += ["--policy-days", "0"]
    with local_client() as client:
        # lightgbm.dask pins each worker's training task to it: without the watch this waits for ever
        client.register_plugin(killer(tmp_path / "killed", "_train_part", once=True))
        code = train.main([*argv, "--params", ROUNDS, "--cluster", client.scheduler.address])
    assert code == 1 and (tmp_path / "killed").exists()
    assert "left while training the rating" in capsys.readouterr().err
    assert not MlflowClient(uri).search_model_versions(f"name='{NAME}'")


def test_the_round_kept_is_the_one_early_stopping_keeps():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 8)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=4000) > 1.2).astype(np.int8)
    valid = Dataset(X[2500:], y[2500:])
    lgb_params, _, patience = split_params(
        {**DEFAULT_PARAMS, "num_boost_round": 200, "early_stopping_rounds": 20, "min_data_in_leaf": 20}
    )
    dtrain = lgb.Dataset(X[:2500], y[:2500])
    dvalid = lgb.Dataset(valid.X, valid.y, reference=dtrain)
    curve: dict = {}
    every = lgb.train(lgb_params, dtrain, 200, valid_sets=[dvalid], callbacks=[lgb.record_evaluation(curve)])
    stopped = lgb.train(
        lgb_params, dtrain, 200, valid_sets=[dvalid], callbacks=[lgb.early_stopping(patience, verbose=False)]
    )
    losses = on_cluster.validation_losses(every, valid, np.zeros(len(valid.y)), chunk=700)
    np.testing.assert_allclose(losses, curve["valid_0"]["binary_logloss"], rtol=1e-9)
    assert 20 < stopped.best_iteration < 180  # it did stop early
    assert on_cluster.early_stopping_round(losses, patience) == stopped.best_iteration
    best, scored = on_cluster.kept_round(every, valid, patience, rounds_per_pass=7)
    assert best == stopped.best_iteration and len(scored) < 200  # scored no further than needed
    np.testing.assert_allclose(scored, losses[: len(scored)], rtol=1e-9)
    assert on_cluster.early_stopping_round(np.array([3.0, 2.0, 1.0]), 5) == 3  # never stopped: the best
