"""Model hot-swap from the registry: the service follows the champion alias, keeps the model (and
policy) in force when the new one cannot be loaded or does not fit the policy."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from bench.tiny import make_tiny_rating, synthetic_dataset, tiny_heads
from tests.serving.conftest import API_KEY, POLICY_SIGNALS, SIGNALS
from training.package import log_rating
from training.tracking import ensure_experiment

NAME = "tiny-rating"
GOOD, NEXT, BROKEN, LACKING = "1", "2", "3", "4"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """A temporary MLflow store holding four versions of ``NAME``: two good ones (different seeds),
    one whose artifact is gone, one without the signals the policy's rules read."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment_id=ensure_experiment("hot-swap"))  # artifacts beside the store
        for seed in (0, 1):
            model = make_tiny_rating(SIGNALS, seed=seed, n=6000)
            model.set_heads(tiny_heads(SIGNALS, seed, n=3000))
            with mlflow.start_run():
                log_rating(model, synthetic_dataset(SIGNALS, 5, seed).X, registered_model_name=NAME)
        client = MlflowClient(uri)
        client.create_model_version(NAME, source=str(root / "no-such-artifact"))
        lacking = [s for s in SIGNALS if s not in POLICY_SIGNALS]
        with mlflow.start_run():
            log_rating(make_tiny_rating(lacking, seed=2, n=6000), synthetic_dataset(lacking, 5, 2).X, NAME)
        assert sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'")) == [
            "1",
            "2",
            "3",
            "4",
        ]
        yield uri


@pytest.fixture
def swap(registry, make_app, config):
    """An app serving ``models:/NAME@champion`` (version 1 at start), its runtime and a client."""
    client = MlflowClient(registry)
    client.set_registered_model_alias(NAME, "champion", GOOD)
    app = make_app(config | {"model_uri": f"models:/{NAME}@champion", "mlflow_tracking_uri": registry})
    http = app.test_client()
    http.environ_base["HTTP_X_API_KEY"] = API_KEY
    return client, app.extensions["buyer_trust"].runtime, http


def serving(http) -> tuple[str, str]:
    model = http.get("/v1/model").json
    return model["model"]["version"], model["policy"]["version"]


def test_a_champion_alias_change_is_picked_up(swap, presale_body, buyer_with_star):
    registry, runtime, http = swap
    assert runtime.live.model_version == f"{NAME}/{GOOD}" and runtime.changed_parts() == frozenset()
    registry.set_registered_model_alias(NAME, "champion", NEXT)
    assert runtime.changed_parts() == {"model"}
    runtime.check()  # what the watcher does every watch_interval_s
    assert runtime.live.model_version == f"{NAME}/{NEXT}"
    answer = http.post("/v1/decisions", json=presale_body(buyer_with_star(5), 100)).json
    assert answer["model_version"] == f"{NAME}/{NEXT}" and answer["p_loss"] is not None
    assert runtime.changed_parts() == frozenset()


def test_a_failed_load_keeps_the_previous_model(swap, presale_body, buyer_with_star):
    registry, runtime, http = swap
    before = runtime.live
    registry.set_registered_model_alias(NAME, "champion", BROKEN)
    runtime.check()
    assert runtime.live.rating is before.rating and runtime.live.model_version == f"{NAME}/{GOOD}"
    response = http.post("/v1/admin/reload", json={"parts": ["model"]})
    assert response.status_code == 200 and runtime.live.rating is before.rating
    answer = http.post("/v1/decisions", json=presale_body(buyer_with_star(5), 100)).json
    assert answer["decision"] == "approve" and answer["model_version"] == f"{NAME}/{GOOD}", answer
    assert http.get("/readyz").status_code == 200
    registry.set_registered_model_alias(NAME, "champion", NEXT)  # fixed: the next check picks it up
    runtime.check()
    assert runtime.live.model_version == f"{NAME}/{NEXT}"


def test_a_model_without_the_policys_signals_is_refused_keeping_the_pair(swap, presale_body, ids):
    registry, runtime, http = swap
    before = runtime.live
    registry.set_registered_model_alias(NAME, "champion", LACKING)
    runtime.check()  # the watcher logs and keeps what is in force
    assert runtime.live is before
    response = http.post("/v1/admin/reload", json={"parts": ["model"]})
    assert response.status_code == 409 and response.json["code"] == "invalid_policy"
    assert "balances_unpaid_7d_count_365d" in response.json["detail"]
    assert runtime.live is before and serving(http) == (GOOD, before.policy.version)
    answer = http.post("/v1/decisions", json=presale_body(ids["unpaid"], 100)).json
    assert "unpaid_balance_365d" in [d["code"] for d in answer["declines"]], "the rule still reads its signal"
