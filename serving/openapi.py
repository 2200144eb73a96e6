"""The OpenAPI 3 document, derived from the request declarations in ``serving.schema``."""

from __future__ import annotations

from typing import Any

from serving.auth import HEADER
from serving.schema import AMOUNT, DECISION_BODY, OUTCOME_BODY, Field

_FINDING = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "text": {"type": "string"},
        "contribution": {"type": "number", "description": "Log-odds this signal added (model reasons only)."},
    },
    "required": ["code", "text"],
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "Dotted path of the offending field."},
    },
    "required": ["error", "message"],
}
_DECISION = {
    "type": "object",
    "properties": {
        "decision_id": {
            "type": ["string", "null"],
            "description": "Null only for an unlogged degraded decline.",
        },
        "request_id": {"type": "string"},
        "service": {"type": "string"},
        "buyer_id": {"type": "integer"},
        "decision": {"type": "string", "enum": ["approve", "decline"]},
        "star": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
        "score": {"type": ["integer", "null"], "minimum": 350, "maximum": 950},
        "p_bad": {"type": ["number", "null"], "description": "Probability of a bad outcome in 90 days."},
        "declines": {
            "type": "array",
            "items": _FINDING,
            "description": "Why it declined (empty on approve).",
        },
        "reasons": {"type": "array", "items": _FINDING, "description": "Signals that raised the risk most."},
        "flags": {"type": "array", "items": _FINDING},
        "limits": {
            "type": "object",
            "description": "Caps, exposure and quotas that applied, used and remaining.",
        },
        "model_version": {"type": ["string", "null"]},
        "policy_version": {"type": "string"},
        "signals_as_of": {"type": ["string", "null"]},
        "replayed": {
            "type": "boolean",
            "description": "True when this is the stored answer to a repeated request_id.",
        },
    },
}


def field_schema(spec: Field, max_amount: float | None = None) -> dict[str, Any]:
    """JSON Schema of one declared field."""
    if spec.kind == "object":
        return {
            "type": "object",
            "description": spec.description,
            "additionalProperties": False,
            "properties": {f.name: field_schema(f, max_amount) for f in spec.fields},
            "required": [f.name for f in spec.fields if f.required],
        }
    if spec.kind == "datetime":
        return {"type": "string", "format": "date-time", "description": spec.description}
    out: dict[str, Any] = {"type": spec.kind, "description": spec.description}
    if spec.enum is not None:
        out["enum"] = list(spec.enum)
    if spec.max_length is not None:
        out["maxLength"] = spec.max_length
    if spec.minimum is not None:
        out["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum == AMOUNT:
        if max_amount is not None:
            out["maximum"] = max_amount
    elif spec.maximum is not None:
        out["maximum"] = spec.maximum
    return out


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def openapi_document(policy_version: str, max_amount: float | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document (``info.version`` carries the live policy version)."""
    secured = [{"apiKey": []}]
    bad = {"400": {"description": "Invalid body; `field` names the offending field.", **_json(_ERROR)}}
    unauthorized = {"401": {"description": f"Missing or unknown {HEADER}.", **_json(_ERROR)}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Buyer trust decisions",
            "version": f"v1 (policy {policy_version})",
            "description": "Ship-before-balance and fast-refund eligibility from the buyer trust rating.",
        },
        "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": HEADER}}},
        "paths": {
            "/v1/decisions": {
                "post": {
                    "summary": "Decide a trust service for one order or refund",
                    "security": secured,
                    "requestBody": {"required": True, **_json(field_schema(DECISION_BODY, max_amount))},
                    "responses": {
                        "200": {
                            "description": "The decision (a failure inside the service is a decline with "
                            "reason risk_service_degraded; header Idempotent-Replayed on a repeated request_id).",
                            **_json(_DECISION),
                        },
                        **bad,
                        **unauthorized,
                        "409": {
                            "description": "idempotency_request_in_flight: the first request with this "
                            "request_id is still being decided; retry shortly.",
                            **_json(_ERROR),
                        },
                        "422": {
                            "description": "idempotency_key_reused: this request_id was used with a "
                            "different request (nothing of the first is revealed).",
                            **_json(_ERROR),
                        },
                    },
                }
            },
            "/v1/outcomes": {
                "post": {
                    "summary": "Record an outcome (balance paid, goods returned, refund abuse...)",
                    "security": secured,
                    "requestBody": {"required": True, **_json(field_schema(OUTCOME_BODY, max_amount))},
                    "responses": {
                        "200": {"description": "Recorded (or replayed); `released` is the exposure freed."},
                        **bad,
                        **unauthorized,
                        "404": {
                            "description": "outcome_order_unknown / outcome_refund_unknown: no decision on it.",
                            **_json(_ERROR),
                        },
                        "409": {
                            "description": "outcome_buyer_mismatch, outcome_exceeds_balance, "
                            "outcome_exceeds_refund, outcome_order_closed, or idempotency_request_in_flight.",
                            **_json(_ERROR),
                        },
                        "422": {
                            "description": "idempotency_key_reused: this outcome_id was used with a different request.",
                            **_json(_ERROR),
                        },
                        "503": {
                            "description": "Ledger unavailable; nothing recorded, retry.",
                            **_json(_ERROR),
                        },
                    },
                }
            },
            "/v1/buyers/{buyer_id}/rating": {
                "get": {
                    "summary": "Stars, score and top reasons of one buyer",
                    "security": secured,
                    "parameters": [
                        {"name": "buyer_id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                    "responses": {
                        "200": {"description": "`rated` false with a `reason` when there is no rating."}
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "Live model, policy and snapshot versions",
                    "security": secured,
                    "responses": {"200": {"description": "Versions and load errors."}},
                }
            },
            "/v1/admin/reload": {
                "post": {
                    "summary": "Reload policy, snapshot and model in this worker",
                    "security": secured,
                    "responses": {
                        "200": {"description": "Reloaded."},
                        "409": {"description": "Invalid policy."},
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up."}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: model, snapshot, database",
                    "responses": {"200": {"description": "Ready."}, "503": {"description": "Not ready."}},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text."}}}
            },
        },
    }
