"""The README demo's last step: example calls for a buyer of the snapshot whose two presales differ."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from serving.http.demo import LARGE, SMALL, example_buyer, example_calls, presale_body, snapshot_buyers
from serving.http.services import EXTENSION
from tests.serving.conftest import API_KEY


def test_snapshot_buyers_come_from_the_snapshot(tmp_path):
    path = tmp_path / "snapshot.parquet"
    pq.write_table(pa.table({"buyer_id": pa.array([5, 8, 13], pa.int64())}), path)
    assert snapshot_buyers(str(path)) == [5, 8, 13] and snapshot_buyers(str(path), limit=2) == [5, 8]
    assert snapshot_buyers(str(tmp_path / "missing.parquet")) == []
    assert example_buyer(None, [8, 13], 1e6, datetime.now(UTC)) == 8  # no model served: the first
    assert example_buyer(None, [], 1e6, datetime.now(UTC)) == 1


def test_example_calls_carry_the_key_and_both_services():
    calls = example_calls("http://127.0.0.1:8000", "k3y", 42)
    assert calls.count("X-API-Key: k3y") == 5
    # the same buyer asks to ship a small and a large presale early, then for a fast refund
    assert (
        calls.count('"service": "presale_ship_before_balance"') == 2 and '"service": "fast_refund"' in calls
    )
    assert f'"amount": {SMALL}' in calls and f'"amount": {LARGE}' in calls and "balance_due_at" in calls
    assert "/v1/buyers/42/rating" in calls
    review = next(line for line in calls.splitlines() if "/v1/reviews/assess" in line)
    assert json.loads(review.split("-d '", 1)[1].rstrip("'"))["review"]["rating"] == 1


@pytest.fixture(scope="module")
def heads_model_uri(model_uri) -> str:
    return model_uri  # the service tests' model has both heads (conftest.py)


def test_the_example_buyer_is_approved_the_small_presale_and_declined_the_large(
    make_app, config, heads_model_uri, tmp_path
):
    policy = yaml.safe_load(Path(config["policy_path"]).read_text())
    policy["services"]["presale_ship_before_balance"]["expected_loss_allowance"] = {3: 0.02, 4: 0.05, 5: 0.1}
    path = tmp_path / "policy-allowance.yaml"
    path.write_text(yaml.safe_dump(policy))
    app = make_app({**config, "model_uri": heads_model_uri, "policy_path": str(path)})
    live = app.extensions[EXTENSION].runtime.live
    now = datetime.now(UTC)
    buyer = example_buyer(live, snapshot_buyers(config["snapshot"]), 1e6, now)
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    due = (now + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    small = client.post("/v1/decisions", json=presale_body(1, buyer, 9001, SMALL, due)).json
    large = client.post("/v1/decisions", json=presale_body(2, buyer, 9002, LARGE, due)).json
    assert small["decision"] == "approve", small  # choosing the buyer reserved nothing in the ledger
    assert large["decision"] == "decline" and large["declines"] and large["reasons"], large
