"""Per-app services shared by the blueprints: built once by ``create_app``, read by every handler."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from serving.config import ServingConfig
from serving.http.auth import KeyCheck
from serving.http.metrics import Metrics
from serving.http.runtime import Runtime
from serving.ledger.store import Ledger

EXTENSION = "buyer_trust"


@dataclass(frozen=True)
class Services:
    """Everything the handlers need, stored once per app in ``app.extensions``."""

    config: ServingConfig
    runtime: Runtime
    ledger: Ledger
    metrics: Metrics
    keys: KeyCheck


def services() -> Services:
    """The current app's ``Services`` (inside a request or app context)."""
    return current_app.extensions[EXTENSION]
