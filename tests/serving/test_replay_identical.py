"""A fixed script of decisions and outcomes gives the answers and ledger rows it gave before.

The decision path is trimmed for CPU from time to time (``docs/serving.md``, "Benchmarks"); such a
change must not move any decision, reason, answer byte or ledger row. This test replays a fixed,
seeded script through ``serving.handle`` (the functions the API calls) on the tests' tiny model,
snapshot and policy (with exploration switched on), on SQLite, and compares every answer (its JSON
text), every refusal and every row of the ledger's tables with ``replay_expected.jsonl.gz``.

That file is not written by hand: it is what this test's ``replay`` produced on the code before the
trims (commit da5ba6a), written with ``REPLAY_WRITE=path``:

    REPLAY_WRITE=tests/serving/replay_expected.jsonl.gz python -m pytest tests/serving/test_replay_identical.py

A change that means to alter decisions (a new model rule, another policy) regenerates it the same
way and says so. The tiny model is fit by the session fixture (``bench.tiny``; its LightGBM fits
gave the same model strings in repeated runs); the model's path, which changes per run, is written
as ``<model>``.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from serving.handle import handle_decision, handle_outcome
from serving.http.body import decode_json_object
from serving.ledger.idempotency import Refusal
from serving.schema import RequestError

EXPECTED = Path(__file__).with_name("replay_expected.jsonl.gz")  # 1.3 MB of JSON lines, gzipped
KEY = "replay-key"
STEPS = 400
EXPLORATION = "    exploration: {share: 0.3, monthly_loss_budget: 5000, seed: 11}\n"
TABLES = (  # every ledger table a decision or an outcome writes, in a stable order
    ("decisions", "decision_id"),
    ("reservations", "buyer_id, service, ref_id"),
    ("outcomes", "key_id, outcome_id"),
    ("exploration_spend", "service, month"),
)


def _with_exploration(policy_file: Path) -> None:
    """Both services explore (so explored approvals and the budget's rows are in the script)."""
    lines = policy_file.read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("    expected_loss_allowance:"):
            out.append(EXPLORATION)
    policy_file.write_text("".join(out))


def _script(rng: np.random.Generator, n_buyers: int) -> list[tuple[str, dict]]:
    """The requests: presales and refunds over a few buyers (so exposure and quotas bind), amounts as
    numbers and as decimal strings, replays, reused ids, repeated orders, outcomes, unknown buyers."""
    buyers = [0, 1, 2, *range(10, 60), 10**9]
    steps: list[tuple[str, dict]] = []
    sent: list[dict] = []
    approved_orders: list[tuple[int, int, int]] = []
    for i in range(STEPS):
        roll = rng.random()
        if sent and roll < 0.06:  # the same request again: a replay
            steps.append(("decision", sent[int(rng.integers(len(sent)))]))
            continue
        if sent and roll < 0.09:  # the same id with another amount: 422
            body = json.loads(json.dumps(sent[int(rng.integers(len(sent)))]))
            part = body.get("order") or body.get("refund")
            part["amount"] = str(int(rng.integers(101, 900))) + ".50"
            steps.append(("decision", body))
            continue
        if approved_orders and roll < 0.14:  # a balance payment on a presale decided before
            buyer, order, amount = approved_orders[int(rng.integers(len(approved_orders)))]
            steps.append(
                (
                    "outcome",
                    {
                        "outcome_id": f"o-{i}",
                        "kind": "balance_paid",
                        "buyer_id": buyer,
                        "order_id": order,
                        "amount": f"{amount * 0.3:.2f}",
                    },
                )
            )
            continue
        buyer = buyers[int(rng.integers(len(buyers)))]
        repeat = sent and roll < 0.2  # the same order or refund under a new request id
        ref = int(rng.integers(1, 40)) if not repeat else int(rng.integers(1, 40)) % 7
        amount = round(float(rng.uniform(1, 1500)), 2)
        text = f"{amount:.2f}" if rng.random() < 0.3 else amount
        if rng.random() < 0.5:
            deposit = round(amount * float(rng.choice([0.05, 0.1, 0.1, 0.3, 0.3])), 2)
            body = {
                "request_id": f"r-{i}",
                "service": "presale_ship_before_balance",
                "buyer_id": buyer,
                "order": {
                    "order_id": ref,
                    "amount": text,
                    "currency": "CNY",
                    "category": str(rng.choice(["beauty", "apparel", "electronics", "luxury"])),
                    "deposit_amount": deposit,
                    "balance_due_at": f"2025-{int(rng.integers(7, 12)):02d}-11T00:00:00Z",
                },
            }
            approved_orders.append((buyer, ref, amount))
        else:
            body = {
                "request_id": f"r-{i}",
                "service": "fast_refund",
                "buyer_id": buyer,
                "refund": {
                    "refund_id": ref,
                    "order_id": ref,
                    "amount": round(amount / 4, 2),
                    "reason": str(rng.choice(["damaged", "not_as_described", "no_longer_needed"])),
                    "kind": str(rng.choice(["refund_only", "return_and_refund"])),
                    "evidence_photos": int(rng.integers(0, 3)),
                    "order_amount": amount,
                    "category": "apparel",
                    "ordered_at": "2025-05-01T00:00:00Z",
                },
            }
        sent.append(body)
        steps.append(("decision", body))
    return steps


def replay(app) -> list[str]:
    """The script's answers, then the ledger's rows, one JSON line each (``latency_ms`` left out)."""
    s = app.extensions["buyer_trust"]
    live = s.runtime.live
    counter = iter(range(10**6))
    s.ledger.new_decision_id = lambda: str(uuid.UUID(int=next(counter), version=4))
    now = datetime(2025, 6, 20, 9, 0, 0)
    lines = []
    for step, (kind, body) in enumerate(_script(np.random.default_rng(20261208), 3000)):
        now += timedelta(hours=1, minutes=step % 7)
        raw = decode_json_object(json.dumps(body).encode())  # as the API decodes a body
        try:
            if kind == "decision":
                answer = handle_decision(raw, live, s.ledger, s.config, s.metrics, 0.0, KEY, now)
                text = answer.text if answer.text is not None else json.dumps(answer.body, sort_keys=True)
                out = {"replayed": answer.replayed, "answer": text}
            else:
                out = {"outcome": handle_outcome(raw, live, s.ledger, s.config, KEY, now)}
        except (Refusal, RequestError) as exc:
            out = {"refused": f"{type(exc).__name__}: {exc}"}
        lines.append(
            json.dumps({"step": step, kind: body["request_id" if kind == "decision" else "outcome_id"]} | out)
        )
    database = s.ledger.engine.url.database
    with sqlite3.connect(database) as conn:
        for table, order in TABLES:
            cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")  # noqa: S608 - constant names
            names = [c[0] for c in cursor.description]
            for row in cursor:
                record = {k: v for k, v in zip(names, row, strict=True) if k != "latency_ms"}
                lines.append(json.dumps({"table": table} | record, sort_keys=True))
    model = str(live.model_version)
    return [line.replace(json.dumps(model)[1:-1], "<model>") for line in lines]


@pytest.fixture
def replay_app(make_app, config, policy_file):
    _with_exploration(policy_file)
    return make_app(config | {"max_snapshot_age_s": 0})


def test_the_script_answers_and_records_as_before(replay_app):
    lines = replay(replay_app)
    written = os.environ.get("REPLAY_WRITE")
    if written:
        with gzip.open(written, "wt") as f:
            f.write("\n".join(lines) + "\n")
        pytest.skip(f"wrote {len(lines)} lines to {written}")
    with gzip.open(EXPECTED, "rt") as f:
        expected = f.read().splitlines()
    kinds = {json.loads(line).get("table", "answer") for line in lines}
    assert {"answer", "decisions", "reservations", "outcomes", "exploration_spend"} <= kinds
    for got, want in zip(lines, expected, strict=False):
        assert got == want, f"first difference:\n got  {got}\n want {want}"
    assert len(lines) == len(expected)
