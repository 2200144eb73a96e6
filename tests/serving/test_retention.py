"""Retention: old decisions and outcomes go to parquet, then out of the database; interruptions lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from serving.ledger.engine import make_engine
from serving.ledger.retention import run_retention
from serving.ledger.store import Ledger
from serving.ledger.tables import DECISIONS, OUTCOMES, RESERVATIONS, utcnow
from tests.serving.conftest import PG_URL

NOW = utcnow()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path, pg_schema):
    if request.param == "postgresql":
        ledger = Ledger(make_engine(PG_URL, pg_schema), pg_schema)
    else:
        ledger = Ledger(make_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))
    ledger.create()  # fails loudly when the database is not there
    yield ledger
    ledger.drop()
    ledger.close()


def _decision(age_days: float, buyer: int, ref: int) -> dict:
    return {
        "decision_id": str(uuid.uuid4()),
        "key_id": "k" * 32,
        "request_id": uuid.uuid4().hex,
        "fingerprint": "f" * 64,
        "created_at": NOW - timedelta(days=age_days),
        "service": "presale_ship_before_balance",
        "buyer_id": buyer,
        "ref_id": ref,
        "decision": "decline",
        "star": 3,
        "score": 700,
        "p_bad": 0.01,
        "requested_minor": 900_00,
        "reserved_minor": 0,
        "model_version": "m/1",
        "policy_version": "p",
        "latency_ms": 1.5,
        "inputs": {"amount": "1000.00"},
        "outputs": {"decision": "decline"},
    }


def _outcome(age_days: float, buyer: int, ref: int) -> dict:
    moment = NOW - timedelta(days=age_days)
    return {
        "key_id": "k" * 32,
        "outcome_id": uuid.uuid4().hex,
        "fingerprint": "f" * 64,
        "kind": "balance_paid",
        "buyer_id": buyer,
        "service": "presale_ship_before_balance",
        "ref_id": ref,
        "amount_minor": 100,
        "occurred_at": moment,
        "recorded_at": moment,
        "released_minor": 0,
        "payload": {"outcome_id": "x"},
    }


@pytest.fixture
def filled(ledger):
    """24 old decisions and 11 old outcomes (2 + 1 of them on an order still held), 5 + 3 recent ones."""
    decisions = [_decision(100 + i, buyer=i, ref=i) for i in range(23)] + [
        _decision(1, 100 + i, i) for i in range(5)
    ]
    outcomes = [_outcome(200 + i, buyer=i, ref=i) for i in range(11)] + [
        _outcome(2, 100 + i, i) for i in range(3)
    ]
    decisions.append(_decision(150, buyer=0, ref=0))  # a second decision on buyer 0's held order
    hold = {
        "buyer_id": 0,
        "service": "presale_ship_before_balance",
        "ref_id": 0,
        "decision_id": decisions[0]["decision_id"],
        "amount_minor": 900_00,
        "released_minor": 0,
        "created_at": NOW - timedelta(days=100),
    }
    with ledger.engine.begin() as conn:
        conn.execute(DECISIONS.insert(), decisions)
        conn.execute(OUTCOMES.insert(), outcomes)
        conn.execute(RESERVATIONS.insert().values(hold))
    old_decisions = {d["decision_id"] for d in decisions if d["created_at"] < NOW - timedelta(days=30)}
    old_decisions -= {d["decision_id"] for d in decisions if d["buyer_id"] == 0}
    old_outcomes = {o["outcome_id"] for o in outcomes if o["recorded_at"] < NOW - timedelta(days=30)}
    old_outcomes -= {o["outcome_id"] for o in outcomes if o["buyer_id"] == 0}
    return {"decisions": old_decisions, "outcomes": old_outcomes, "total": (len(decisions), len(outcomes))}


def _exported(out: Path, name: str, key: str) -> list:
    keys = []
    for part in sorted((out / name).glob("*.parquet")):
        keys += pq.read_table(part).column(key).to_pylist()
    return keys


def _left(ledger, table, key) -> set:
    with ledger.engine.connect() as conn:
        return set(conn.execute(select(table.c[key])).scalars())


def _count(ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(DECISIONS)).scalar_one()


def _check_exactly_once(ledger, filled, out: Path) -> None:
    for name, table, key in (("decisions", DECISIONS, "decision_id"), ("outcomes", OUTCOMES, "outcome_id")):
        exported = _exported(out, name, key)
        assert len(exported) == len(set(exported)), f"{name}: a row exported twice"
        assert set(exported) == filled[name], f"{name}: exported rows differ from the old ones"
        left = _left(ledger, table, key)
        assert not (left & filled[name]), f"{name}: exported rows still in the database"
    total_d, total_o = filled["total"]
    assert len(_left(ledger, DECISIONS, "decision_id")) == total_d - len(filled["decisions"])
    assert len(_left(ledger, OUTCOMES, "outcome_id")) == total_o - len(filled["outcomes"])


def test_exports_old_rows_then_deletes_them(ledger, filled, tmp_path):
    out = tmp_path / "archive"
    report = run_retention(ledger, 30, out, batch_size=5, now=NOW)
    assert report.exported == {"decisions": 22, "outcomes": 10}
    assert len(report.parts["decisions"]) == 5 and len(report.parts["outcomes"]) == 2
    _check_exactly_once(ledger, filled, out)
    with ledger.engine.connect() as conn:
        kept = conn.execute(
            select(func.count()).select_from(DECISIONS).where(DECISIONS.c.buyer_id == 0)
        ).scalar()
    assert kept == 2, "decisions of an order still held stay for its outcomes"
    table = pq.read_table(report.parts["decisions"][0])
    row = table.to_pylist()[0]
    assert row["requested_minor"] == 900_00 and isinstance(row["requested_minor"], int)
    assert json.loads(row["inputs"]) == {"amount": "1000.00"}
    assert str(table.schema.field("created_at").type) == "timestamp[us]"
    again = run_retention(ledger, 30, out, batch_size=5, now=NOW)
    assert again.exported == {"decisions": 0, "outcomes": 0}
    _check_exactly_once(ledger, filled, out)


def test_an_interrupted_run_loses_nothing_and_can_be_rerun(ledger, filled, tmp_path):
    out = tmp_path / "archive"
    seen = []

    def crash_on_second_part(part: Path) -> None:
        seen.append(part)
        if len(seen) == 2:  # the part is durably written; its rows are not deleted yet
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_retention(ledger, 30, out, batch_size=7, now=NOW, on_part=crash_on_second_part)
    assert seen[1].exists()
    in_part = set(pq.read_table(seen[1]).column("decision_id").to_pylist())
    assert in_part <= _left(ledger, DECISIONS, "decision_id"), "the crash came before the delete"
    (out / "decisions" / ".half-written.parquet.tmp").write_bytes(b"PAR1 torn")  # a crash mid-write
    # rerun a day later: the cutoff moved, the batches fall differently; still exactly once
    report = run_retention(ledger, 30, out, batch_size=5, now=NOW + timedelta(days=1))
    assert report.recovered["decisions"] == 7
    _check_exactly_once(ledger, filled, out)


def test_the_command_survives_kill_9(tmp_path):
    """``python -m serving retention`` killed with SIGKILL mid-run, then rerun: every row once."""
    db = tmp_path / "ledger.db"
    ledger = Ledger(make_engine(f"sqlite:///{db}"))
    ledger.create()
    rows = [_decision(100 + i / 1000, buyer=i, ref=i) for i in range(3000)]
    with ledger.engine.begin() as conn:
        conn.execute(DECISIONS.insert(), rows)
    out = tmp_path / "archive"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")}
    env |= {"SERVING_DATABASE_URL": f"sqlite:///{db}"}
    cmd = [sys.executable, "-m", "serving", "retention", "--older-than-days", "30", "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--batch-size", "20"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _count(ledger) == 3000:
        time.sleep(0.01)  # until its first batches are exported and deleted, however slow the machine
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert 0 < len(_left(ledger, DECISIONS, "decision_id")) < 3000, "killed mid-run"
    done = subprocess.run(
        [*cmd, "--batch-size", "500"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "decisions: exported and deleted" in done.stdout
    exported = _exported(out, "decisions", "decision_id")
    assert len(exported) == len(set(exported)) == 3000
    assert not _left(ledger, DECISIONS, "decision_id")
    ledger.close()
