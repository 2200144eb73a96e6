"""Prometheus counters and latency histograms, hand-written (no extra dependency).

Values are per worker process: behind gunicorn each scrape of ``/metrics`` reaches one
worker, which labels its series with ``worker`` (its pid), so the sum over ``worker``
is the service total once each worker has been scraped.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import defaultdict

BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
HELP = {
    "buyer_trust_requests_total": ("counter", "HTTP requests by route and status."),
    "buyer_trust_decisions_total": ("counter", "Decisions by service and outcome."),
    "buyer_trust_declines_total": ("counter", "Decline reasons by service and code."),
    "buyer_trust_degraded_total": ("counter", "Decisions declined because a dependency failed, by cause."),
    "buyer_trust_request_seconds": ("histogram", "Request latency by route, in seconds."),
}

Labels = tuple[tuple[str, str], ...]


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels
    )
    return "{" + body + "}"


class Metrics:
    """Thread-safe counters and histograms for one worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = defaultdict(float)
        self._hist: dict[tuple[str, Labels], list[float]] = {}
        self.worker = str(os.getpid())

    def inc(self, name: str, labels: Labels = (), value: float = 1.0) -> None:
        """Add ``value`` to the counter ``name`` with ``labels``."""
        with self._lock:
            self._counters[(name, labels)] += value

    def observe(self, name: str, labels: Labels, seconds: float) -> None:
        """Record one observation in the histogram ``name``."""
        with self._lock:
            counts = self._hist.get((name, labels))
            if counts is None:
                counts = self._hist[(name, labels)] = [0.0] * (len(BUCKETS_S) + 2)  # buckets, +Inf, sum
            counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
            counts[-1] += seconds

    def record_request(self, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and observe its latency (one lock acquisition)."""
        labels = (("route", route),)
        with self._lock:
            self._counters[("buyer_trust_requests_total", (("route", route), ("status", str(status))))] += 1
            counts = self._hist.get(("buyer_trust_request_seconds", labels))
            if counts is None:
                counts = self._hist[("buyer_trust_request_seconds", labels)] = [0.0] * (len(BUCKETS_S) + 2)
            counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
            counts[-1] += seconds

    def render(self, info: dict[str, str] | None = None) -> str:
        """The Prometheus text exposition of every series, plus an ``info`` gauge."""
        worker = (("worker", self.worker),)
        lines = []
        with self._lock:
            counters = dict(self._counters)
            hist = {k: list(v) for k, v in self._hist.items()}
        for name, (kind, text) in HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for (n, labels), value in sorted(counters.items()):
                if n == name:
                    lines.append(f"{name}{_fmt(labels + worker)} {value:g}")
            for (n, labels), counts in sorted(hist.items()):
                if n != name:
                    continue
                cumulative = 0.0
                for bound, count in zip((*BUCKETS_S, "+Inf"), counts[:-1], strict=True):
                    cumulative += count
                    le = bound if isinstance(bound, str) else f"{bound:g}"
                    lines.append(f"{name}_bucket{_fmt(labels + worker + (('le', le),))} {cumulative:g}")
                lines.append(f"{name}_sum{_fmt(labels + worker)} {counts[-1]:.6f}")
                lines.append(f"{name}_count{_fmt(labels + worker)} {cumulative:g}")
        if info is not None:
            lines += [
                "# HELP buyer_trust_info Live model, policy and snapshot.",
                "# TYPE buyer_trust_info gauge",
            ]
            lines.append(f"buyer_trust_info{_fmt(tuple(sorted(info.items())) + worker)} 1")
        return "\n".join(lines) + "\n"
