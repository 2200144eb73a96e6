"""Online snapshot stores: parquet file and the real Redis on 127.0.0.1:6379 (fails, never skips, if absent)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from serving.publish.snapshot import FileSnapshot, RedisSnapshot, SnapshotError, load_snapshot, open_writer

REDIS_URL = "redis://127.0.0.1:6379/0"
KEY = {"X-API-Key": "test-key"}


@pytest.fixture
def redis_prefix():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fails loudly when Redis is not running
    prefix = f"test-buyer-trust-{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def test_file_round_trip(tmp_path):
    names = ["a", "b", "c"]
    X = np.array([[1, np.nan, 3], [4, 5, 6], [7, 8, np.inf]], dtype=np.float32)
    writer = open_writer(str(tmp_path / "s.parquet"), "", names, "2025-01-01T00:00:00+00:00")
    writer.append(np.array([10, 20]), X[:2])
    writer.append(np.array([30]), X[2:])
    meta = writer.commit()
    snap = load_snapshot(str(tmp_path / "s.parquet"), "")
    assert isinstance(snap, FileSnapshot)
    assert snap.meta == meta and meta.n_buyers == 3 and snap.meta.signal_names == tuple(names)
    np.testing.assert_array_equal(snap.row(20), X[1])
    np.testing.assert_array_equal(snap.row(10), X[0])  # NaN positions equal
    assert snap.row(99) is None
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file is renamed into place"


def test_file_errors(tmp_path):
    with pytest.raises(SnapshotError):
        FileSnapshot.load(tmp_path / "absent.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(SnapshotError):
        FileSnapshot.load(tmp_path / "junk.parquet")


def test_redis_round_trip_and_version_switch(redis_prefix):
    names = ["a", "b"]
    X = np.arange(8, dtype=np.float32).reshape(4, 2)
    writer = open_writer(REDIS_URL, redis_prefix, names, "2025-01-01T00:00:00+00:00")
    writer.append(np.arange(4), X)
    first = writer.commit()
    snap = load_snapshot(REDIS_URL, redis_prefix)
    assert isinstance(snap, RedisSnapshot) and snap.meta == first
    np.testing.assert_array_equal(snap.row(2), X[2])
    assert snap.row(9) is None
    assert not snap.changed(REDIS_URL)
    second = open_writer(REDIS_URL, redis_prefix, names, "2025-02-01T00:00:00+00:00")
    second.append(np.arange(4), X + 100)
    second.commit()
    assert snap.changed(REDIS_URL)
    np.testing.assert_array_equal(snap.row(2), X[2])  # the old version stays readable meanwhile
    client = redis.Redis.from_url(REDIS_URL)
    assert 0 < client.ttl(f"{redis_prefix}{first.version}:2") <= 3600
    np.testing.assert_array_equal(load_snapshot(REDIS_URL, redis_prefix).row(2), X[2] + 100)


def test_redis_without_a_publish_is_an_error(redis_prefix):
    with pytest.raises(SnapshotError, match="nothing published"):
        RedisSnapshot.connect(REDIS_URL, redis_prefix)


def test_service_on_redis_matches_file(
    make_app, config, redis_prefix, snapshot_rows, rating, presale_body, buyer_with_star
):
    buyer_ids, X = snapshot_rows
    writer = open_writer(REDIS_URL, redis_prefix, rating.model.signal_names, "2025-06-01T00:00:00+00:00")
    writer.append(buyer_ids, X)
    writer.commit()
    file_app = make_app(config)
    redis_app = make_app(config | {"snapshot": REDIS_URL, "redis_prefix": redis_prefix})
    assert redis_app.test_client().get("/readyz").status_code == 200
    for star in (1, 3, 5):
        buyer = buyer_with_star(star)
        a = file_app.test_client().get(f"/v1/buyers/{buyer}/rating", headers=KEY).json
        b = redis_app.test_client().get(f"/v1/buyers/{buyer}/rating", headers=KEY).json
        assert a["star"] == b["star"] == star
        assert a["score"] == b["score"] and a["reasons"] == b["reasons"]
    answer = (
        redis_app.test_client().post("/v1/decisions", json=presale_body(buyer_with_star(5)), headers=KEY).json
    )
    assert answer["decision"] == "approve"
    unknown = redis_app.test_client().post("/v1/decisions", json=presale_body(10**9), headers=KEY).json
    assert [d["code"] for d in unknown["declines"]] == ["thin_file"]
