"""Production gunicorn settings: ``gunicorn -c python:serving.http.gunicorn_conf "serving.http.app:create_app()"``.

* **gevent workers.** Each connection is a greenlet: a client that is slow to send its
  headers or body waits without holding a worker, so it never delays anyone else's decision.
  The headers must arrive within ``keepalive`` seconds (gunicorn closes the connection), the
  body within ``SERVING_BODY_TIMEOUT_S`` (the app answers 408, ``serving/http/body.py``).
  Decisions themselves are short CPU work and run one at a time per worker.
* **One metrics view.** ``on_starting`` gives the workers one ``PROMETHEUS_MULTIPROC_DIR``
  (a fresh temporary directory unless the variable is set, in which case old samples are
  removed); ``child_exit`` marks each exited worker dead (its live gauges go; its counters
  stay); ``on_exit`` removes a directory it created.

Command-line options override these (``-b``, ``-w``...). ``WEB_CONCURRENCY`` sets the
number of workers (default 2, one per core); ``GUNICORN_BIND`` the address.
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = 1000
keepalive = 5  # seconds an idle connection, or one still sending its headers, may wait
timeout = 30  # a worker silent this long is restarted
graceful_timeout = 20
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # heartbeats off the ledger's disk
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

_CREATED = "_BUYER_TRUST_METRICS_DIR_CREATED"


def on_starting(server) -> None:
    """Give every worker the same, empty, multiprocess metrics directory."""
    import glob
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="buyer-trust-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        os.environ[_CREATED] = path
    server.log.info("prometheus multiprocess directory: %s", path)


def child_exit(server, worker) -> None:
    """A worker exited: drop its live gauges (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory if ``on_starting`` created it."""
    import shutil

    created = os.environ.get(_CREATED)
    if created:
        shutil.rmtree(created, ignore_errors=True)
