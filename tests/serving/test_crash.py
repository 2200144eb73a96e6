"""Crash tests of the real service (gunicorn, gevent workers, production settings) on a SQLite ledger:
every decision answered 200 is in the ledger with its reservation after a kill -9 of the whole
process group, and after a simulated power cut.

The power cut: ``powercut.c`` (compiled here with gcc, preloaded into the service) copies each
ledger file at every fsync into a shadow directory, and the directory's entries at every fsync
of the directory; after the kill the ledger is rebuilt from the shadow alone (what a disk holds
after a power cut is what was fsynced; ``-shm`` is dropped, a file whose name was never synced is
absent). It does not model torn or reordered writes within one fsync interval (see the C file).
Negative controls prove the simulation can fail: with ``NORMAL`` durability, and with ``GROUP``
whose sync is removed, acknowledged decisions are lost.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from serving.ledger.engine import make_engine
from serving.ledger.store import Ledger
from tests.serving.conftest import API_KEY

CLIENTS = 8
KILL_AFTER = 150  # acknowledged decisions before the kill
SHIM = Path(__file__).with_name("powercut.c")


class Load:
    """Clients sending presale decisions (new request and order ids, buyers rated 4-5 stars, so
    most are approved and hold a reservation) until stopped; ``acked`` maps each request id answered
    200 with a recorded decision to its answer (a ``risk_service_degraded`` decline has no
    ``decision_id``: it is never recorded, so there is nothing to keep)."""

    def __init__(self, url: str, buyers: list[int]) -> None:
        self.url, self.buyers = url, buyers
        self.acked: dict[str, dict] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(i,)) for i in range(CLIENTS)]

    def body(self, n: int) -> dict:
        return {
            "request_id": uuid.uuid4().hex,
            "service": "presale_ship_before_balance",
            "buyer_id": self.buyers[n % len(self.buyers)],
            "order": {
                "order_id": n,
                "amount": "300.00",
                "currency": "CNY",
                "category": "beauty",
                "deposit_amount": "30.00",
                "balance_due_at": "2030-11-11T00:00:00Z",
            },
        }

    def _send(self, client: int) -> None:
        n = client
        while not self.stop.is_set():
            n += CLIENTS
            body = self.body(n)
            request = urllib.request.Request(
                f"{self.url}/v1/decisions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
            except (OSError, http.client.HTTPException):  # the server is gone: not acknowledged
                continue
            if answer["decision_id"] is None:  # declined degraded: answered but never recorded
                continue
            with self._lock:
                self.acked[body["request_id"]] = answer | {"body": body}

    def run_until_killed(self, proc: subprocess.Popen) -> dict[str, dict]:
        """Load until ``KILL_AFTER`` decisions are acknowledged, SIGKILL the process group mid-load."""
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(self.acked) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        assert len(self.acked) >= KILL_AFTER, f"only {len(self.acked)} decisions answered in 60 s"
        approved = [a for a in self.acked.values() if a["decision"] == "approve"]
        assert approved, "no approval: the reservations would not be checked"
        return dict(self.acked)


def _ledger_rows(db: Path) -> tuple[dict[str, tuple], dict[str, int]]:
    """The ledger's decisions ``{request_id: (decision_id, decision, reserved_minor)}`` and open
    reservations ``{decision_id: amount_minor}``, read after SQLite's own recovery; the file must
    pass ``integrity_check``."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        decisions = {
            r[0]: r[1:]
            for r in conn.execute("SELECT request_id, decision_id, decision, reserved_minor FROM decisions")
        }
        holds = dict(conn.execute("SELECT decision_id, amount_minor FROM reservations"))
    finally:
        conn.close()
    return decisions, holds


def _missing(acked: dict[str, dict], db: Path) -> list[str]:
    """Request ids answered 200 that the ledger does not hold; fails on a decision half-written (an
    approval without its reservation, or one answered otherwise than recorded)."""
    decisions, holds = _ledger_rows(db)
    for decision_id, _, reserved in decisions.values():
        if reserved > 0:
            assert holds.get(decision_id) == reserved, f"decision {decision_id} without its reservation"
    for request_id, answer in acked.items():
        if request_id in decisions:
            assert decisions[request_id][:2] == (answer["decision_id"], answer["decision"])
    return [r for r in acked if r not in decisions]


@pytest.fixture
def ledger_dir(tmp_path) -> Path:
    """A directory holding only the ledger, its tables created beforehand and the file closed (so
    the service starts with no write-ahead log, as after a clean stop)."""
    folder = tmp_path / "ledger"
    ledger = Ledger(make_engine(f"sqlite:///{folder / 'ledger.db'}"))
    ledger.create()
    ledger.close()
    return folder


@pytest.fixture
def buyers(buyer_with_star) -> list[int]:
    return [buyer_with_star(star, nth) for star in (4, 5) for nth in range(20)]


def test_kill_9_mid_load_loses_no_acknowledged_decision(gunicorn_server, ledger_dir, buyers):
    settings = {"database_url": f"sqlite:///{ledger_dir / 'ledger.db'}", "sqlite_synchronous": "GROUP"}
    url = gunicorn_server(workers=2, **settings)
    acked = Load(url, buyers).run_until_killed(url.proc)
    assert _missing(acked, ledger_dir / "ledger.db") == []

    url = gunicorn_server(workers=2, **settings)  # restarted on the same ledger: retries replay
    for request_id in list(acked)[:5]:
        retry = urllib.request.Request(
            f"{url}/v1/decisions",
            data=json.dumps(acked[request_id]["body"]).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
            method="POST",
        )
        with urllib.request.urlopen(retry, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["replayed"] is True and answer["decision_id"] == acked[request_id]["decision_id"]


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    """``powercut.c`` compiled; gcc is required (the test fails without it, it never skips)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found: the power-cut test compiles tests/serving/powercut.c with it")
    out = tmp_path_factory.mktemp("shim") / "powercut.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out), str(SHIM), "-ldl"], check=True)
    return out


def _power_cut_image(ledger_dir: Path, shadow: Path, out: Path) -> Path:
    """The ledger as a disk would hold it after a power cut: the files whose names were synced
    (``.entries``), each with its last synced content (empty if it was never synced)."""
    out.mkdir()
    names = (shadow / ".entries").read_text().split()
    for name in ("ledger.db", "ledger.db-wal"):
        if name in names:
            source = shadow / name
            (out / name).write_bytes(source.read_bytes() if source.exists() else b"")
    return out / "ledger.db"


def _unsynced_group_conf(tmp_path: Path) -> Path:
    """The production gunicorn settings with ``GroupSync.sync`` removed (a negative control)."""
    conf = tmp_path / "unsynced_conf.py"
    conf.write_text(
        "from serving.http.gunicorn_conf import *  # noqa: F403\n"
        "from serving.ledger.engine import GroupSync\n\n"
        "GroupSync.sync = lambda self: None\n"
    )
    return conf


@pytest.mark.parametrize("durability", ["GROUP", "FULL", "NORMAL", "GROUP without its sync"])
def test_power_cut_loses_no_acknowledged_decision_with_group_commit(
    gunicorn_server, ledger_dir, buyers, shim, tmp_path, monkeypatch, durability
):
    """GROUP and FULL: nothing acknowledged is lost, with background checkpoints (and log
    restarts) every 0.2 s during the load. The controls run without checkpoints (a checkpoint
    syncs the log and would rescue the decisions before it): they must lose acknowledged
    decisions. Every setting keeps them all through the kill -9 itself."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    shutil.copy(ledger_dir / "ledger.db", shadow / "ledger.db")  # the state at start, all synced
    (shadow / ".entries").write_text("ledger.db\n")
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("POWERCUT_WATCH", str(ledger_dir))
    monkeypatch.setenv("POWERCUT_SHADOW", str(shadow))
    settings = {
        "database_url": f"sqlite:///{ledger_dir / 'ledger.db'}",
        "sqlite_synchronous": durability.split()[0],
        "checkpoint_interval_s": 0.2 if durability in ("GROUP", "FULL") else 0,
    }
    args = ("-c", str(_unsynced_group_conf(tmp_path))) if "without" in durability else ()
    url = gunicorn_server(workers=2, args=args, **settings)
    acked = Load(url, buyers).run_until_killed(url.proc)
    assert _missing(acked, ledger_dir / "ledger.db") == [], "lost to a kill -9: not a power-cut question"

    missing = _missing(acked, _power_cut_image(ledger_dir, shadow, tmp_path / "after"))
    if durability in ("GROUP", "FULL"):
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged decisions lost"
    else:
        assert missing, "the simulation lost nothing without the sync: it would not catch a missing one"
