"""The OpenAPI 3 document, derived from the request declarations in ``serving.schema``."""

from __future__ import annotations

from typing import Any

from serving.http.auth import HEADER
from serving.http.problems import PROBLEM_MEDIA_TYPE
from serving.http.runtime import ALL_PARTS
from serving.reviews import ACTIONS as REVIEW_ACTIONS
from serving.reviews import ASSESS_BODY as REVIEW_ASSESS_BODY
from serving.reviews import OUTCOME_BODY as REVIEW_OUTCOME_BODY
from serving.schema import (
    AMOUNT,
    BUYER_PATH,
    DECISION,
    INSTANT,
    MAX_ID,
    OUTCOME,
    TEXT,
    Field,
    Variants,
    amount_pattern,
)

_FINDING = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "text": {"type": "string"},
        "contribution": {"type": "number", "description": "Log-odds this signal added (model reasons only)."},
    },
    "required": ["code", "text"],
}
_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `code` is stable, `field` names the offending field.",
    "properties": {
        "type": {"type": "string", "description": "urn:buyer-trust:problem:<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "field": {"type": "string", "description": "Dotted path of the offending field."},
    },
    "required": ["type", "title", "status", "detail", "code"],
}
_RELOAD = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "parts": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": sorted(ALL_PARTS)},
            "description": "What to reload (default: all).",
        }
    },
}
_READY = {
    "type": "object",
    "properties": {"ready": {"type": "boolean"}, "checks": {"type": "object"}},
    "required": ["ready", "checks"],
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
        "exploration": {
            "type": "object",
            "description": "The policy's budgeted exploration: the probability that this decision was "
            "the one made (1 unless an exploration drew), and the declines an explored approval overrode.",
            "properties": {
                "propensity": {"type": "number", "minimum": 0, "maximum": 1},
                "explored_over": {"type": "array", "items": _FINDING},
            },
        },
        "replayed": {
            "type": "boolean",
            "description": "True when this is the stored answer to a repeated request_id.",
        },
    },
}


def field_schema(
    spec: Field, max_amount: float | None = None, decimals: int = 2, currency: str | None = None
) -> dict[str, Any]:
    """JSON Schema of one declared field; an amount (``maximum=AMOUNT``) needs ``max_amount`` and the
    currency's ``decimals``: a JSON number, a multiple of the minor unit, or a decimal string
    (``serving.schema.amount_pattern``, the pattern the parser matches)."""
    if spec.kind == "object":
        return {
            "type": "object",
            "description": spec.description,
            "additionalProperties": False,
            "properties": {
                f.name: (field_schema if f.required else _optional)(f, max_amount, decimals, currency)
                for f in spec.fields
            },
            "required": [f.name for f in spec.fields if f.required],
        }
    if spec.kind == "datetime":
        return {"type": "string", "format": "date-time", "pattern": INSTANT, "description": spec.description}
    if spec.maximum == AMOUNT:
        if max_amount is None:
            raise ValueError(f"{spec.name}: an amount's schema needs max_amount")
        number: dict[str, Any] = {"type": "number", "multipleOf": 10.0**-decimals if decimals else 1}
        number["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = 0
        number["maximum"] = max_amount
        text = {"type": "string", "pattern": amount_pattern(max_amount, decimals, spec.exclusive_minimum)}
        return {"description": spec.description, "anyOf": [number, text]}
    out: dict[str, Any] = {"type": spec.kind, "description": spec.description}
    if spec.enum is not None:
        out["enum"] = list(spec.enum)
    elif spec.policy_currency and currency is not None:
        out["enum"] = [currency]
    elif spec.kind == "string":
        out["pattern"] = TEXT
    if spec.max_length is not None and "enum" not in out:
        out["maxLength"] = spec.max_length
    if spec.minimum is not None:
        out["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    return out


def _optional(spec: Field, max_amount: float | None, decimals: int, currency: str | None) -> dict[str, Any]:
    """An optional member's schema: the parser reads a null as the member left out."""
    schema = field_schema(spec, max_amount, decimals, currency)
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    out = {**schema, "type": [schema["type"], "null"]}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def variant_schemas(
    variants: Variants, name: str, max_amount: float, decimals: int = 2, currency: str | None = None
) -> tuple[dict, dict]:
    """A body of ``variants`` as OpenAPI states it: one schema per value of its key (``components``,
    named ``<name>_<value>``) and the body's schema, ``oneOf`` them with the key as discriminator.

    Returns:
        ``(components, body schema)``.
    """
    refs = {value: f"#/components/schemas/{name}_{value}" for value in variants.choice}
    components = {
        f"{name}_{value}": field_schema(variants.variant(value), max_amount, decimals, currency)
        for value in refs
    }
    body = {
        "description": variants.body.description,
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": variants.key, "mapping": refs},
    }
    return components, body


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _problems(**statuses: str) -> dict[str, dict]:
    """Documented error answers: ``_problems(**{"404": "why"})`` -> OpenAPI responses."""
    return {
        status: {"description": text, "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM}}}
        for status, text in statuses.items()
    }


# Answers every /v1 route can give before it runs (serving.http.api, serving.http.body).
_AUTH = {"401": f"Missing or unknown {HEADER}.", "403": "The key lacks this route's scope."}
_BODY = {
    "400": "Invalid body: malformed or non-UTF-8 JSON, not an object, duplicate keys, NaN/Infinity, "
    "or a field out of its declaration (`field` names it).",
    "408": "The body did not arrive within the body timeout.",
    "413": "The body is larger than the limit (announced or chunked).",
    "415": "The body is not application/json (UTF-8).",
}


_ASSESSMENT = {
    "type": "object",
    "properties": {
        "assessment_id": {"type": "string"},
        "request_id": {"type": "string"},
        "buyer_id": {"type": "integer"},
        "review_id": {"type": "integer"},
        "p_removed": {
            "type": ["number", "null"],
            "description": "The review head's probability that the review is removed as malicious (a seller "
            "reports it and moderation confirms); null when it could not be scored (`unscored` says why).",
        },
        "action": {"type": "string", "enum": list(REVIEW_ACTIONS)},
        "hold_above": {"type": ["number", "null"], "description": "The policy's hold threshold."},
        "reasons": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "text": {"type": "string"},
                    "contribution": {"type": "number"},
                },
                "required": ["code", "text"],
            },
            "description": "What raised the probability most: the writer's signals and the review's context.",
        },
        "unscored": {
            "type": ["object", "null"],
            "description": "Why the review was not scored or not screened (`code`, `text`), else null.",
        },
        "model_version": {"type": ["string", "null"]},
        "policy_version": {"type": "string"},
        "signals_as_of": {"type": ["string", "null"]},
        "replayed": {"type": "boolean"},
    },
    "required": ["assessment_id", "request_id", "buyer_id", "review_id", "p_removed", "action", "reasons"],
}


def _review_paths(max_amount: float, decimals: int, currency: str | None) -> dict[str, Any]:
    """The review routes (``serving.reviews``)."""
    secured = [{"apiKey": []}]
    return {
        "/v1/reviews/assess": {
            "post": {
                "summary": "Screen a review as it is posted: publish, or hold it for moderation",
                "security": secured,
                "requestBody": {
                    "required": True,
                    **_json(field_schema(REVIEW_ASSESS_BODY, max_amount, decimals, currency)),
                },
                "responses": {
                    "200": {
                        "description": "The assessment (header Idempotent-Replayed on a repeated request_id).",
                        **_json(_ASSESSMENT),
                    },
                    **_problems(
                        **_BODY,
                        **_AUTH,
                        **{
                            "409": "The first request with this request_id is still in flight; retry.",
                            "422": "This request_id was used with a different request.",
                            "503": "Review log unavailable; nothing assessed, retry (Retry-After).",
                        },
                    ),
                },
            }
        },
        "/v1/reviews/outcomes": {
            "post": {
                "summary": "Record what moderation found about an assessed review",
                "security": secured,
                "requestBody": {
                    "required": True,
                    **_json(field_schema(REVIEW_OUTCOME_BODY, max_amount, decimals, currency)),
                },
                "responses": {
                    "200": {"description": "Recorded (or replayed).", **_json({"type": "object"})},
                    **_problems(
                        **_BODY,
                        **_AUTH,
                        **{
                            "404": "No assessment of this review.",
                            "409": "The review was assessed for another buyer, or the first request with "
                            "this outcome_id is still in flight.",
                            "422": "This outcome_id was used with a different outcome.",
                            "503": "Review log unavailable; nothing recorded, retry (Retry-After).",
                        },
                    ),
                },
            }
        },
    }


def openapi_document(
    policy_version: str, max_amount: float, decimals: int = 2, currency: str | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document (``info.version`` carries the live policy version); amounts are bounded
    by ``max_amount`` and written with at most the policy currency's ``decimals``; a currency field
    must be ``currency`` (None: any three characters).

    Every status a route answers is listed (schemathesis checks it, ``tests/serving/test_contract.py``);
    a method a path does not declare gets 405, an unknown path 404, both as problem details.
    """
    secured = [{"apiKey": []}]
    decision_schemas, decision_body = variant_schemas(DECISION, "Decision", max_amount, decimals, currency)
    outcome_schemas, outcome_body = variant_schemas(OUTCOME, "Outcome", max_amount, decimals, currency)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Buyer trust decisions",
            "version": f"v1 (policy {policy_version})",
            "description": "Ship-before-balance and fast-refund eligibility from the buyer trust rating.",
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": HEADER}},
            "schemas": {**decision_schemas, **outcome_schemas},
        },
        "paths": {
            "/v1/decisions": {
                "post": {
                    "summary": "Decide a trust service for one order or refund",
                    "security": secured,
                    "requestBody": {"required": True, **_json(decision_body)},
                    "responses": {
                        "200": {
                            "description": "The decision (a failure inside the service is a decline with "
                            "reason risk_service_degraded; header Idempotent-Replayed on a repeated request_id).",
                            **_json(_DECISION),
                        },
                        **_problems(
                            **_BODY,
                            **_AUTH,
                            **{
                                "409": "The first request with this request_id is still in flight; retry.",
                                "422": "This request_id was used with a different request.",
                            },
                        ),
                    },
                }
            },
            "/v1/outcomes": {
                "post": {
                    "summary": "Record an outcome (balance paid, goods returned, refund abuse...)",
                    "security": secured,
                    "requestBody": {"required": True, **_json(outcome_body)},
                    "responses": {
                        "200": {
                            "description": "Recorded (or replayed); `released` is the exposure freed.",
                            **_json({"type": "object"}),
                        },
                        **_problems(
                            **_BODY,
                            **_AUTH,
                            **{
                                "404": "No decided order or refund with this id.",
                                "409": "Another buyer's order, a closed order, a payment beyond the balance, "
                                "or the first request with this outcome_id still in flight.",
                                "422": "This outcome_id was used with a different outcome.",
                                "503": "Ledger unavailable; nothing recorded, retry (Retry-After).",
                            },
                        ),
                    },
                }
            },
            **_review_paths(max_amount, decimals, currency),
            "/v1/buyers/{buyer_id}/rating": {
                "get": {
                    "summary": "Stars, score and top reasons of one buyer",
                    "security": secured,
                    "parameters": [
                        {
                            "name": BUYER_PATH.name,
                            "in": "path",
                            "required": True,
                            "schema": field_schema(BUYER_PATH),
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "`rated` false with a `reason` when there is no rating; "
                            "`reviewer_risk`: the review head's probability for a plain one-star review "
                            "by this buyer (null without a rating or a review head).",
                            **_json({"type": "object"}),
                        },
                        **_problems(
                            **_AUTH,
                            **{"404": f"Not a buyer id (an integer 0..{MAX_ID}); `field` is `buyer_id`."},
                        ),
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "Live model, policy and snapshot versions",
                    "security": secured,
                    "responses": {
                        "200": {"description": "Versions and load errors.", **_json({"type": "object"})},
                        **_problems(**{"401": _AUTH["401"]}),
                    },
                }
            },
            "/v1/admin/reload": {
                "post": {
                    "summary": "Reload policy, snapshot and model in this worker (admin scope)",
                    "security": secured,
                    "requestBody": {"required": False, **_json(_RELOAD)},
                    "responses": {
                        "200": {
                            "description": "Reloaded; the versions now live.",
                            **_json({"type": "object"}),
                        },
                        **_problems(**_BODY, **_AUTH, **{"409": "Invalid policy file; the old one stays."}),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": {"description": "Up.", **_json({"type": "object"})}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: model, snapshot (present and fresh), database",
                    "responses": {
                        "200": {"description": "Ready.", **_json(_READY)},
                        "503": {"description": "Not ready; `checks` says why.", **_json(_READY)},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of all workers",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1.", **_json({"type": "object"})}},
                }
            },
        },
    }
