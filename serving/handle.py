"""One decision end to end: validate, rate, lock, decide, log. No HTTP here.

The HTTP layer (``serving.http.api``) only decodes the body, calls ``handle_decision`` and
serialises what it returns. Every failure past validation becomes a decline with reason
``risk_service_degraded`` (logged, counted), never an exception, so checkout proceeds the
normal way.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from serving.config import ServingConfig
from serving.decide import DEGRADED, BuyerRating, Decision, HeadRisk, decide, decline_unrated
from serving.http.metrics import Metrics
from serving.ledger.idempotency import Refusal, fingerprint, key_reused
from serving.ledger.positions import Usage
from serving.ledger.store import DuplicateRequest, Ledger, utcnow
from serving.ledger.tables import DecisionRow
from serving.live import Live, Unrated
from serving.money import from_minor, json_text
from serving.policy import Policy
from serving.schema import DecisionRequest, parse_decision, parse_outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What the API returns: the body, its JSON text when already encoded, and whether it is a
    stored decision replayed."""

    body: dict[str, Any]
    replayed: bool = False
    text: str | None = None


def _findings(items) -> list[dict]:
    return [
        {"code": f.code, "text": f.text}
        | (
            {}
            if f.contribution is None or not math.isfinite(f.contribution)
            else {"contribution": round(f.contribution, 6)}
        )
        for f in items
    ]


def respond(
    request: DecisionRequest,
    decision: Decision,
    rating: BuyerRating | None,
    live: Live,
    decision_id: str | None,
    head: HeadRisk | None = None,
) -> dict[str, Any]:
    """The JSON body of a decision (also what the decision log stores as outputs).

    ``p_loss`` and ``expected_loss`` are the service head's view of this opportunity (null when the
    buyer could not be rated or the model has no head for the service).
    """
    return {
        "decision_id": decision_id,
        "request_id": request.request_id,
        "service": request.service,
        "buyer_id": request.buyer_id,
        "decision": decision.decision,
        "star": None if rating is None else rating.star,
        "score": None if rating is None else rating.score,
        "p_bad": None if rating is None else round(rating.p_bad, 6),
        "p_loss": None if head is None else round(head.p_loss, 6),
        "expected_loss": None if head is None else from_minor(head.expected_loss, live.policy.decimals),
        "declines": _findings(decision.declines),
        "reasons": _findings(decision.reasons),
        "flags": _findings(decision.flags),
        "limits": decision.limits,
        "model_version": live.model_version,
        "policy_version": live.policy.version,
        "signals_as_of": None if rating is None else rating.as_of,
        "exploration": {
            "propensity": round(decision.propensity, 6),
            "explored_over": _findings(decision.explored),
        },
        "replayed": False,
    }


def _replay(stored: dict | str | bytes, stored_fingerprint: str | None, fingerprint_now: str) -> Answer:
    """The stored answer marked as a replay, or the 422 when the request differs."""
    if stored_fingerprint != fingerprint_now:
        raise key_reused("request_id")
    body = json.loads(stored) if isinstance(stored, str | bytes) else dict(stored)
    return Answer(body | {"replayed": True}, replayed=True)


def _degraded(request: DecisionRequest, live: Live, cause: str, metrics: Metrics) -> Answer:
    metrics.inc("buyer_trust_degraded_total", (("cause", cause),))
    decision = decline_unrated(DEGRADED, "The risk service is degraded; proceed without the trust service.")
    return Answer(respond(request, decision, None, live, None))


def _rate(live: Live, buyer_id: int) -> tuple[BuyerRating | None, Unrated | None]:
    try:
        return live.rate(buyer_id), None
    except Unrated as exc:
        return None, exc
    except Exception as exc:  # noqa: BLE001 - a scoring failure degrades, it never raises
        log.exception("scoring buyer %s failed", buyer_id)
        return None, Unrated(DEGRADED, f"scoring failed: {type(exc).__name__}")


@dataclass(frozen=True)
class Priced:
    """A request rated and priced: what neither the policy nor the ledger changes.

    Attributes:
        request: The validated request.
        rating: The buyer's rating (None: the buyer could not be rated, ``unrated`` says why).
        unrated: Why there is no rating (``thin_file`` or ``risk_service_degraded``), else None.
        head: The service head's view of this opportunity (None: unrated, or no head).
    """

    request: DecisionRequest
    rating: BuyerRating | None
    unrated: Unrated | None
    head: HeadRisk | None

    def decide(self, policy: Policy, usage: Usage) -> Decision:
        """The decision under ``policy`` with the buyer's live ``usage`` (``serving.decide.decide``),
        or the decline of a buyer who could not be rated."""
        if self.rating is None:
            return decline_unrated(self.unrated.code, self.unrated.text)
        return decide(self.request, self.rating, policy, usage, self.head)


def assess(request: DecisionRequest, live: Live, now: datetime) -> Priced:
    """Rate the buyer and price the opportunity, once per decision: the handler, the demo, the
    backtest and the benches all decide from this.

    Never raises: a model, snapshot or head failure is an unrated ``risk_service_degraded`` (logged).

    Args:
        request: The validated request.
        live: The model, policy and snapshot in force (its ``max_reasons`` says how many reasons).
        now: The decision's time (naive UTC): the head's context reads it.
    """
    rating, unrated = _rate(live, request.buyer_id)
    head = None
    if rating is not None:
        try:
            head = live.head_risk(request, rating, now)
        except Exception as exc:  # noqa: BLE001 - a scoring failure degrades, it never raises
            log.exception("request %s: head scoring failed", request.request_id)
            rating, unrated = (
                None,
                Unrated(DEGRADED, f"head scoring failed: {type(exc).__name__}", cause="head"),
            )
    return Priced(request, rating, unrated, head)


def handle_decision(
    body: Any,
    live: Live,
    ledger: Ledger,
    config: ServingConfig,
    metrics: Metrics,
    started: float,
    key_id: str = "",
    now: datetime | None = None,
) -> Answer:
    """Decide one ``POST /v1/decisions`` body.

    Args:
        body: The decoded JSON body.
        live: The model, policy and snapshot in force.
        ledger: The ledger and decision log.
        config: The service configuration (amount limit).
        metrics: Where to count decisions.
        started: ``time.perf_counter()`` when the request arrived (for the logged latency).
        key_id: The calling API key's id (``serving.ledger.idempotency.key_id``): request ids are scoped to it.
        now: The decision's time (naive UTC; default: the clock). The backtest replays history with it.

    Returns:
        The answer; a repeated ``request_id`` with the same request returns the stored body
        with ``replayed`` set.

    Raises:
        RequestError: The body is invalid (the caller answers 400).
        Refusal: 422 the ``request_id`` was used with a different request, 409 the first
            request with it is still being decided.
    """
    policy = live.policy
    request = parse_decision(body, config.max_amount, policy.currency, policy.decimals)
    request_fingerprint = fingerprint(request, leave_out=("request_id",))
    created = now or utcnow()
    priced = assess(request, live, created)
    rating, unrated, head = priced.rating, priced.unrated, priced.head
    if unrated is not None and unrated.code == DEGRADED:
        log.warning("request %s declined degraded: %s", request.request_id, unrated.text)
    inputs = json_text(body)  # everything that needs no lock happens before it
    decision_id = ledger.new_decision_id()
    try:
        with ledger.locked(request.buyer_id, key_id, request.request_id) as tx:
            stored, stored_fingerprint, usage = tx.read(
                request.request_id, policy.quota_window_days, request.service, request.ref_id, key_id, created
            )
            if stored is not None:
                return _replay(stored, stored_fingerprint, request_fingerprint)
            decision = priced.decide(policy, usage)
            out = respond(request, decision, rating, live, decision_id, head)
            text = json.dumps(out, separators=(",", ":"))
            row = DecisionRow(
                decision_id=decision_id,
                key_id=key_id,
                request_id=request.request_id,
                fingerprint=request_fingerprint,
                created_at=created,
                service=request.service,
                buyer_id=request.buyer_id,
                ref_id=request.ref_id,
                decision=decision.decision,
                star=out["star"],
                score=out["score"],
                p_bad=out["p_bad"],
                requested_minor=request.at_risk,
                reserved_minor=decision.reserve,
                model_version=live.model_version,
                policy_version=policy.version,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                propensity=decision.propensity,
                explored_minor=decision.explored_loss,
                inputs=inputs,
                outputs=text,
            )
            tx.record(row, decision.reserve)
    except Refusal:
        raise
    except DuplicateRequest:  # the same request_id committed concurrently (under another buyer's lock)
        try:
            stored, stored_fingerprint = ledger.find_outputs(key_id, request.request_id)
        except Exception:  # noqa: BLE001
            stored = stored_fingerprint = None
        if stored is not None:
            return _replay(stored, stored_fingerprint, request_fingerprint)
        log.exception("request %s: ledger integrity error", request.request_id)
        return _degraded(request, live, "database", metrics)
    except Exception:  # noqa: BLE001 - database down, pool exhausted, anything: decline, never 5xx
        log.exception("request %s: ledger unavailable, declining degraded", request.request_id)
        return _degraded(request, live, "database", metrics)
    if unrated is not None and unrated.code == DEGRADED:
        cause = unrated.cause or ("model" if live.rating is None else "signals")
        metrics.inc("buyer_trust_degraded_total", (("cause", cause),))
    metrics.decision(request.service, decision.decision, [finding.code for finding in decision.declines])
    return Answer(out, text=text)


def handle_outcome(
    body: Any,
    live: Live,
    ledger: Ledger,
    config: ServingConfig,
    key_id: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record one ``POST /v1/outcomes`` body, checked against the ledger.

    Args:
        body: The decoded JSON body.
        live: For the policy currency's decimals.
        ledger: The ledger.
        config: The service configuration (amount limit).
        key_id: The calling API key's id: outcome ids are scoped to it.
        now: When it is recorded (naive UTC; default: the clock).

    Returns:
        ``{"outcome_id", "kind", "released", "replayed"}`` (``released`` in currency units).

    Raises:
        RequestError: The body is invalid (400).
        Refusal: 404 unknown order or refund, 409 another buyer's order, a payment beyond the
            balance, a closed order, or the same ``outcome_id`` in flight; 422 an
            ``outcome_id`` reused with a different request.
        Exception: The ledger is unavailable (nothing was recorded; the caller answers 503).
    """
    decimals = live.policy.decimals
    outcome = parse_outcome(body, config.max_amount, decimals)
    outcome_fingerprint = fingerprint(outcome, leave_out=("outcome_id", "payload"))
    outcome = replace(outcome, payload=json.loads(json_text(body)))
    result = ledger.record_outcome(outcome, key_id, outcome_fingerprint, now)
    released = result.pop("released_minor")
    return {
        "outcome_id": result["outcome_id"],
        "kind": result["kind"],
        "released": from_minor(released, decimals),
        "replayed": result["replayed"],
    }


def buyer_rating(live: Live, buyer_id: int) -> dict[str, Any]:
    """What a buyer-facing page shows: stars, score and the top reasons (or why there is none)."""
    rating, unrated = _rate(live, buyer_id)
    base = {"buyer_id": buyer_id, "model_version": live.model_version}
    if rating is None:
        return base | {
            "rated": False,
            "star": None,
            "score": None,
            "reason": {"code": unrated.code, "text": unrated.text},
        }
    return base | {
        "rated": True,
        "star": rating.star,
        "score": rating.score,
        "reasons": _findings(rating.reasons[: live.policy.max_reasons]),
        "signals_as_of": rating.as_of,
    }
