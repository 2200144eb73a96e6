"""The decision log's propensities as training weights (``training.propensity``), read from a real
ledger database on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from serving.ledger.engine import make_engine
from serving.ledger.store import Ledger
from serving.ledger.tables import DECISIONS
from tests.serving.conftest import PG_URL, pg_schema  # noqa: F401 (the fixture)
from training.propensity import MAX_WEIGHT, logged_propensities, shipped_weights

PRESALE = "presale_ship_before_balance"


def _row(ref: int, decision: str, propensity: float, minute: int, service: str = PRESALE) -> dict:
    return {
        "decision_id": str(uuid.uuid4()),
        "key_id": "k",
        "request_id": str(uuid.uuid4()),
        "fingerprint": "",
        "created_at": dt.datetime(2024, 6, 1) + dt.timedelta(minutes=minute),
        "service": service,
        "buyer_id": 7,
        "ref_id": ref,
        "decision": decision,
        "requested_minor": 100_00,
        "reserved_minor": 0,
        "policy_version": "p",
        "latency_ms": 1.0,
        "propensity": propensity,
        "inputs": {},
        "outputs": {},
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path, pg_schema):  # noqa: F811 (the imported fixture)
    url, schema = (
        (f"sqlite:///{tmp_path}/ledger.db", None) if request.param == "sqlite" else (PG_URL, pg_schema)
    )
    engine = make_engine(url, schema)
    Ledger(engine, schema).create()
    rows = [
        _row(1, "approve", 0.03, 0),  # explored: stands for 33 declined presales like it
        _row(1, "approve", 1.0, 5),  # a later retry of the same order: the first decision counts
        _row(2, "approve", 1.0, 1),  # approved on merit
        _row(3, "decline", 0.97, 2),  # a decline that stood
        _row(4, "approve", 0.001, 3),  # weight clipped
        _row(9, "approve", 0.5, 4, service="fast_refund"),  # another service
    ]
    with engine.begin() as conn:
        conn.execute(insert(DECISIONS), rows)
    engine.dispose()
    return url, schema


def test_the_first_decision_of_each_opportunity_with_its_propensity(log_url):
    url, schema = log_url
    logged = logged_propensities(url, PRESALE, schema).set_index("ref_id")
    assert sorted(logged.index) == [1, 2, 3, 4]
    assert logged.loc[1, "propensity"] == pytest.approx(0.03) and logged.loc[1, "approved"]
    assert not logged.loc[3, "approved"]


def test_shipped_presales_the_log_approved_weigh_one_over_their_propensity(log_url):
    url, schema = log_url
    rows = pd.DataFrame({"order_id": [1, 2, 3, 4, 5, 1], "shipped": [True, True, False, True, True, False]})
    weights = shipped_weights(rows, "order_id", "shipped", logged_propensities(url, PRESALE, schema))
    # 1: explored and shipped; 2: approved on merit; 3: declined; 4: clipped; 5: not in the log (history);
    # the last row is order 1 not shipped (held): weight 1
    assert weights == pytest.approx([1 / 0.03, 1.0, 1.0, MAX_WEIGHT, 1.0, 1.0])


def test_no_log_weighs_every_row_one():
    rows = pd.DataFrame({"order_id": [1, 2], "shipped": [True, False]})
    assert np.array_equal(shipped_weights(rows, "order_id", "shipped", None), [1.0, 1.0])


def test_a_missing_or_foreign_database_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such SQLite database"):
        logged_propensities(f"sqlite:///{tmp_path}/nothing.db", PRESALE)
    assert not (tmp_path / "nothing.db").exists(), "reading a log must not create one"
    empty = tmp_path / "empty.db"
    make_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(ValueError, match="cannot read the decision log"):
        logged_propensities(f"sqlite:///{empty}", PRESALE)
