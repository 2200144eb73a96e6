"""Replay a window of opportunities through the service's own decision path, offline.

Every presale deposit and refund request of the window becomes the body checkout would have
sent, in time order; each is decided by ``serving.handle.handle_decision`` (the service's
handler: parse, rate, price with the head, decide, record) against the in-memory ledger
(``serving.ledger.in_memory``, the same position rules as the SQL ledger), at the instant it
happened, with the buyer's signals from the snapshot the service would have had (published
daily: ``features.pit.published_as_of``). Payments, cancellations, defaults, returns and
confirmed abuse are posted as outcomes at the instant each became a fact
(``features.outcomes``), so exposure and quotas are held and released as they were.

Nothing here re-states a policy rule or a ledger rule: a change to either changes the backtest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_signals
from features.legacy import LEGACY_SIGNALS
from features.outcomes import RETURN_KIND, presale_outcomes, refund_outcomes
from features.pit import published_as_of
from features.registry import get as get_signal
from serving.config import ServingConfig, load_config
from serving.decide import DEGRADED, policy_read
from serving.handle import Priced, assess, handle_decision, handle_outcome, read_outcome
from serving.http.metrics import Metrics
from serving.ledger.idempotency import Refusal
from serving.ledger.in_memory import MemoryLedger
from serving.ledger.tables import DecisionRow
from serving.live import Live, live_for_snapshot
from serving.policy import FAST_REFUND, PRESALE, Policy
from serving.publish.snapshot import FileSnapshot, SnapshotMeta
from serving.schema import OUTCOME_KINDS, Outcome, Refund, parse_decision

KEY = "backtest"
DAY = pd.Timedelta(days=1)
TABLES = ("buyers", "orders", "presales", "refunds")
ORDER_COLUMNS = ["amount", "category", "canceled_at", "created_at"]  # what a request reads of its order


@dataclass(frozen=True)
class Event:
    """One call the replay makes: a decision body or an outcome body, at ``t`` (naive UTC)."""

    t: pd.Timestamp
    order: int  # ties at one instant: decisions before outcomes, then by id
    kind: str  # "decide" or "outcome"
    body: dict
    snapshot_day: pd.Timestamp | None = None  # the as-of of the snapshot it is decided on (features.pit)


def _money(x: float, decimals: int) -> float:
    return round(float(x), decimals)


def _iso(t: pd.Timestamp) -> str:
    return t.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_key(event: Event) -> tuple:
    """The order events are sent in: time, a decision before an outcome at the same instant, then the id."""
    return event.t, event.order, event.body.get("request_id") or event.body["outcome_id"]


def window_events(
    tables: dict[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp, currency: str, decimals: int
) -> list[Event]:
    """The decisions and outcomes of ``[start, end)`` as checkout and the platform would send them.

    Args:
        tables: Raw tables (presales, refunds, orders).
        start: First instant of the window (UTC).
        end: End of the window (UTC, exclusive).
        currency: The policy currency.
        decimals: Its decimals (amounts are rounded to them).

    Returns:
        Events in time order. Outcomes are those of the window's own opportunities that became
        facts inside the window.
    """
    orders = tables["orders"].set_index("order_id")
    events: list[Event] = []
    pre = tables["presales"]
    pre = pre[(pre["deposit_paid_at"] >= start) & (pre["deposit_paid_at"] < end)]
    bad = presale_outcomes(pre)
    ordered = orders.loc[pre["order_id"].to_numpy(), ORDER_COLUMNS]  # each row's order, looked up at once
    for row, outcome, order in zip(
        pre.itertuples(index=False), bad.itertuples(index=False), ordered.itertuples(index=False), strict=True
    ):
        oid = int(row.order_id)
        body = {
            "request_id": f"{PRESALE}-{oid}",
            "service": PRESALE,
            "buyer_id": int(row.buyer_id),
            "order": {
                "order_id": oid,
                "amount": _money(order.amount, decimals),
                "currency": currency,
                "category": str(order.category),
                "deposit_amount": _money(row.deposit_amount, decimals),
                "balance_due_at": _iso(row.balance_due_at),
            },
        }
        facts = [
            ("balance_paid", row.balance_paid_at),
            ("order_canceled", order.canceled_at),
            ("balance_defaulted", outcome.t if outcome.bad else pd.NaT),
        ]
        events += _opportunity(row.deposit_paid_at, body, facts, "order_id", oid, end)
    ref = tables["refunds"]
    ref = ref[(ref["requested_at"] >= start) & (ref["requested_at"] < end)]
    loss = refund_outcomes(ref)
    ordered = orders.loc[ref["order_id"].to_numpy(), ORDER_COLUMNS]
    for row, outcome, order in zip(
        ref.itertuples(index=False),
        loss.itertuples(index=False),
        ordered.itertuples(index=False),
        strict=True,
    ):
        rid = int(row.refund_id)
        body = {
            "request_id": f"{FAST_REFUND}-{rid}",
            "service": FAST_REFUND,
            "buyer_id": int(row.buyer_id),
            "refund": {
                "refund_id": rid,
                "order_id": int(row.order_id),
                "amount": _money(row.amount, decimals),
                "reason": str(row.reason),
                "kind": str(row.kind),
                "evidence_photos": int(row.evidence_photos),
                "order_amount": _money(order.amount, decimals),
                "category": str(order.category),
                "ordered_at": _iso(order.created_at),
            },
        }
        unreturned = outcome.t if outcome.bad and row.kind == RETURN_KIND else pd.NaT
        facts = [
            ("goods_returned", row.return_received_at),
            ("goods_not_returned", unreturned if pd.isna(row.abuse_confirmed_at) else pd.NaT),
            ("refund_abuse", row.abuse_confirmed_at),
        ]
        events += _opportunity(row.requested_at, body, facts, "refund_id", rid, end)
    events.sort(key=event_key)
    days = published_as_of(pd.Series([e.t for e in events], dtype="datetime64[us, UTC]"))
    return [replace(e, snapshot_day=day) for e, day in zip(events, days, strict=True)]


def _opportunity(
    t: pd.Timestamp, body: dict, facts: list[tuple[str, Any]], key: str, ref: int, end: pd.Timestamp
) -> list[Event]:
    """One request's decision at ``t`` and the outcomes among ``facts`` (kind, instant or NaT) that
    become facts in ``[t, end)``, keyed by ``key`` = ``ref``."""
    decision = Event(t, 0, "decide", body)
    return [decision] + [
        Event(at, 1, "outcome", _outcome(kind, body["buyer_id"], key, ref, at))
        for kind, at in facts
        if pd.notna(at) and t <= at < end
    ]


def _outcome(kind: str, buyer: int, key: str, ref: int, t: pd.Timestamp) -> dict:
    return {
        "outcome_id": f"{kind}-{ref}",
        "kind": kind,
        "buyer_id": int(buyer),
        key: ref,
        "occurred_at": _iso(t),
    }


def daily_signals(tables: dict[str, pd.DataFrame], events: list[Event], names: list[str]) -> pd.DataFrame:
    """Each deciding buyer's signals as of the UTC midnight before each decision (the daily publish).

    Returns:
        ``buyer_id``, ``as_of`` and the signals ``names`` (plus the legacy rules' inputs).
    """
    spine = pd.DataFrame(
        {
            "buyer_id": [e.body["buyer_id"] for e in events if e.kind == "decide"],
            "as_of": [e.snapshot_day for e in events if e.kind == "decide"],
        }
    ).drop_duplicates(ignore_index=True)
    wanted = list(dict.fromkeys([*names, *LEGACY_SIGNALS]))
    return build_signals(tables, spine, [get_signal(n) for n in wanted])


def day_lives(
    signals: pd.DataFrame, names: list[str], rating, policy: Policy
) -> Iterator[tuple[pd.Timestamp, Live]]:
    """The service's ``Live`` for each day: its model and policy on that day's published snapshot."""
    for day, rows in signals.groupby("as_of", sort=True):
        meta = SnapshotMeta(
            version=f"backtest-{day:%Y%m%d}",
            as_of=day.isoformat(),
            signal_names=tuple(names),
            n_buyers=len(rows),
        )
        snapshot = FileSnapshot(
            meta, rows["buyer_id"].to_numpy(np.int64), rows[names].to_numpy(np.float32, copy=True)
        )
        yield day, live_for_snapshot(policy, rating, snapshot)


def decision_row(event: Event, answer: dict) -> dict:
    """One decision of a replay as a row: what was asked, at risk (currency units), and answered."""
    body = event.body
    if "order" in body:
        ref, at_risk = body["order"]["order_id"], body["order"]["amount"] - body["order"]["deposit_amount"]
    else:
        ref, at_risk = body["refund"]["refund_id"], body["refund"]["amount"]
    declines = answer["declines"]
    return {
        "service": body["service"],
        "ref_id": ref,
        "buyer_id": body["buyer_id"],
        "t": event.t,
        "decision": answer["decision"],
        "star": answer["star"],
        "p_loss": answer["p_loss"],
        "expected_loss": answer["expected_loss"],
        "at_risk": at_risk,
        "first_decline": declines[0]["code"] if declines else None,
        "declines": ",".join(d["code"] for d in declines),
        "propensity": (answer.get("exploration") or {}).get("propensity", 1.0),
    }


def replay(
    events: list[Event],
    lives: dict[pd.Timestamp, Live],
    ledger: MemoryLedger | None = None,
    config: ServingConfig | None = None,
) -> pd.DataFrame:
    """Send every event through the decision path in time order.

    Args:
        events: From ``window_events``.
        lives: Day (UTC midnight) -> the ``Live`` the service had that day.
        ledger: The ledger (default: a new ``MemoryLedger``).
        config: The service configuration (default: ``ServingConfig()``).

    Returns:
        One row per decision: service, ref_id, buyer_id, t, decision, star, p_loss,
        expected_loss, at_risk (currency units) and the first decline code.
    """
    ledger = MemoryLedger() if ledger is None else ledger
    config = ServingConfig(watch_interval_s=0) if config is None else config
    metrics = Metrics()

    rows = []
    any_live = next(iter(lives.values()))
    for event in events:
        t = event.t.tz_convert("UTC").tz_localize(None)
        if event.kind == "outcome":
            with contextlib.suppress(Refusal):  # e.g. a payment after a cancel: refused as the service would
                handle_outcome(event.body, any_live, ledger, config, KEY, t)
            continue
        live = lives[event.snapshot_day]
        answer = handle_decision(event.body, live, ledger, config, metrics, 0.0, KEY, t).body
        rows.append(decision_row(event, answer))
    frame = pd.DataFrame(rows)
    if not frame.empty and (frame["first_decline"] == DEGRADED).any():
        n = int((frame["first_decline"] == DEGRADED).sum())
        raise RuntimeError(f"backtest: {n} decisions degraded (the model or snapshot failed); see the log")
    return frame


def price(
    events: list[Event], lives: dict[pd.Timestamp, Live], config: ServingConfig | None = None
) -> list[Priced]:
    """Rate and price every decision event as ``handle_decision`` does, without reasons (no TreeSHAP).

    The buyer's rating and the head's probability depend on the model, the snapshot and the
    request, never on the policy, so a policy search prices a window once.
    """
    config = ServingConfig(watch_interval_s=0) if config is None else config
    out = []
    for event in events:
        if event.kind != "decide":
            continue
        live = lives[event.snapshot_day]
        live = replace(live, policy=replace(live.policy, max_reasons=0))
        policy = live.policy
        request = parse_decision(event.body, config.max_amount, policy.currency, policy.decimals)
        out.append(assess(request, live, event.t.tz_convert("UTC").tz_localize(None)))
    return out


@dataclass(frozen=True)
class Prepared:
    """What deciding a window reads of its events, whatever the policy: each event's instant (naive
    UTC) and each outcome validated as the service validates it (``serving.handle.read_outcome``;
    None for a decision event)."""

    times: list[pd.Timestamp]
    outcomes: list[tuple[Outcome, str] | None]


def prepare(events: list[Event], config: ServingConfig, decimals: int) -> Prepared:
    """``Prepared`` of ``events`` in the policy currency's ``decimals``.

    Raises:
        RequestError: An outcome body is invalid.
    """
    return Prepared(
        times=[event.t.tz_convert("UTC").tz_localize(None) for event in events],
        outcomes=[
            read_outcome(event.body, config, decimals) if event.kind == "outcome" else None
            for event in events
        ],
    )


def decide_priced(
    events: list[Event],
    priced: list[Priced],
    policy: Policy,
    config: ServingConfig | None = None,
    ledger: MemoryLedger | None = None,
    prepared: Prepared | None = None,
) -> pd.DataFrame:
    """The window decided under ``policy`` from its priced events: ``serving.decide`` and the ledger's rules.

    The same decisions as ``replay`` with a ``Live`` of this policy (tested), without building
    answers: what a policy search runs for each candidate. ``ledger`` (default: a new one) holds
    what earlier windows left open (exposure, quotas); it is updated in place. ``prepared`` (default:
    prepared here) is ``prepare(events, ...)``: a search deciding one window many times prepares it once.

    Returns:
        The columns of ``decision_row``, one row per decision event.

    Raises:
        RuntimeError: A decision degraded (the model or the snapshot failed).
    """
    config = ServingConfig(watch_interval_s=0) if config is None else config
    ledger = MemoryLedger() if ledger is None else ledger
    prepared = prepare(events, config, policy.decimals) if prepared is None else prepared
    if len(prepared.times) != len(events):
        raise ValueError(f"prepared holds {len(prepared.times)} events, the window {len(events)}")
    return pd.DataFrame(_decide_rows(events, priced, policy, ledger, prepared))


def _decide_rows(
    events: list[Event], priced: list[Priced], policy: Policy, ledger: MemoryLedger, prepared: Prepared
) -> list[dict]:
    """``decide_priced``'s rows, deciding on ``ledger`` (updated in place)."""
    unit = 10.0**policy.decimals
    rows, k = [], 0
    for event, t, read in zip(events, prepared.times, prepared.outcomes, strict=True):
        if read is not None:
            with contextlib.suppress(Refusal):  # as handle_outcome: e.g. a payment after a cancel
                ledger.record_outcome(read[0], KEY, read[1], t)
            continue
        p = priced[k]
        k += 1
        request = p.request
        with ledger.locked(request.buyer_id) as tx:
            _, _, usage = tx.read(
                request.request_id, policy.quota_window_days, request.service, request.ref_id, KEY, t
            )
            made = p.decide(policy, usage)
            row = DecisionRow(
                decision_id=None,
                key_id=KEY,
                request_id=request.request_id,
                fingerprint="",
                created_at=t,
                service=request.service,
                buyer_id=request.buyer_id,
                ref_id=request.ref_id,
                decision=made.decision,
                star=None if p.rating is None else p.rating.star,
                score=None if p.rating is None else p.rating.score,
                p_bad=None if p.rating is None else p.rating.p_bad,
                requested_minor=request.at_risk,
                reserved_minor=made.reserve,
                model_version=None,
                policy_version=policy.version,
                latency_ms=0.0,
                propensity=made.propensity,
                explored_minor=made.explored_loss,
                inputs=event.body,
                outputs=None,
            )
            tx.record(row, made.reserve)
        if made.declines and made.declines[0].code == DEGRADED:
            raise RuntimeError(f"backtest: decision {request.request_id} degraded: {made.declines[0].text}")
        rows.append(
            {
                "service": request.service,
                "ref_id": request.ref_id,
                "buyer_id": request.buyer_id,
                "t": event.t,
                "decision": made.decision,
                "star": None if p.rating is None else p.rating.star,
                "p_loss": None if p.head is None else p.head.p_loss,
                "expected_loss": None if p.head is None else p.head.expected_loss / unit,
                "at_risk": request.at_risk / unit,
                "first_decline": made.declines[0].code if made.declines else None,
                "declines": ",".join(f.code for f in made.declines),
                "propensity": made.propensity,
            }
        )
    return rows


BANDED_MEMORY = 4  # decisions kept per group of buyers: the best candidate's and the trials around it


@dataclass(frozen=True)
class _Group:
    """Buyers whose decisions were rated at the same stars: their events, in window order."""

    stars: dict[str, tuple[int, ...]]  # service -> the stars its decisions were rated at
    refunds: list[Refund]  # its fast-refund requests
    events: list[Event]
    priced: list[Priced]
    prepared: Prepared
    positions: list[int]  # each decision's place among the window's decisions


class Banded:
    """A priced window decided under many policies (a search's candidates), each group of buyers again
    only when the policy changed what the group's decisions read.

    A buyer's decisions read the policy (``serving.decide.policy_read`` at the stars they were rated
    at) and the ledger's positions of that buyer alone, as long as no order, refund, request id or
    outcome id is shared between buyers and no service explores (the exploration budget is shared by
    every buyer of a month). So the window's buyers are grouped by the stars of their decisions, a
    group is decided on a ledger of its own, and its rows are reused under a policy that reads the
    same for its decisions as one it was decided under (the last ``BANDED_MEMORY``). Otherwise the whole
    window is decided on one ledger. ``decide`` returns what ``decide_priced`` returns on a new
    ledger (tested); the decisions are made by the same code, fewer of them when candidates differ
    in a few stars.

    Attributes:
        decided: Decision events decided so far (the others were reused).
    """

    def __init__(self, events: list[Event], priced: list[Priced], prepared: Prepared) -> None:
        if len(prepared.times) != len(events):
            raise ValueError(f"prepared holds {len(prepared.times)} events, the window {len(events)}")
        self.events, self.priced, self.prepared = events, priced, prepared
        self.decided = 0
        buyers, owner, shared, k = [], {}, False, 0
        for read in prepared.outcomes:
            if read is None:
                request = priced[k].request
                k += 1
                buyer = request.buyer_id
                keys = (("ref", request.service, request.ref_id), ("request", request.request_id))
            else:
                outcome = read[0]
                buyer = outcome.buyer_id
                keys = (
                    ("ref", OUTCOME_KINDS[outcome.kind][0], outcome.ref_id),
                    ("outcome", outcome.outcome_id),
                )
            for key in keys:
                shared |= owner.setdefault(key, buyer) != buyer
            buyers.append(buyer)
        if k != len(priced):
            raise ValueError(f"the window has {k} decision events, priced {len(priced)}")
        self.shared = shared
        self._groups = [] if shared else self._grouped(buyers)
        self._memo: list[OrderedDict] = [OrderedDict() for _ in self._groups]

    def _grouped(self, buyers: list[int]) -> list[_Group]:
        stars: dict[int, set[tuple[str, int | None]]] = {}
        for p in self.priced:
            stars.setdefault(p.request.buyer_id, set()).add(
                (p.request.service, None if p.rating is None else p.rating.star)
            )
        members: dict[frozenset, list[int]] = {}
        for i, buyer in enumerate(buyers):
            members.setdefault(frozenset(stars.get(buyer, ())), []).append(i)
        positions = np.cumsum([read is None for read in self.prepared.outcomes]) - 1
        groups = []
        for key, indices in members.items():
            services: dict[str, tuple[int, ...]] = {}
            for service, star in sorted(key, key=lambda x: (x[0], x[1] or 0)):
                services[service] = services.get(service, ()) + (() if star is None else (star,))
            decisions = [i for i in indices if self.prepared.outcomes[i] is None]
            groups.append(
                _Group(
                    stars=services,
                    refunds=[
                        self.priced[positions[i]].request.refund
                        for i in decisions
                        if self.priced[positions[i]].request.service == FAST_REFUND
                    ],
                    events=[self.events[i] for i in indices],
                    priced=[self.priced[positions[i]] for i in decisions],
                    prepared=Prepared(
                        times=[self.prepared.times[i] for i in indices],
                        outcomes=[self.prepared.outcomes[i] for i in indices],
                    ),
                    positions=[int(positions[i]) for i in decisions],
                )
            )
        return groups

    def decide(self, policy: Policy) -> pd.DataFrame:
        """The window decided under ``policy``: ``decide_priced(events, priced, policy)``."""
        if (
            self.shared
            or policy.presale.exploration is not None
            or policy.fast_refund.exploration is not None
        ):
            self.decided += len(self.priced)
            return pd.DataFrame(_decide_rows(self.events, self.priced, policy, MemoryLedger(), self.prepared))
        rows: list[dict | None] = [None] * len(self.priced)
        for group, memo in zip(self._groups, self._memo, strict=True):
            read = policy_read(policy, group.stars, group.refunds)
            made = memo.get(read)
            if made is None:
                made = _decide_rows(group.events, group.priced, policy, MemoryLedger(), group.prepared)
                self.decided += len(made)
                memo[read] = made
                if len(memo) > BANDED_MEMORY:
                    memo.popitem(last=False)
            else:
                memo.move_to_end(read)
            for position, row in zip(group.positions, made, strict=True):
                rows[position] = row
        return pd.DataFrame(rows)


def served_replay(
    url: str,
    api_key: str,
    events: list[Event],
    signals: pd.DataFrame,
    names: list[str],
    snapshot: Path,
    clock: Path,
) -> list[dict]:
    """The same replay against a running service over HTTP: the service's answers, in order.

    The service must read its snapshot from ``snapshot`` and its time from ``clock``
    (``SERVING_REPLAY_CLOCK_FILE``), with one worker (``POST /v1/admin/reload`` reloads the
    worker that answers it). Each day the snapshot is republished as of its midnight and
    reloaded; before each call the clock is set to the event's instant.

    Raises:
        RuntimeError: The service answered a decision with anything but 200.
    """
    from serving.publish.snapshot import FileWriter

    def call(path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": api_key},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    answers, day = [], None
    for event in events:
        if event.kind == "decide" and event.snapshot_day != day:
            day = event.snapshot_day
            rows = signals[signals["as_of"] == day]
            writer = FileWriter(snapshot, names, day.isoformat())
            writer.append(rows["buyer_id"].to_numpy(np.int64), rows[names].to_numpy(np.float32))
            writer.commit()
            status, body = call("/v1/admin/reload", {"parts": ["snapshot"]})
            if status != 200:
                raise RuntimeError(f"reload answered {status}: {body}")
        clock.write_text(event.t.isoformat())
        status, body = call("/v1/decisions" if event.kind == "decide" else "/v1/outcomes", event.body)
        if event.kind == "decide":
            if status != 200:
                raise RuntimeError(f"decision {event.body['request_id']} answered {status}: {body}")
            answers.append(body)
    return answers


def judged(decisions: pd.DataFrame, tables: dict[str, pd.DataFrame], data: Path) -> pd.DataFrame:
    """The decisions with the truth's loss probability of approving (``p_true``) and the outcome (``bad``)."""
    from serving.offline.backtest_report import realised_bad, truth_of

    out = decisions.copy()
    out["p_true"] = np.nan
    out["bad"] = False
    for service in (PRESALE, FAST_REFUND):
        mask = (out["service"] == service).to_numpy()
        if not mask.any():
            continue
        refs = out.loc[mask, "ref_id"]
        p = truth_of(data, service, refs)
        if p is not None:
            out.loc[mask, "p_true"] = p
        out.loc[mask, "bad"] = realised_bad(tables, service, refs)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``python -m serving backtest`` options."""
    defaults = load_config({"watch_interval_s": 0})
    parser.add_argument("--data", type=Path, default=None, help="raw export directory (a replay)")
    parser.add_argument("--from", dest="start", default=None, help="first day of the window (UTC date)")
    parser.add_argument("--to", dest="end", default=None, help="day after the window (UTC date, exclusive)")
    parser.add_argument(
        "--log",
        action="store_true",
        help="instead of a replay, estimate --policy from the decision log and its outcomes (IPS, SNIPS, DR)",
    )
    parser.add_argument(
        "--database-url",
        default=defaults.database_url,
        help=f"the decision log (default {defaults.database_url})",
    )
    parser.add_argument("--database-schema", default=defaults.database_schema, help="its PostgreSQL schema")
    parser.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="candidate policy to judge beside the one in force (what-if)",
    )
    parser.add_argument(
        "--policy-in-force",
        type=Path,
        default=Path(defaults.policy_path),
        help=f"the policy in force (default {defaults.policy_path})",
    )
    parser.add_argument(
        "--model-uri", default=defaults.model_uri, help=f"model (default {defaults.model_uri})"
    )
    parser.add_argument(
        "--tracking-uri", default=defaults.mlflow_tracking_uri, help="MLflow tracking/registry URI"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--decisions", type=Path, default=None, help="write every decision to this parquet file"
    )


def backtest(
    data: Path,
    start: pd.Timestamp,
    end: pd.Timestamp,
    rating,
    policies: dict[str, Policy],
    progress: Callable[[str], None] = print,
    tables: dict[str, pd.DataFrame] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Replay ``[start, end)`` of the export under each policy; return the decisions and the report.

    Args:
        data: Raw export directory.
        start: First instant of the window (UTC).
        end: End of the window (UTC, exclusive).
        rating: The loaded rating artifact (``serving.live.load_model``).
        policies: Name -> policy to replay under (each on its own ledger).
        progress: Where progress lines go.
        tables: The export's raw tables when already loaded (default: read from ``data``).

    Returns:
        ``(name -> judged decisions, name -> report)``; each report has the legacy rule beside it.
    """
    from features.io import load_tables
    from serving.offline.backtest_report import legacy, report

    began = time.perf_counter()
    tables = load_tables(data) if tables is None else tables
    first = next(iter(policies.values()))
    events = window_events(tables, start, end, first.currency, first.decimals)
    decides = sum(e.kind == "decide" for e in events)
    progress(
        f"{decides:,} decisions and {len(events) - decides:,} outcomes in the window ({time.perf_counter() - began:.1f} s)"
    )
    names = list(rating.model.signal_names)
    signals = daily_signals(tables, events, names)
    progress(f"signals of {len(signals):,} buyer-days built ({time.perf_counter() - began:.1f} s)")
    priced = price(events, dict(day_lives(signals, names, rating, first)))
    progress(f"rated and priced ({time.perf_counter() - began:.1f} s)")
    decisions, reports, prepared = {}, {}, {}
    for name, policy in policies.items():
        if policy.decimals not in prepared:  # what deciding reads of the events, whatever the policy
            prepared[policy.decimals] = prepare(events, ServingConfig(watch_interval_s=0), policy.decimals)
        made = judged(decide_priced(events, priced, policy, prepared=prepared[policy.decimals]), tables, data)
        decisions[name] = made
        reports[name] = report(made, legacy(made, signals, tables))
        progress(f"replayed under {name} (version {policy.version}) ({time.perf_counter() - began:.1f} s)")
    return decisions, reports


def run(args: argparse.Namespace) -> int:
    """``python -m serving backtest``: print the report (and write it with ``--json``)."""
    from features.validate import ContractError
    from serving.live import load_model
    from serving.offline.backtest_report import render
    from serving.policy import PolicyError, load_policy

    if args.log:
        return run_log(args)
    if args.data is None or args.start is None or args.end is None:
        print("backtest: a replay needs --data, --from and --to (or --log)", file=sys.stderr)
        return 2
    try:
        start = pd.Timestamp(args.start, tz="UTC")
        end = pd.Timestamp(args.end, tz="UTC")
    except ValueError as exc:
        print(f"backtest: --from/--to: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print(f"backtest: --to {args.end} is not after --from {args.start}", file=sys.stderr)
        return 2
    config = load_config(
        {"model_uri": args.model_uri, "mlflow_tracking_uri": args.tracking_uri, "watch_interval_s": 0}
    )
    rating = load_model(config)
    names = list(rating.model.signal_names)
    try:
        policies = {"policy in force": load_policy(args.policy_in_force, names)}
        if args.policy is not None:
            policies["candidate"] = load_policy(args.policy, names)
    except (PolicyError, OSError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    try:
        decisions, reports = backtest(args.data, start, end, rating, policies)
    except ContractError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    for name, result in reports.items():
        print()
        print(
            render(
                result,
                f"{name} ({policies[name].version}), {args.start} to {args.end}, model {config.model_uri}",
            )
        )
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2))
    if args.decisions is not None:
        pd.concat([d.assign(policy=n) for n, d in decisions.items()]).to_parquet(args.decisions)
    return 0


def run_log(args: argparse.Namespace) -> int:
    """``python -m serving backtest --log --policy FILE``: off-policy estimates from the decision log."""
    from serving.ledger.store import Ledger, make_engine
    from serving.offline.ope import estimate, read_log, redecide
    from serving.policy import PolicyError, load_policy

    if args.policy is None:
        print("backtest --log: --policy (the candidate to estimate) is required", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.policy)
    except (PolicyError, OSError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    start = None if args.start is None else pd.Timestamp(args.start).tz_localize(None)
    end = None if args.end is None else pd.Timestamp(args.end).tz_localize(None)
    ledger = Ledger(make_engine(args.database_url, args.database_schema), args.database_schema)
    results = {}
    try:
        for service in (PRESALE, FAST_REFUND):
            log = read_log(ledger.engine, service, policy.decimals, start, end)
            if log.empty:
                continue
            candidate = np.array([redecide(row, policy) for row in log.to_dict("records")])
            results[service] = estimate(log, candidate) | {
                "logged_approvals": int(log["approved"].sum()),
                "logged_money": float(log.loc[log["approved"], "at_risk"].sum()),
                "logged_loss": float(log["loss"].sum()),
            }
    finally:
        ledger.close()
    for service, r in results.items():
        print(
            f"\n{service}: {r['decisions']:,} logged decisions, {r['logged_approvals']:,} approved, "
            f"money {r['logged_money']:,.0f}, realised loss {r['logged_loss']:,.0f}"
        )
        print(
            f"  candidate {policy.version}: {r['approvals']:,} approvals, money {r['money']:,.0f} "
            f"({r['unsupported']:,} approvals the log could never have made)"
        )
        for name in ("ips", "snips", "dr"):
            lo, hi = r[f"{name}_ci"]
            print(f"  loss {name.upper():5}: {r[name]:>12,.0f}  [{lo:,.0f}, {hi:,.0f}]")
    if not results:
        print("backtest --log: the decision log holds no decisions in that window", file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
