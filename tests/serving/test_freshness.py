"""Durability and freshness by default: SQLite WAL + GROUP commit; stale snapshots degrade."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from serving.config import ServingConfig
from serving.publish.snapshot import META_KEY, FileWriter
from tests.serving.conftest import SIGNALS


def _snapshot(tmp_path, snapshot_rows, published_at: str | None, legacy: bool = False):
    ids, X = snapshot_rows
    path = tmp_path / "stale" / "snapshot.parquet"
    writer = FileWriter(path, SIGNALS, "2025-06-01T00:00:00+00:00", published_at=published_at)
    writer.append(ids, X)
    writer.commit()
    if legacy:  # a snapshot written before publish times were recorded
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[META_KEY])
        del meta["published_at"]
        pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()}), path)
    return path


def _ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="seconds")


def test_sqlite_is_wal_and_group_commit_by_default(app):
    """GROUP by default (tests/serving/test_crash.py proves it against kill -9 and a power cut)."""
    assert ServingConfig().sqlite_synchronous == "GROUP"
    assert ServingConfig().max_snapshot_age_s == 36 * 3600
    ledger = app.extensions["buyer_trust"].ledger
    assert ledger.group_sync is not None and ledger.group_sync.wal_path == f"{ledger.engine.url.database}-wal"
    raw = ledger.engine.raw_connection()
    try:
        assert raw.driver_connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.driver_connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        raw.close()


def test_full_durability_is_still_selectable(make_app, config):
    ledger = make_app(config | {"sqlite_synchronous": "FULL"}).extensions["buyer_trust"].ledger
    assert ledger.group_sync is None
    raw = ledger.engine.raw_connection()
    try:
        assert raw.driver_connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        raw.close()


def test_stale_snapshot_fails_readiness_and_declines_degraded(
    make_app, config, tmp_path, snapshot_rows, client_for, presale_body, buyer_with_star
):
    path = _snapshot(tmp_path, snapshot_rows, published_at=_ago(48))
    app = make_app(config | {"snapshot": str(path)})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert "old" in ready.json["checks"]["snapshot"] and ready.json["checks"]["model"] == "ok"
    response = client_for(app).post("/v1/decisions", json=presale_body(buyer_with_star(5), 500))
    assert response.status_code == 200
    d = response.json
    assert d["decision"] == "decline" and [x["code"] for x in d["declines"]] == ["risk_service_degraded"]
    assert d["star"] is None and d["decision_id"], "declined on no signals at all, and logged"
    assert 'cause="stale_snapshot"' in app.test_client().get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize(
    ("published", "max_age", "ready"),
    [(1.0, None, True), (48.0, 3 * 86400, True), (48.0, 0, True), (2.0, 3600, False)],
    ids=["fresh", "within-a-longer-limit", "no-limit", "past-a-shorter-limit"],
)
def test_the_limit_is_a_setting(
    make_app,
    config,
    tmp_path,
    snapshot_rows,
    client_for,
    presale_body,
    buyer_with_star,
    published,
    max_age,
    ready,
):
    path = _snapshot(tmp_path, snapshot_rows, published_at=_ago(published))
    extra = {} if max_age is None else {"max_snapshot_age_s": max_age}
    app = make_app(config | {"snapshot": str(path)} | extra)
    assert (app.test_client().get("/readyz").status_code == 200) is ready
    d = client_for(app).post("/v1/decisions", json=presale_body(buyer_with_star(5), 500)).json
    assert (d["decision"] == "approve") is ready, d


def test_a_snapshot_without_publish_time_ages_from_its_as_of(make_app, config, tmp_path, snapshot_rows):
    path = _snapshot(tmp_path, snapshot_rows, published_at=None, legacy=True)  # as of 2025-06-01
    app = make_app(config | {"snapshot": str(path)})
    assert app.test_client().get("/readyz").status_code == 503


def test_a_loaded_snapshot_goes_stale_with_time(app):
    live = app.extensions["buyer_trust"].runtime.live
    published = live.snapshot_published
    assert published is not None and live.stale() is None
    assert live.stale(now=published + 35 * 3600) is None
    assert "old" in live.stale(now=published + 37 * 3600)


@pytest.fixture
def client_for():
    from tests.serving.conftest import API_KEY

    def make(app):
        client = app.test_client()
        client.environ_base["HTTP_X_API_KEY"] = API_KEY
        return client

    return make


def test_group_durability_fsyncs_the_log_before_answering(
    make_app, config, client_for, presale_body, monkeypatch
):
    """GROUP: synchronous=NORMAL, and each decision's answer waits for an fsync of the WAL after its commit."""
    import serving.ledger.engine

    events = []
    real = serving.ledger.engine._fsync_path

    def recording(path):
        events.append(("fsync", path))
        real(path)

    monkeypatch.setattr(serving.ledger.engine, "_fsync_path", recording)
    app = make_app(config | {"sqlite_synchronous": "GROUP"})
    ledger = app.extensions["buyer_trust"].ledger
    raw = ledger.engine.raw_connection()
    try:
        assert raw.driver_connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        raw.close()
    response = client_for(app).post("/v1/decisions", json=presale_body(12, 500))
    assert response.status_code == 200 and response.json["decision_id"]
    assert events == [("fsync", f"{ledger.engine.url.database}-wal")]


def test_group_sync_shares_fsyncs_and_never_returns_early(tmp_path, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import serving.ledger.engine
    from serving.ledger.engine import GroupSync

    clock = {"n": 0}
    runs = []  # (started, finished) tick of each fsync
    lock = threading.Lock()

    def slow_fsync(path):
        with lock:
            clock["n"] += 1
            started = clock["n"]
        time.sleep(0.02)
        with lock:
            clock["n"] += 1
            runs.append((started, clock["n"]))

    monkeypatch.setattr(serving.ledger.engine, "_fsync_path", slow_fsync)
    group = GroupSync(str(tmp_path / "x.db-wal"))

    def call(_):
        with lock:
            clock["n"] += 1
            called = clock["n"]
        group.sync()
        with lock:
            returned = clock["n"]
        # some fsync started after this call and finished before it returned
        assert any(called < s and f <= returned for s, f in runs), (called, returned, runs)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(64)))
    assert 1 <= len(runs) < 64 / 2, f"{len(runs)} fsyncs for 64 concurrent commits"
