"""One decision end to end: validate, rate, lock, decide, log. No HTTP here.

The HTTP layer (``serving.api``) only decodes the body, calls ``handle_decision`` and
serialises what it returns. Every failure past validation becomes a decline with reason
``risk_service_degraded`` (logged, counted), never an exception, so checkout proceeds the
normal way.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from serving.config import ServingConfig
from serving.decide import DEGRADED, BuyerRating, Decision, DecisionRequest, decide, decline_unrated
from serving.ledger import DuplicateRequest, Ledger, utcnow
from serving.live import Live, Unrated
from serving.metrics import Metrics
from serving.schema import parse_decision

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
        | ({} if f.contribution is None else {"contribution": round(f.contribution, 6)})
        for f in items
    ]


def respond(
    request: DecisionRequest,
    decision: Decision,
    rating: BuyerRating | None,
    live: Live,
    decision_id: str | None,
) -> dict[str, Any]:
    """The JSON body of a decision (also what the decision log stores as outputs)."""
    return {
        "decision_id": decision_id,
        "request_id": request.request_id,
        "service": request.service,
        "buyer_id": request.buyer_id,
        "decision": decision.decision,
        "star": None if rating is None else rating.star,
        "score": None if rating is None else rating.score,
        "p_bad": None if rating is None else round(rating.p_bad, 6),
        "declines": _findings(decision.declines),
        "reasons": _findings(decision.reasons),
        "flags": _findings(decision.flags),
        "limits": decision.limits,
        "model_version": live.model_version,
        "policy_version": live.policy.version,
        "signals_as_of": None if rating is None else rating.as_of,
    }


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


def handle_decision(
    body: Any, live: Live, ledger: Ledger, config: ServingConfig, metrics: Metrics, started: float
) -> Answer:
    """Decide one ``POST /v1/decisions`` body.

    Args:
        body: The decoded JSON body.
        live: The model, policy and snapshot in force.
        ledger: The ledger and decision log.
        config: The service configuration (amount limit).
        metrics: Where to count decisions.
        started: ``time.perf_counter()`` when the request arrived (for the logged latency).

    Returns:
        The answer; a repeated ``request_id`` returns the stored body with ``replayed`` set.

    Raises:
        RequestError: The body is invalid (the caller answers 400).
    """
    request = parse_decision(body, config.max_amount, live.policy.currency)
    rating, unrated = _rate(live, request.buyer_id)
    if unrated is not None and unrated.code == DEGRADED:
        log.warning("request %s declined degraded: %s", request.request_id, unrated.text)
    inputs = json.dumps(body, separators=(",", ":"))  # everything that needs no lock happens before it
    decision_id = ledger.new_decision_id()
    created = utcnow()
    try:
        with ledger.locked(request.buyer_id) as tx:
            stored, usage = tx.read(
                request.request_id, live.policy.quota_window_days, request.service, request.ref_id
            )
            if stored is not None:
                return Answer(stored, replayed=True)
            if rating is None:
                decision = decline_unrated(unrated.code, unrated.text)
            else:
                decision = decide(request, rating, live.policy, usage)
            out = respond(request, decision, rating, live, decision_id)
            text = json.dumps(out, separators=(",", ":"))
            tx.record(
                {
                    "decision_id": decision_id,
                    "request_id": request.request_id,
                    "created_at": created,
                    "service": request.service,
                    "buyer_id": request.buyer_id,
                    "ref_id": request.ref_id,
                    "decision": decision.decision,
                    "star": out["star"],
                    "score": out["score"],
                    "p_bad": out["p_bad"],
                    "reserved": decision.reserve,
                    "model_version": live.model_version,
                    "policy_version": live.policy.version,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "inputs": inputs,
                    "outputs": text,
                },
                decision.reserve,
            )
    except DuplicateRequest:  # the same request_id committed concurrently (under another buyer's lock)
        try:
            stored = ledger.find_outputs(request.request_id)
        except Exception:  # noqa: BLE001
            stored = None
        if stored is not None:
            return Answer(stored, replayed=True)
        log.exception("request %s: ledger integrity error", request.request_id)
        return _degraded(request, live, "database", metrics)
    except Exception:  # noqa: BLE001 - database down, pool exhausted, anything: decline, never 5xx
        log.exception("request %s: ledger unavailable, declining degraded", request.request_id)
        return _degraded(request, live, "database", metrics)
    if unrated is not None and unrated.code == DEGRADED:
        metrics.inc("buyer_trust_degraded_total", (("cause", "model" if live.rating is None else "signals"),))
    metrics.inc(
        "buyer_trust_decisions_total", (("service", request.service), ("decision", decision.decision))
    )
    for finding in decision.declines:
        metrics.inc("buyer_trust_declines_total", (("service", request.service), ("code", finding.code)))
    return Answer(out, text=text)


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
