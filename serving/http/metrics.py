"""Prometheus metrics with ``prometheus_client``: one view of every worker.

Under gunicorn (``serving/http/gunicorn_conf.py``) ``PROMETHEUS_MULTIPROC_DIR`` is set before any
worker starts: each worker writes its samples to files there, and any worker answering
``/metrics`` reads them all (``MultiProcessCollector``), so every scrape counts the decisions
of all workers, including workers that have exited (counters never go backwards). Without
the variable (tests, the development server) the metrics live in this process.

Names (all prefixed ``buyer_trust_``):

    requests_total{route,status}                 counter    HTTP requests
    request_seconds{route}                       histogram  request latency, seconds
    decisions_total{service,decision,reason}     counter    decisions; reason is the first decline
                                                            code, "none" for an approval
    declines_total{service,code}                 counter    every decline reason
    degraded_total{cause}                        counter    declines because a dependency failed
    ledger_open_reservations{service}            gauge      open ship-before-balance holds / fast refunds
    ledger_open_amount_minor{service}            gauge      their unreleased amount, minor units
    snapshot_buyers                              gauge      buyers in the online snapshot
    snapshot_age_seconds                         gauge      now minus the snapshot's as-of time
    info{model_version,policy_version,snapshot_version[,pid]}  gauge  1 for what is live

With ``SERVING_MONITOR_RECORD`` set, the daily monitor's figures (``buyer_trust_monitor_*``,
``serving.monitor.metrics``) are read from its latest record at each scrape and exposed too.

Gauges are computed when ``/metrics`` is scraped, by the worker that answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from serving.ledger.tables import RESERVATIONS
from serving.monitor.metrics import MonitorCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's metrics, for one app: multiprocess when ``PROMETHEUS_MULTIPROC_DIR`` is set.

    (``prometheus_client`` reads that variable when it is first imported, so it must be set
    before the worker starts: ``serving/http/gunicorn_conf.py`` does it in the master.)
    """

    def __init__(self, monitor_record: str | None = None) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry()
        self.monitor = None if monitor_record is None else MonitorCollector(monitor_record)
        if self.monitor is not None and not self.multiprocess_dir:
            self.registry.register(self.monitor)
        reg = None if self.multiprocess_dir else self.registry  # multiprocess: read back from the files
        self._counters = {
            "buyer_trust_requests_total": Counter(
                "buyer_trust_requests",
                "HTTP requests by route and status.",
                ["route", "status"],
                registry=reg,
            ),
            "buyer_trust_decisions_total": Counter(
                "buyer_trust_decisions",
                "Decisions by service, decision and first decline reason ('none' for an approval).",
                ["service", "decision", "reason"],
                registry=reg,
            ),
            "buyer_trust_declines_total": Counter(
                "buyer_trust_declines",
                "Decline reasons by service and code.",
                ["service", "code"],
                registry=reg,
            ),
            "buyer_trust_degraded_total": Counter(
                "buyer_trust_degraded",
                "Decisions declined because a dependency failed, by cause.",
                ["cause"],
                registry=reg,
            ),
        }
        self._latency = Histogram(
            "buyer_trust_request_seconds",
            "Request latency by route, seconds.",
            ["route"],
            buckets=BUCKETS_S,
            registry=reg,
        )
        self._open = Gauge(
            "buyer_trust_ledger_open_reservations",
            "Open reservations (held presale balances, unreturned fast refunds) by service.",
            ["service"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self._open_amount = Gauge(
            "buyer_trust_ledger_open_amount_minor",
            "Unreleased reserved amount by service, in minor currency units.",
            ["service"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self._buyers = Gauge(
            "buyer_trust_snapshot_buyers",
            "Buyers in the online snapshot.",
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self._age = Gauge(
            "buyer_trust_snapshot_age_seconds",
            "Seconds since the online snapshot's as-of time.",
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self._info = Gauge(
            "buyer_trust_info",
            "1 for the live model, policy and snapshot versions (per worker pid under gunicorn).",
            ["model_version", "policy_version", "snapshot_version"],
            multiprocess_mode="liveall",
            registry=reg,
        )
        self._info_labels: tuple[str, str, str] | None = None

    def inc(self, name: str, labels: tuple[tuple[str, str], ...] = (), value: float = 1.0) -> None:
        """Add ``value`` to the counter ``name`` (``buyer_trust_..._total``) with ``labels``."""
        self._counters[name].labels(**dict(labels)).inc(value)

    def decision(self, service: str, decision: str, declines: Iterable[str]) -> None:
        """Count one decision and each of its decline codes (in order; the first is the reason)."""
        codes = list(declines)
        self._counters["buyer_trust_decisions_total"].labels(
            service, decision, codes[0] if codes else "none"
        ).inc()
        for code in codes:
            self._counters["buyer_trust_declines_total"].labels(service, code).inc()

    def record_request(self, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and observe its latency."""
        self._counters["buyer_trust_requests_total"].labels(route, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def update_gauges(self, ledger, snapshot_meta, info: dict[str, str]) -> None:
        """Refresh the ledger, snapshot and info gauges (at scrape time).

        Args:
            ledger: The ``Ledger``; an unreachable database leaves the ledger gauges as they were.
            snapshot_meta: The live snapshot's ``SnapshotMeta``, or None.
            info: ``model_version``, ``policy_version``, ``snapshot_version``.
        """
        try:
            for service, count, amount in ledger_totals(ledger):
                self._open.labels(service).set(count)
                self._open_amount.labels(service).set(amount)
        except Exception:  # noqa: BLE001 - metrics must not fail because the database is down
            pass
        if snapshot_meta is not None:
            self._buyers.set(snapshot_meta.n_buyers)
            try:
                as_of = datetime.fromisoformat(snapshot_meta.as_of).timestamp()
                self._age.set(max(time.time() - as_of, 0.0))
            except (TypeError, ValueError):
                pass
        labels = (info["model_version"], info["policy_version"], info["snapshot_version"])
        if labels != self._info_labels:
            if self._info_labels is not None:
                self._info.labels(*self._info_labels).set(0)
            self._info.labels(*labels).set(1)
            self._info_labels = labels

    def render(self) -> bytes:
        """The Prometheus text exposition: every worker's samples in multiprocess mode."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        if self.monitor is not None:
            registry.register(self.monitor)
        return generate_latest(registry)


def ledger_totals(ledger) -> list[tuple[str, int, int]]:
    """``(service, open reservations, unreleased minor units)`` per service, from the ledger."""
    r = RESERVATIONS.c
    query = (
        select(r.service, func.count(), func.coalesce(func.sum(r.amount_minor - r.released_minor), 0))
        .where(r.released_at.is_(None))
        .group_by(r.service)
    )
    with ledger.engine.connect() as conn:
        conn.execution_options(sqlite_begin="DEFERRED")
        return [(service, int(count), int(amount)) for service, count, amount in conn.execute(query)]
