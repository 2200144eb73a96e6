"""The promotion gate end to end on tiny data, in a temporary MLflow store: what ``train.py`` runs
after training (``training.evaluation.gate.judge``, then ``training.evaluation.gate.set_aliases``) promotes a
better version, refuses a worse one, and refuses one it cannot compare with the champion."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from bench.tiny import make_tiny_rating, synthetic_dataset
from rating.artifact import RatingModel
from training.evaluation.gate import CHALLENGER, CHAMPION, judge, set_aliases
from training.package import log_rating
from training.tracking import ensure_experiment

SIGNALS = [f"signal_{i}" for i in range(8)]
NAME = "gate-test"


@pytest.fixture(scope="module")
def models() -> dict[str, RatingModel]:
    """``good`` learns the synthetic risk; ``inverted`` learned it on the signals in reverse order, so
    on these rows it ranks buyers nearly backwards; ``other`` reads a signal the test rows lack."""
    return {
        "good": make_tiny_rating(SIGNALS, seed=0, n=8000),
        "inverted": make_tiny_rating(SIGNALS[::-1], seed=1, n=8000),
        "other": make_tiny_rating([*SIGNALS, "signal_retired"], seed=2, n=8000),
    }


@pytest.fixture(scope="module")
def test_rows() -> pd.DataFrame:
    data = synthetic_dataset(SIGNALS, 4000, seed=5)
    frame = pd.DataFrame(data.X, columns=SIGNALS)
    return frame.assign(buyer_id=np.arange(len(frame)), bad_90d=data.y)


@pytest.fixture
def registry(tmp_path, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=ensure_experiment("gate"))  # artifacts beside the store
    return MlflowClient(uri)


def register(model: RatingModel) -> str:
    with mlflow.start_run():
        info = log_rating(
            model, np.zeros((2, len(model.signal_names)), np.float32), registered_model_name=NAME
        )
    return str(info.registered_model_version)


def run_gate(client: MlflowClient, model: RatingModel, test_rows: pd.DataFrame, mode: str = "auto"):
    """What train.py does once the new version is trained: judge it, register it, set the aliases."""
    judged = judge(client, NAME, model, test_rows, {}, mode, monotone=True, seed=3)
    version = register(model)
    set_aliases(client, NAME, version, judged.verdict.promote)
    return judged, version


def aliases(client: MlflowClient) -> tuple[str, str]:
    return tuple(str(client.get_model_version_by_alias(NAME, a).version) for a in (CHAMPION, CHALLENGER))


def test_a_better_version_is_promoted(registry, models, test_rows):
    first, version = run_gate(registry, models["inverted"], test_rows)
    assert first.verdict.promote and first.champion is None and first.comparisons is None
    assert aliases(registry) == (version, version)
    judged, better = run_gate(registry, models["good"], test_rows)
    assert judged.champion == version
    (auc,) = judged.comparisons
    assert auc.name == "rating_auc" and auc.better and not auc.worse and auc.diff.low > 0
    assert judged.verdict.promote, judged.verdict.reason
    assert aliases(registry) == (better, better)


def test_a_worse_version_is_refused(registry, models, test_rows):
    _, champion = run_gate(registry, models["good"], test_rows)
    judged, worse = run_gate(registry, models["inverted"], test_rows)
    (auc,) = judged.comparisons
    assert auc.worse and auc.diff.high < 0
    assert not judged.verdict.promote and "worse than the champion" in judged.verdict.reason
    assert aliases(registry) == (champion, worse), "the champion stays; the new version is the challenger"
    forced, version = run_gate(registry, models["inverted"], test_rows, mode="force")
    assert forced.verdict.promote and aliases(registry) == (version, version)


def test_a_version_not_comparable_with_the_champion_is_refused(registry, models, test_rows):
    _, champion = run_gate(registry, models["other"], test_rows)
    judged, new = run_gate(registry, models["good"], test_rows)
    assert judged.champion == champion and judged.comparisons is None
    assert not judged.verdict.promote and "cannot be scored" in judged.verdict.reason
    assert aliases(registry) == (champion, new)


def test_an_equal_version_is_refused(registry, models, test_rows):
    _, champion = run_gate(registry, models["good"], test_rows)
    judged, new = run_gate(registry, models["good"], test_rows)
    (auc,) = judged.comparisons
    assert auc.diff.low == auc.diff.high == 0
    assert not judged.verdict.promote and "does not beat" in judged.verdict.reason
    assert aliases(registry) == (champion, new)


def _decisions(approve_share: float, p: float, seed: int) -> pd.DataFrame:
    """Judged decisions of one window: 600 presales of 300 buyers, ``approve_share`` of them approved."""
    rng = np.random.default_rng(seed)
    n = 600
    return pd.DataFrame(
        {
            "service": "presale_ship_before_balance",
            "buyer_id": np.repeat(np.arange(300), 2),
            "decision": np.where(np.arange(n) < approve_share * n, "approve", "decline"),
            "at_risk": rng.uniform(100, 1000, n).round(2),
            "p_true": np.full(n, p),
            "bad": np.zeros(n),
        }
    )


def test_a_better_model_whose_policy_approves_far_less_is_refused(registry, models, test_rows):
    """The gate reads the decisions too: the new candidate policy against the champion's, each with its
    model, by backtest on the same window (``training.policy.backtest.policy_comparisons``)."""
    from training.policy.backtest import policy_comparisons

    run_gate(registry, models["inverted"], test_rows)
    timid = policy_comparisons(_decisions(0.1, 0.01, 0), _decisions(0.6, 0.01, 0))
    judged = judge(registry, NAME, models["good"], test_rows, {}, "auto", True, 3, lambda: timid)
    names = [c.name for c in judged.comparisons]
    assert names == ["rating_auc", "policy_presale_money", "policy_presale_loss_per_unit"]
    money = judged.comparisons[1]
    assert money.worse and money.diff.high < 0
    assert not judged.verdict.promote and "policy_presale_money" in judged.verdict.reason
    bolder = policy_comparisons(_decisions(0.8, 0.01, 0), _decisions(0.6, 0.01, 0))
    judged = judge(registry, NAME, models["good"], test_rows, {}, "auto", True, 3, lambda: bolder)
    assert judged.verdict.promote, judged.verdict.reason
    riskier = policy_comparisons(_decisions(0.6, 0.05, 0), _decisions(0.6, 0.01, 0))
    loss = riskier[1]
    assert loss.name == "policy_presale_loss_per_unit" and loss.worse and loss.diff.low > 0
    assert riskier[0].diff.low == riskier[0].diff.high == 0  # the same approvals: no money difference
