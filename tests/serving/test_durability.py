"""No answer before its commit is on disk: SQLite ``GROUP`` group commit (``serving.ledger.engine.GroupSync``)
and every ledger path that answers, and PostgreSQL's commit flush. The crash tests (kill -9, power cut)
are in test_crash.py."""

from __future__ import annotations

import threading
import time

import pytest

import serving.ledger.engine
from serving.ledger.engine import GroupSync, make_engine
from serving.ledger.idempotency import Refusal
from serving.ledger.store import Ledger
from tests.serving.conftest import PG_URL


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_a_failed_fsync_fails_every_caller_it_covered_and_every_later_one(tmp_path, monkeypatch):
    """A covers itself (ok); B and C wait meanwhile; B's fsync covers C and fails: C must not return
    as if durable, and a later fsync that succeeds must not hide the failure."""
    first_started, release_first = threading.Event(), threading.Event()
    calls = []

    def fsync_path(path):
        calls.append(path)
        if len(calls) == 1:
            first_started.set()
            release_first.wait(10)
            return None
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return None

    monkeypatch.setattr(serving.ledger.engine, "_fsync_path", fsync_path)
    group = GroupSync(str(tmp_path / "x.db-wal"))
    outcome = {}

    def call(name):
        try:
            group.sync()
            outcome[name] = "durable"
        except OSError as exc:
            outcome[name] = exc

    a = threading.Thread(target=call, args=("a",))
    a.start()
    first_started.wait(10)
    b = threading.Thread(target=call, args=("b",))
    b.start()
    _wait_for(lambda: group._requested == 2, "b to wait")
    c = threading.Thread(target=call, args=("c",))
    c.start()
    _wait_for(lambda: group._requested == 3, "c to wait")
    release_first.set()
    for thread in (a, b, c):
        thread.join(10)
    assert outcome["a"] == "durable"
    assert isinstance(outcome["b"], OSError) and isinstance(outcome["c"], OSError), outcome
    with pytest.raises(OSError, match="restart the worker"):
        group.sync()  # the next fsync would succeed: it still fails
    assert len(calls) == 2


@pytest.fixture
def group_ledger(tmp_path, monkeypatch):
    """A SQLite ledger with GROUP durability; ``ledger.syncs`` counts its ``GroupSync.sync`` calls."""
    ledger = Ledger(make_engine(f"sqlite:///{tmp_path / 'g.db'}", sqlite_synchronous="GROUP"))
    ledger.create()
    ledger.syncs = []
    real = ledger.group_sync.sync
    monkeypatch.setattr(ledger.group_sync, "sync", lambda: (ledger.syncs.append(1), real())[1])
    yield ledger
    ledger.close()


def test_a_refusal_is_answered_only_once_what_it_read_is_on_disk(group_ledger):
    """A 404/409/422 reads the ledger (another worker's commit, maybe not synced yet) like a 200 does."""
    with pytest.raises(Refusal), group_ledger.locked(7, "k", "r1"):
        raise Refusal(422, "idempotency_key_reused", "reused")
    assert len(group_ledger.syncs) == 1
    with pytest.raises(Refusal), group_ledger.claimed("k", "o1", "outcome_id", "outcome", 7):
        raise Refusal(404, "outcome_unknown_order", "unknown")
    assert len(group_ledger.syncs) == 2
    with pytest.raises(ZeroDivisionError), group_ledger.claimed("k", "o2", "outcome_id", "outcome"):
        1 / 0  # noqa: B018 - a failure, not an answer: nothing to wait for
    assert len(group_ledger.syncs) == 2


def test_a_decision_found_outside_the_lock_is_on_disk_before_it_is_replayed(group_ledger):
    """``find_outputs`` answers a request whose id another transaction committed meanwhile
    (``handle_decision``'s ``DuplicateRequest``): that commit may not be synced yet."""
    from bench.service.profiler import _ledger_only

    _ledger_only(group_ledger, 0)  # one decision with a fixed row: key "profile", request "ledger-0"
    assert len(group_ledger.syncs) == 1
    assert group_ledger.find_outputs("profile", "nope") == (None, None)
    assert len(group_ledger.syncs) == 1
    assert group_ledger.find_outputs("profile", "ledger-0")[1] == "-"
    assert len(group_ledger.syncs) == 2


def test_a_failed_log_fsync_degrades_decisions_and_fails_readiness(
    make_app, config, presale_body, buyer_with_star, monkeypatch
):
    from tests.serving.conftest import API_KEY

    app = make_app(config | {"sqlite_synchronous": "GROUP"})
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    assert client.get("/readyz").status_code == 200

    def failing(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(serving.ledger.engine, "_fsync_path", failing)
    answer = client.post("/v1/decisions", json=presale_body(buyer_with_star(5), 500)).json
    assert [d["code"] for d in answer["declines"]] == ["risk_service_degraded"], answer
    monkeypatch.undo()  # the disk is back: the worker still cannot prove what reached it
    answer = client.post("/v1/decisions", json=presale_body(buyer_with_star(5), 500)).json
    assert [d["code"] for d in answer["declines"]] == ["risk_service_degraded"], answer
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["database"] == "unreachable: OSError"


def test_postgresql_commits_are_flushed_even_where_synchronous_commit_is_off():
    """A role or server default of ``synchronous_commit=off`` would answer before the log is flushed."""
    for url, expected in (
        (f"{PG_URL}?options=-c%20synchronous_commit%3Doff", "local"),
        (f"{PG_URL}?options=-c%20synchronous_commit%3Dremote_apply", "remote_apply"),
        (PG_URL, "on"),
    ):
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == expected, url
        finally:
            engine.dispose()
