"""Fixtures for the decision service: a real tiny rating model, a snapshot, an app, a client."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from bench.tiny import save_tiny_rating, synthetic_dataset
from serving.app import close_app, create_app
from serving.auth import SCOPES, key_entry
from serving.snapshot import FileWriter

POLICY_SIGNALS = [
    "balances_unpaid_7d_count_365d",
    "balances_overdue_open",
    "violations_confirmed_fraud_count_all",
    "reviews_malicious_count_365d",
]
SIGNALS = [f"signal_{i}" for i in range(8)] + POLICY_SIGNALS  # the tiny model: risk falls with the last half
API_KEY = "test-key"  # every scope
KEY_SECRET = "test-secret-0123456789abcdef"
N_BUYERS = 3000
# Buyers with a policy signal set (all others have every policy signal at 0).
UNPAID_BUYER, FRAUD_BUYER, REVIEWER_BUYER = 0, 1, 2
UNKNOWN_BUYER = 10**9
TEST_POLICY = Path(__file__).with_name("policy.yaml")  # the tests' own policy, not the shipped one
TEST_POLICY_VERSION = "test-policy-1"  # its version (tests/serving/policy.yaml)


@pytest.fixture(scope="session")
def model_uri(tmp_path_factory) -> str:
    """A real ``RatingModel`` with both service heads and the review head, saved as a pyfunc directory
    (fit once per session, a few seconds): every decision of the service tests is priced by a head and
    held to the test policy's expected-loss allowance, as in production."""
    return save_tiny_rating(
        tmp_path_factory.mktemp("model") / "rating", SIGNALS, seed=0, heads=True, review=True
    )


@pytest.fixture(scope="session")
def rating(model_uri):
    from rating.artifact import load_rating

    return load_rating(model_uri)


@pytest.fixture(scope="session")
def snapshot_rows() -> tuple[np.ndarray, np.ndarray]:
    """buyer ids 0..N-1 and their signals; policy signals missing except for three marked buyers."""
    X = synthetic_dataset(SIGNALS, N_BUYERS, seed=11).X
    first = len(SIGNALS) - len(POLICY_SIGNALS)
    X[:, first:] = np.nan
    X[UNPAID_BUYER, first] = 1.0
    X[FRAUD_BUYER, first + 2] = 1.0
    X[REVIEWER_BUYER, first + 3] = 3.0
    return np.arange(N_BUYERS, dtype=np.int64), X


@pytest.fixture(scope="session")
def snapshot_file(tmp_path_factory, snapshot_rows) -> Path:
    ids, X = snapshot_rows
    path = tmp_path_factory.mktemp("online") / "snapshot.parquet"
    writer = FileWriter(path, SIGNALS, "2025-06-01T00:00:00+00:00")
    writer.append(ids[:1000], X[:1000])
    writer.append(ids[1000:], X[1000:])
    writer.commit()
    return path


@pytest.fixture(scope="session")
def stars(rating, snapshot_rows) -> np.ndarray:
    """Each buyer's star under the tiny model."""
    return rating.model.score(snapshot_rows[1]).star


@pytest.fixture(scope="session")
def buyer_with_star(stars):
    """``buyer_with_star(s)`` -> a buyer id (>= 10, no policy signal set) with ``s`` stars."""

    def pick(star: int, nth: int = 0) -> int:
        ids = np.flatnonzero(stars == star)
        ids = ids[ids >= 10]
        if len(ids) <= nth:
            pytest.fail(f"the tiny model rates fewer than {nth + 1} buyers {star} stars")
        return int(ids[nth])

    return pick


@pytest.fixture
def policy_file(tmp_path) -> Path:
    """A per-test copy of the tests' own policy, ``tests/serving/policy.yaml`` (tests may rewrite it)."""
    path = tmp_path / "policy.yaml"
    shutil.copy(TEST_POLICY, path)
    return path


@pytest.fixture
def config(tmp_path, model_uri, snapshot_file, policy_file) -> dict:
    return {
        "database_url": f"sqlite:///{tmp_path / 'serving.db'}",
        "model_uri": model_uri,
        "snapshot": str(snapshot_file),
        "policy_path": str(policy_file),
        "api_keys": [key_entry(API_KEY, KEY_SECRET, SCOPES)],
        "api_key_secret": KEY_SECRET,
        "watch_interval_s": 0,
    }


@pytest.fixture
def make_app():
    """``make_app(config)`` -> a started app, closed (threads stopped, pool disposed) after the test."""
    apps = []

    def make(config):
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app, config):
    return make_app(config)


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = API_KEY
    return client


def held_exposure(app, buyer_id: int) -> int:
    """The ledger's own sum (minor units) of what the buyer's open presale holds still hold, read
    from the reservations table over every hold of the buyer (no order left out)."""
    from sqlalchemy import func, select

    from serving.tables import RESERVATIONS

    r = RESERVATIONS.c
    query = select(func.coalesce(func.sum(r.amount_minor - r.released_minor), 0)).where(
        r.buyer_id == buyer_id, r.service == "presale_ship_before_balance", r.released_at.is_(None)
    )
    ledger = app.extensions["buyer_trust"].ledger
    with ledger.engine.connect() as conn:
        if ledger.schema:
            conn = conn.execution_options(schema_translate_map={None: ledger.schema})
        return int(conn.execute(query).scalar_one())


PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_schema():
    """A unique PostgreSQL schema name for one test; dropped afterwards whatever happened."""
    name = f"serving_test_{uuid.uuid4().hex[:12]}"
    yield name
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_app(request, make_app, config, pg_schema):
    """``ledger_app(**overrides)`` -> an app on SQLite or the real PostgreSQL (each test runs on both),
    its ledger pinged (fails loudly when the database is not there) and dropped afterwards."""
    ledgers = []

    def start(**overrides):
        cfg = config | overrides
        if request.param == "postgresql":
            cfg = cfg | {"database_url": PG_URL, "database_schema": pg_schema}
        app = make_app(cfg)
        ledger = app.extensions["buyer_trust"].ledger
        ledger.ping()
        ledgers.append(ledger)
        return app

    yield start
    for ledger in ledgers:
        ledger.drop()


def _presale_body(buyer_id: int, amount: float = 500.0, deposit: float | None = None, **over) -> dict:
    """A valid ship-before-balance request body."""
    order = {
        "order_id": over.pop("order_id", 1),
        "amount": amount,
        "currency": "CNY",
        "category": "beauty",
        "deposit_amount": amount * 0.1 if deposit is None else deposit,
        "balance_due_at": over.pop("balance_due_at", "2030-11-11T00:00:00Z"),
    }
    body = {
        "request_id": over.pop("request_id", uuid.uuid4().hex),
        "service": "presale_ship_before_balance",
        "buyer_id": buyer_id,
        "order": order,
    }
    body.update(over)
    return body


def _refund_body(buyer_id: int, amount: float = 50.0, photos: int = 1, **over) -> dict:
    """A valid fast-refund request body."""
    refund = {
        "refund_id": over.pop("refund_id", 1),
        "order_id": over.pop("order_id", 1),
        "amount": amount,
        "reason": "damaged",
        "kind": over.pop("kind", "return_and_refund"),
        "evidence_photos": photos,
        "order_amount": over.pop("order_amount", max(amount, 100.0)),
        "category": over.pop("category", "apparel"),
        "ordered_at": over.pop("ordered_at", "2025-06-01T00:00:00Z"),
    }
    body = {
        "request_id": over.pop("request_id", uuid.uuid4().hex),
        "service": "fast_refund",
        "buyer_id": buyer_id,
        "refund": refund,
    }
    body.update(over)
    return body


@pytest.fixture(scope="session")
def presale_body():
    """Builder of valid ship-before-balance bodies: ``presale_body(buyer_id, amount, deposit, **top_level)``."""
    return _presale_body


@pytest.fixture(scope="session")
def refund_body():
    """Builder of valid fast-refund bodies: ``refund_body(buyer_id, amount, photos, **top_level)``."""
    return _refund_body


@pytest.fixture(scope="session")
def ids() -> dict[str, int]:
    """Marked buyers: ``unpaid`` (unpaid balance), ``fraud``, ``reviewer`` (malicious reviews), ``unknown``."""
    return {
        "unpaid": UNPAID_BUYER,
        "fraud": FRAUD_BUYER,
        "reviewer": REVIEWER_BUYER,
        "unknown": UNKNOWN_BUYER,
    }


@pytest.fixture
def gunicorn_server(tmp_path, config):
    """``gunicorn_server(workers=2, args=(), **settings)`` -> base URL of a real gunicorn running the
    service with the production settings (``serving/gunicorn_conf.py``) on 127.0.0.1.

    ``args`` are extra gunicorn options (they override the production settings: a test that shows
    what those settings prevent); ``settings`` override the test config (as ``SERVING_*``
    variables); the process group is
    stopped after the test. ``server.metrics_dir`` and ``server.proc`` are exposed on the
    returned object.
    """
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    started = []

    class Server(str):
        proc: subprocess.Popen
        metrics_dir: Path
        log: Path

    def start(workers: int = 2, args: tuple[str, ...] = (), **settings) -> Server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        values = config | {"database_url": f"sqlite:///{tmp_path / 'gunicorn.db'}"} | settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")}
        for name, value in values.items():
            env[f"SERVING_{name.upper()}"] = (
                ",".join(value) if isinstance(value, list | tuple) else str(value)
            )
        metrics_dir = tmp_path / f"metrics-{port}"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        log = tmp_path / f"gunicorn-{port}.log"
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:serving.gunicorn_conf"]
        cmd += ["-b", f"127.0.0.1:{port}", "-w", str(workers), "--log-level", "warning", *args]
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*cmd, "serving.app:create_app()"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=tmp_path,
            )
        started.append(proc)
        url = Server(f"http://127.0.0.1:{port}")
        url.proc, url.metrics_dir, url.log = proc, metrics_dir, log
        deadline = time.monotonic() + 120
        last = "no answer"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return url
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:500]!r}"
                time.sleep(0.2)
            except OSError as exc:
                last = repr(exc)
                time.sleep(0.2)
        pytest.fail(f"gunicorn not ready in 120 s (last /readyz: {last}):\n{log.read_text()[-3000:]}")

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
