"""The ledger's invariants under random sequences of decisions and outcomes (hypothesis state machine).

Every step runs through the service's own decision and outcome path (``serving.handle``) on
three ledgers at once: the in-memory ledger of the backtest, SQLite and the real PostgreSQL.
A plain model kept here says what each step must answer; after every step the test checks:

- all three ledgers gave the same answer (decision, declines, limits; outcome codes and releases);
- the answer is the model's (a settled order or refund is never approved again; caps, exposure
  and quotas as the test policy states);
- the buyer's open exposure equals the unpaid balances of the buyer's open approved orders,
  read from each ledger's own rows (no order excluded), and the quota counts exactly the fast
  refunds first approved in the window;
- nothing is released beyond what was held, and a replayed request gets the stored answer.

``LEDGER_MACHINE_EXAMPLES`` sets the number of sequences (500 in the suite; more for a soak run).
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from serving.config import ServingConfig
from serving.decide import BuyerRating
from serving.handle import handle_decision, handle_outcome
from serving.http.metrics import Metrics
from serving.ledger.idempotency import Refusal
from serving.ledger.in_memory import MemoryLedger
from serving.ledger.store import Ledger, make_engine
from serving.ledger.tables import RESERVATIONS
from serving.policy import parse_policy
from tests.serving.conftest import PG_URL

EXAMPLES = int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "500"))
STARS = {0: 5, 1: 4, 2: 3}  # buyer slot -> star
CAP = {3: 1000, 4: 3000, 5: 5000}  # presale amount cap
LIMIT = {3: 1000, 4: 2500, 5: 6000}  # presale exposure limit
REFUND_CAP = {3: 300, 4: 800, 5: 2000}
QUOTA_COUNT = {3: 1, 4: 2, 5: 3}
QUOTA_AMOUNT = {3: 300, 4: 1000, 5: 3000}
WINDOW_DAYS = 30
POLICY = {
    "version": "machine-1",
    "currency": "CNY",
    "quota_window_days": WINDOW_DAYS,
    "max_reasons": 4,
    "services": {
        "presale_ship_before_balance": {
            "min_stars": 3,
            "amount_cap": CAP,
            "min_deposit_ratio": 0.1,
            "exposure_limit": LIMIT,
        },
        "fast_refund": {
            "min_stars": 3,
            "amount_cap": REFUND_CAP,
            "quota_count": QUOTA_COUNT,
            "quota_amount": QUOTA_AMOUNT,
            "evidence": {"photos_required_above": 100, "min_photos": 1},
            "kinds": ["refund_only", "return_and_refund"],
        },
    },
    "hard_declines": [],
    "flags": [],
}
PRESALE, REFUND = "presale_ship_before_balance", "fast_refund"
AMOUNTS = (100, 400, 1000, 2000, 2800)  # presale order amounts (10% deposit)
REFUND_AMOUNTS = (50, 120, 250, 700)
START = datetime(2026, 1, 1)


@dataclass(frozen=True)
class FixedLive:
    """What ``handle_decision`` reads of the live model: a fixed star per buyer, no head."""

    policy: object
    stars: dict
    model_version: str = "machine"
    rating: object = "fixed"

    def rate(self, buyer_id: int) -> BuyerRating:
        star = self.stars[buyer_id]
        return BuyerRating(star=star, score=350 + 120 * star, p_bad=0.1 / star)

    def head_risk(self, request, rating, now):
        return None


@dataclass
class OrderModel:
    balance: int = 0  # the latest decision's balance (minor units)
    basis: int | None = None  # the balance at the latest approval
    paid: int = 0
    state: str = "open"

    @property
    def held(self) -> int:
        if self.basis is None or self.state in ("paid", "canceled"):
            return 0
        return max(self.basis - self.paid, 0)


@dataclass
class RefundModel:
    amount: int = 0  # the latest decision's amount
    approved: int | None = None  # the amount of the latest approval
    first_approved: datetime | None = None
    state: str = "open"

    returned: bool = False  # the goods came back once: nothing is held again, whatever is posted later

    @property
    def held(self) -> int:
        return 0 if self.approved is None or self.returned else self.approved


@dataclass
class BuyerModel:
    star: int
    orders: dict = field(default_factory=dict)
    refunds: dict = field(default_factory=dict)

    def exposure(self, but: int | None = None) -> int:
        return sum(o.held for ref, o in self.orders.items() if ref != but)

    def quota(self, now: datetime, but: int | None = None) -> tuple[int, int]:
        since = now - timedelta(days=WINDOW_DAYS)
        live = [
            r.approved
            for ref, r in self.refunds.items()
            if ref != but and r.approved is not None and r.first_approved >= since
        ]
        return len(live), sum(live)


def _minor(units: int) -> int:
    return units * 100


class Backends:
    """The three ledgers, their tables made once per test; sequences use their own buyer ids."""

    def __init__(self, tmp_path, schema: str) -> None:
        self.memory = MemoryLedger()  # replaced per sequence
        self.sqlite = Ledger(make_engine(f"sqlite:///{tmp_path / 'machine.db'}", sqlite_synchronous="NORMAL"))
        self.postgres = Ledger(make_engine(PG_URL, schema), schema)
        for ledger in (self.sqlite, self.postgres):
            ledger.create()
            ledger.ping()  # fails loudly when the database is not there

    def all(self) -> list:
        return [self.memory, self.sqlite, self.postgres]

    def close(self) -> None:
        self.postgres.drop()
        for ledger in (self.sqlite, self.postgres):
            ledger.close()


def _held_rows(ledger, buyer: int) -> tuple[int, int, int]:
    """(presale exposure, refunds in quota since ``START``, fast refunds held) read from the ledger's rows."""
    if isinstance(ledger, MemoryLedger):
        book = ledger.positions.get(buyer, {})
        return (
            sum(p.held for (s, _), p in book.items() if s == PRESALE),
            sum(1 for (s, _), p in book.items() if s == REFUND and p.amount > 0),
            sum(p.held for (s, _), p in book.items() if s == REFUND),
        )
    r = RESERVATIONS.c
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(r.service, func.sum(r.amount_minor - r.released_minor), func.count())
            .where(r.buyer_id == buyer, (r.service == PRESALE) | (r.amount_minor > 0))
            .group_by(r.service)
        ).all()
    found = {service: (int(total), int(count)) for service, total, count in rows}
    return found.get(PRESALE, (0, 0))[0], found.get(REFUND, (0, 0))[1], found.get(REFUND, (0, 0))[0]


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    schema = f"machine_{uuid.uuid4().hex[:12]}"
    made = Backends(tmp_path_factory.mktemp("machine"), schema)
    yield made
    made.close()


class LedgerMachine(RuleBasedStateMachine):
    backends: Backends
    sequence = 0

    @initialize()
    def start(self) -> None:
        LedgerMachine.sequence += 1
        base = (os.getpid() % 1000) * 10**9 + int(time.time() * 1000) % 10**6 * 1000 + LedgerMachine.sequence
        self.buyers = {slot: base * 10 + slot for slot in STARS}
        self.refs = base * 1000  # ids of this sequence's orders and refunds: refs + 100 x slot + 0..13
        self.models = {self.buyers[slot]: BuyerModel(star) for slot, star in STARS.items()}
        self.backends.memory = MemoryLedger()
        self.live = FixedLive(parse_policy(POLICY), {self.buyers[s]: star for s, star in STARS.items()})
        self.config = ServingConfig()
        self.metrics = Metrics()
        self.now = START
        self.sent: list[tuple[dict, dict]] = []  # (body, answer) of decisions made
        self.outcomes_sent: list[tuple[dict, dict]] = []

    # -- helpers ---------------------------------------------------------------------------------

    def _tick(self) -> None:
        self.now += timedelta(seconds=1)

    def _decide(self, body: dict) -> dict:
        self._tick()
        answers = []
        for ledger in self.backends.all():
            out = handle_decision(body, self.live, ledger, self.config, self.metrics, 0.0, "k", self.now).body
            answers.append({k: v for k, v in out.items() if k != "decision_id"})
        assert answers[0] == answers[1] == answers[2], answers
        return answers[0]

    def _concurrent(self, body: dict) -> None:
        """The body twice at once (two request ids) on each SQL ledger, one after the other in memory."""
        self._tick()
        twins = [dict(body, request_id=f"{body['request_id']}-{i}") for i in range(2)]
        answers = []
        for ledger in self.backends.all():
            if isinstance(ledger, MemoryLedger):
                got = [self._decide_on(ledger, twin) for twin in twins]
            else:
                with ThreadPoolExecutor(2) as pool:
                    got = list(pool.map(lambda twin, ledger=ledger: self._decide_on(ledger, twin), twins))
            answers.append(sorted(a["decision"] for a in got))
        assert answers[0] == answers[1] == answers[2], answers
        assert len(set(answers[0])) == 1, "a retry of the same order at the same amount decides the same"

    def _decide_on(self, ledger, body: dict) -> dict:
        return handle_decision(body, self.live, ledger, self.config, self.metrics, 0.0, "k", self.now).body

    def _outcome(self, body: dict) -> tuple[int, str | None, int]:
        self._tick()
        results = []
        for ledger in self.backends.all():
            try:
                got = handle_outcome(body, self.live, ledger, self.config, "k", self.now)
                results.append((200, None, round(got["released"] * 100), got["replayed"]))
            except Refusal as refusal:
                results.append((refusal.status, refusal.code, 0, False))
        assert results[0] == results[1] == results[2], results
        return results[0][:3]

    # -- decisions -------------------------------------------------------------------------------

    @rule(slot=st.sampled_from(list(STARS)), order=st.integers(0, 1), amount=st.sampled_from(AMOUNTS))
    def presale(self, slot: int, order: int, amount: int) -> None:
        self._presale(slot, order, amount, concurrent=False)

    @rule(slot=st.sampled_from(list(STARS)), order=st.integers(0, 1), amount=st.sampled_from(AMOUNTS))
    def concurrent_retries(self, slot: int, order: int, amount: int) -> None:
        """Two checkouts send the same order at once under different request ids."""
        self._presale(slot, order, amount, concurrent=True)

    def _presale(self, slot: int, order: int, amount: int, concurrent: bool) -> None:
        buyer = self.buyers[slot]
        model = self.models[buyer]
        body = {
            "request_id": uuid.uuid4().hex,
            "service": PRESALE,
            "buyer_id": buyer,
            "order": {
                "order_id": self.refs + 100 * slot + order,
                "amount": amount,
                "currency": "CNY",
                "category": "beauty",
                "deposit_amount": amount // 10,
                "balance_due_at": "2030-01-01T00:00:00Z",
            },
        }
        balance = _minor(amount - amount // 10)
        o = model.orders.setdefault(order, OrderModel())
        if concurrent:
            self._concurrent(body)
        settled = o.state != "open" or balance - o.paid <= 0
        hold = max(balance - o.paid, 0)
        fits = _minor(amount) <= _minor(CAP[model.star]) and model.exposure(but=order) + hold <= _minor(
            LIMIT[model.star]
        )
        answer = self._decide(body)
        codes = [d["code"] for d in answer["declines"]]
        assert ("already_settled" in codes) == settled, (o, codes)
        assert (answer["decision"] == "approve") == (not settled and fits), (o, answer)
        o.balance = balance
        if answer["decision"] == "approve":
            o.basis = balance  # it holds the balance still unpaid: basis - paid
        self.sent.append((body, answer))

    @rule(slot=st.sampled_from(list(STARS)), refund=st.integers(0, 1), amount=st.sampled_from(REFUND_AMOUNTS))
    def fast_refund(self, slot: int, refund: int, amount: int) -> None:
        buyer = self.buyers[slot]
        model = self.models[buyer]
        body = {
            "request_id": uuid.uuid4().hex,
            "service": REFUND,
            "buyer_id": buyer,
            "refund": {
                "refund_id": self.refs + 100 * slot + refund,
                "order_id": self.refs + 100 * slot + 10 + refund,
                "amount": amount,
                "currency": "CNY",
                "reason": "damaged",
                "kind": "return_and_refund",
                "evidence_photos": 1,
                "order_amount": amount * 2,
                "category": "apparel",
                "ordered_at": "2025-12-01T00:00:00Z",
            },
        }
        r = model.refunds.setdefault(refund, RefundModel())
        count, total = model.quota(self.now + timedelta(seconds=1), but=refund)  # _decide's tick
        settled = r.state != "open"
        fits = (
            amount <= REFUND_CAP[model.star]
            and count + 1 <= QUOTA_COUNT[model.star]
            and total + _minor(amount) <= _minor(QUOTA_AMOUNT[model.star])
        )
        answer = self._decide(body)
        codes = [d["code"] for d in answer["declines"]]
        assert ("already_settled" in codes) == settled, (r, codes)
        assert (answer["decision"] == "approve") == (not settled and fits), (r, count, total, answer)
        r.amount = _minor(amount)
        if answer["decision"] == "approve":
            r.approved = _minor(amount)
            r.first_approved = r.first_approved or self.now
        self.sent.append((body, answer))

    @precondition(lambda self: self.sent)
    @rule(pick=st.integers(0, 10**6), same_body=st.booleans())
    def retry_same_request(self, pick: int, same_body: bool) -> None:
        body, first = self.sent[pick % len(self.sent)]
        if same_body:
            again = self._decide(body)
            assert again["replayed"] is True
            assert {k: v for k, v in again.items() if k != "replayed"} == {
                k: v for k, v in first.items() if k != "replayed"
            }, "an acknowledged decision never changes"
        else:
            other = dict(body, buyer_id=body["buyer_id"])
            key = "order" if "order" in body else "refund"
            other[key] = dict(body[key], amount=body[key]["amount"] + 1)
            self._tick()
            for ledger in self.backends.all():
                with pytest.raises(Refusal) as refused:
                    handle_decision(other, self.live, ledger, self.config, self.metrics, 0.0, "k", self.now)
                assert refused.value.status == 422

    # -- outcomes --------------------------------------------------------------------------------

    @rule(
        slot=st.sampled_from(list(STARS)),
        order=st.integers(0, 1),
        kind=st.sampled_from(["balance_paid", "balance_paid", "order_canceled", "balance_defaulted"]),
        share=st.sampled_from([None, 0.25, 0.5, 1.0, 1.5]),
    )
    def presale_outcome(self, slot: int, order: int, kind: str, share: float | None) -> None:
        buyer = self.buyers[slot]
        o = self.models[buyer].orders.get(order)
        amount = None
        if kind == "balance_paid" and share is not None:
            amount = max(1, round(o.balance * share)) if o else 100
        body = {
            "outcome_id": uuid.uuid4().hex,
            "kind": kind,
            "buyer_id": buyer,
            "order_id": self.refs + 100 * slot + order,
        }
        if amount is not None:
            body["amount"] = amount / 100
        status, code, released = self._outcome(body)
        if o is None:
            assert (status, code) == (404, "outcome_order_unknown")
            return
        left = o.balance - o.paid
        held = o.held
        if o.state == "canceled":
            assert (status, code) == (409, "outcome_order_closed")
        elif kind == "balance_paid":
            pay = left if amount is None else amount
            if left <= 0 or pay > left:
                assert (status, code) == (409, "outcome_exceeds_balance")
            else:
                assert status == 200
                o.paid += pay
                if o.paid >= o.balance:
                    o.state = "paid"
                assert released == (held if o.state == "paid" else min(pay, held))
        elif o.state == "paid" or left <= 0:
            assert (status, code) == (409, "outcome_order_closed")
        else:
            assert status == 200
            if kind == "order_canceled":
                assert released == held
                o.state = "canceled"
            else:
                assert released == 0
                o.state = "defaulted"
        assert released <= held, "nothing is released beyond what was held"
        if status == 200:  # a refused outcome is not stored: sending it again is refused again
            self.outcomes_sent.append((body, {"status": status, "released": released}))

    @rule(
        slot=st.sampled_from(list(STARS)),
        refund=st.integers(0, 1),
        kind=st.sampled_from(["goods_returned", "goods_returned", "goods_not_returned", "refund_abuse"]),
    )
    def refund_outcome(self, slot: int, refund: int, kind: str) -> None:
        buyer = self.buyers[slot]
        r = self.models[buyer].refunds.get(refund)
        body = {
            "outcome_id": uuid.uuid4().hex,
            "kind": kind,
            "buyer_id": buyer,
            "refund_id": self.refs + 100 * slot + refund,
        }
        status, code, released = self._outcome(body)
        if r is None:
            assert (status, code) == (404, "outcome_refund_unknown")
            return
        assert status == 200
        held = r.held
        if kind == "goods_returned":
            assert released == held
            r.state, r.returned = "returned", True
        else:
            assert released == 0
            r.state = "not_returned" if kind == "goods_not_returned" else "abuse"
        self.outcomes_sent.append((body, {"status": status, "released": released}))

    @precondition(lambda self: self.outcomes_sent)
    @rule(pick=st.integers(0, 10**6))
    def replay_outcome(self, pick: int) -> None:
        body, first = self.outcomes_sent[pick % len(self.outcomes_sent)]
        self._tick()
        for ledger in self.backends.all():
            got = handle_outcome(body, self.live, ledger, self.config, "k", self.now)
            assert got["replayed"] is True and round(got["released"] * 100) == first["released"]

    @rule(days=st.sampled_from([1, 7, 15, 29, 31]))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def sums_match_the_model(self) -> None:
        if not hasattr(self, "models"):
            return
        for buyer, model in self.models.items():
            expected_refunds = sum(1 for r in model.refunds.values() if r.approved is not None)
            expected = (model.exposure(), expected_refunds, sum(r.held for r in model.refunds.values()))
            for ledger in self.backends.all():
                assert _held_rows(ledger, buyer) == expected, (type(ledger).__name__, model)


@pytest.mark.timeout(1800)
def test_ledger_invariants_hold_on_every_backend(backends):
    LedgerMachine.backends = backends
    machine = type("Machine", (LedgerMachine,), {})
    machine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=16,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,  # the same sequences on every machine, whatever an earlier run saved
    )
    machine.TestCase().runTest()
