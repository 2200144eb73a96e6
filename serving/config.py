"""The decision service's configuration: one frozen, typed record, loaded in one place.

Values come from (lowest to highest precedence) the defaults below, ``SERVING_*``
environment variables (plus ``MLFLOW_TRACKING_URI``) and an explicit mapping passed to
``load_config``. Unknown keys, whether in the mapping or as a ``SERVING_*`` variable, are
errors. API keys are never stored in clear: the config holds their HMAC-SHA256 digests under
a server secret, with their scopes (``serving.http.auth``; ``python -m serving new-key`` makes one).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.http.auth import MIN_SECRET_CHARS, parse_entry
from serving.ledger.engine import DEFAULT_SYNCHRONOUS, SYNCHRONOUS

ENV_PREFIX = "SERVING_"


def default_policy_path() -> str:
    """Return the path of the policy file shipped with the package (``serving/policy.yaml``)."""
    return str(Path(__file__).with_name("policy.yaml"))


@dataclass(frozen=True)
class ServingConfig:
    """Everything the decision service needs to start.

    Attributes:
        database_url: SQLAlchemy URL of the ledger and decision log. SQLite (WAL) by
            default; ``postgresql://...`` uses psycopg 3.
        database_schema: Optional schema (PostgreSQL) all ledger tables live in.
        model_uri: MLflow URI of the rating artifact (``models:/name@alias``,
            ``runs:/...`` or a local path).
        mlflow_tracking_uri: MLflow tracking/registry store used to resolve ``model_uri``.
        snapshot: Online signals: a parquet file path, or a ``redis://`` URL.
        redis_prefix: Key prefix of the Redis snapshot.
        policy_path: Path of the policy YAML file.
        api_keys: Accepted ``X-API-Key`` values as ``<hmac-sha256 hex>:<scope>[+<scope>...]``
            entries (``serving.http.auth``).
        api_key_secret: Server secret the key digests are made with (from the environment,
            ``SERVING_API_KEY_SECRET``; at least 16 characters when keys are configured).
        watch_interval_s: Seconds between checks for a changed policy file, snapshot
            or champion model (0 disables the watcher; reload is then explicit).
        max_body_bytes: Largest accepted request body, in bytes (413 above it).
        body_timeout_s: Longest wait for a request body, in seconds (408 after it).
        max_amount: Largest accepted amount in one request, in currency units;
            anything above is rejected as absurd (400).
        db_busy_timeout_ms: SQLite busy timeout, in milliseconds.
        db_pool_size: Connection pool size per worker.
        sqlite_synchronous: SQLite durability, ``GROUP`` (default: no decision is answered
            before the fsync of the log that holds it, which runs after the commit, outside the
            write lock, shared by concurrent decisions), ``FULL`` (as durable for acknowledged
            decisions; an fsync per decision inside the write lock) or ``NORMAL`` (a decision
            survives a process crash; the last ones may be lost on power loss). See
            ``serving.ledger.engine`` and docs/serving.md. PostgreSQL is unaffected.
        max_snapshot_age_s: Oldest online snapshot the service decides on, in seconds since
            it was published (default 36 h; 0: no limit). Past it ``/readyz`` fails and
            decisions decline with ``risk_service_degraded``.
        replay_clock_file: For replays and their tests only (never in production): a file
            holding the ISO 8601 UTC instant the service takes as now for each decision and
            outcome, so a replayed history is decided at the instants it happened. None (the
            default): the system clock.
        checkpoint_interval_s: Seconds between background SQLite WAL checkpoints (0: leave
            them to SQLite's automatic checkpoint every 20,000 pages).
        monitor_record: The daily monitor's latest record (``latest.json`` in ``python -m
            serving monitor --out``), exposed on ``/metrics``; None: no monitor figures.
    """

    database_url: str = "sqlite:///data/serving.db"
    database_schema: str | None = None
    model_uri: str = "models:/buyer-trust-rating@champion"
    mlflow_tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    snapshot: str = "data/online/snapshot.parquet"
    redis_prefix: str = "buyer-trust:"
    policy_path: str = field(default_factory=default_policy_path)
    api_keys: tuple[str, ...] = ()
    api_key_secret: str = field(default="", repr=False)
    watch_interval_s: float = 10.0
    max_body_bytes: int = 16_384
    body_timeout_s: float = 5.0
    max_amount: float = 10_000_000.0
    db_busy_timeout_ms: int = 5_000
    db_pool_size: int = 10
    sqlite_synchronous: str = DEFAULT_SYNCHRONOUS
    checkpoint_interval_s: float = 1.0
    max_snapshot_age_s: float = 36 * 3600.0
    replay_clock_file: str | None = None
    monitor_record: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "database_schema":
                if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
                    raise ValueError(f"database_schema: not a valid identifier: {value!r}")
            elif f.name == "api_keys":
                if not isinstance(value, tuple):
                    raise TypeError("api_keys: must be a tuple of '<digest>:<scopes>' entries")
                for entry in value:
                    parse_entry(entry)
                if value and len(self.api_key_secret) < MIN_SECRET_CHARS:
                    raise ValueError(
                        f"api_key_secret: at least {MIN_SECRET_CHARS} characters when api_keys are set"
                    )
            elif f.name == "api_key_secret":
                if not isinstance(value, str):
                    raise TypeError("api_key_secret: must be a string")
            elif f.type in ("str",) and (not isinstance(value, str) or not value):
                raise ValueError(f"{f.name}: must be a non-empty string")
        for name in (
            "watch_interval_s",
            "max_amount",
            "checkpoint_interval_s",
            "body_timeout_s",
            "max_snapshot_age_s",
        ):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int | float):
                raise TypeError(f"{name}: must be a number")
        if self.sqlite_synchronous not in SYNCHRONOUS:
            raise ValueError(
                f"sqlite_synchronous: must be one of {', '.join(SYNCHRONOUS)}, got {self.sqlite_synchronous!r}"
            )
        if self.watch_interval_s < 0:
            raise ValueError("watch_interval_s: must be >= 0")
        if self.body_timeout_s <= 0:
            raise ValueError("body_timeout_s: must be > 0")
        if self.checkpoint_interval_s < 0:
            raise ValueError("checkpoint_interval_s: must be >= 0")
        if self.max_snapshot_age_s < 0:
            raise ValueError("max_snapshot_age_s: must be >= 0 (0: no limit)")
        if self.max_amount < 1:  # serving.schema.amount_pattern: amounts up to it, in whole units and less
            raise ValueError("max_amount: must be at least one currency unit")
        for name in ("max_body_bytes", "db_busy_timeout_ms", "db_pool_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: must be a positive integer")


def _coerce(name: str, raw: Any) -> Any:
    """Convert an environment string (or a YAML/JSON value) to the field's type."""
    types = {f.name: f.type for f in dataclasses.fields(ServingConfig)}
    kind = types[name]
    if not isinstance(raw, str):
        if kind == "tuple[str, ...]" and isinstance(raw, list | tuple):
            return tuple(raw)
        return raw
    try:
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: expected a {kind}, got {raw!r}") from exc
    if kind == "tuple[str, ...]":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "str | None":
        return raw or None
    return raw


def load_config(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> ServingConfig:
    """Build the service configuration from defaults, the environment and overrides.

    Args:
        overrides: Field values that win over everything else (tests, embedding).
        env: Environment to read ``SERVING_<FIELD>`` and ``MLFLOW_TRACKING_URI`` from;
            ``os.environ`` when None.

    Returns:
        The validated, frozen configuration.

    Raises:
        ValueError: On an unknown key or variable, or an invalid value (the message
            names the key).
    """
    env = os.environ if env is None else env
    names = {f.name for f in dataclasses.fields(ServingConfig)}
    values: dict[str, Any] = {}
    if env.get("MLFLOW_TRACKING_URI"):
        values["mlflow_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name not in names:
            raise ValueError(f"{var}: unknown setting (known: {', '.join(sorted(names))})")
        values[name] = _coerce(name, raw)
    for name, raw in (overrides or {}).items():
        if name not in names:
            raise ValueError(f"{name}: unknown setting (known: {', '.join(sorted(names))})")
        values[name] = _coerce(name, raw)
    return ServingConfig(**values)
