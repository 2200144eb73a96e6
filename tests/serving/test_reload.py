"""Reload without restart: policy, snapshot and model, by endpoint and by the watcher."""

from __future__ import annotations

import time

import yaml

from serving.publish.snapshot import FileWriter

from .conftest import TEST_POLICY_VERSION

KEY = {"X-API-Key": "test-key"}


def rewrite_policy(path, **changes) -> None:
    doc = yaml.safe_load(path.read_text())
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_admin_reload_swaps_the_policy(client, policy_file, presale_body, buyer_with_star):
    buyer = buyer_with_star(3)
    assert client.post("/v1/decisions", json=presale_body(buyer, 500)).json["decision"] == "approve"
    doc = yaml.safe_load(policy_file.read_text())
    doc["version"] = "2025.06.2"
    doc["services"]["presale_ship_before_balance"]["min_stars"] = 4
    for table in ("amount_cap", "exposure_limit", "expected_loss_allowance"):
        del doc["services"]["presale_ship_before_balance"][table][3]
    policy_file.write_text(yaml.safe_dump(doc))
    response = client.post("/v1/admin/reload", json={"parts": ["policy"]})
    assert response.status_code == 200 and response.json["policy"]["version"] == "2025.06.2"
    answer = client.post("/v1/decisions", json=presale_body(buyer, 500, order_id=2)).json
    assert answer["policy_version"] == "2025.06.2"
    assert [d["code"] for d in answer["declines"]] == ["stars_below_minimum"]


def test_invalid_policy_on_reload_keeps_the_old_one(client, policy_file):
    rewrite_policy(policy_file, version="broken", max_reasons="four")
    response = client.post("/v1/admin/reload")
    assert response.status_code == 409
    assert response.json["code"] == "invalid_policy" and response.json["detail"].startswith("max_reasons:")
    assert client.get("/v1/model").json["policy"]["version"] == TEST_POLICY_VERSION


def test_reload_parts_are_validated(client):
    response = client.post("/v1/admin/reload", json={"parts": ["everything"]})
    assert response.status_code == 400 and response.json["field"] == "parts"


def test_reload_needs_a_key(app):
    assert app.test_client().post("/v1/admin/reload").status_code == 401


def test_watcher_picks_up_policy_and_snapshot(
    make_app, config, tmp_path, policy_file, snapshot_rows, presale_body, ids
):
    snapshot = tmp_path / "snapshot.parquet"
    FileWriter(
        snapshot, [f"signal_{i}" for i in range(8)], "2025-05-01T00:00:00+00:00"
    ).commit()  # lacks signals
    app = make_app(config | {"snapshot": str(snapshot), "watch_interval_s": 0.1})
    runtime = app.extensions["buyer_trust"].runtime
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 503
        buyer_ids, X = snapshot_rows
        writer = FileWriter(snapshot, runtime.live.rating.model.signal_names, "2025-06-02T00:00:00+00:00")
        writer.append(buyer_ids, X)
        time.sleep(0.05)  # a distinct mtime
        writer.commit()
        rewrite_policy(policy_file, version="2025.06.9")
        deadline = time.monotonic() + 60  # a loaded machine reloads late, never wrongly
        while time.monotonic() < deadline:
            live = runtime.live
            if live.policy.version == "2025.06.9" and live.snapshot.meta.as_of.startswith("2025-06-02"):
                break
            time.sleep(0.05)
        assert runtime.live.policy.version == "2025.06.9"
        assert runtime.live.snapshot.meta.as_of == "2025-06-02T00:00:00+00:00"
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/decisions", json=presale_body(ids["unpaid"]), headers=KEY).json
        assert answer["signals_as_of"] == "2025-06-02T00:00:00+00:00"
        assert answer["policy_version"] == "2025.06.9"
        assert "unpaid_balance_365d" in [d["code"] for d in answer["declines"]]
    finally:
        runtime.stop()
