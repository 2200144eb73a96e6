"""Flask app factory: wires config, runtime (model, policy, snapshot), ledger and routes.

Production::

    gunicorn -c python:serving.gunicorn_conf "serving.app:create_app()"

Development: ``python -m serving``. Nothing happens at import; ``create_app`` does it all.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from serving.auth import KeyCheck
from serving.config import ServingConfig, load_config
from serving.context import EXTENSION, Problem, Services, error_response, services
from serving.engine import make_engine
from serving.ledger import Ledger
from serving.metrics import Metrics
from serving.runtime import Runtime

log = logging.getLogger(__name__)


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        services().metrics.record_request(route, response.status_code, time.perf_counter() - g.started)
        return response

    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return error_response(exc.status, exc.code, exc.detail, exc.field, exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        headers = {k: v for k, v in exc.get_headers() if k == "Allow"}
        return error_response(
            exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or exc.name, headers=headers
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "unexpected error; see the service log")


def freeze_heap() -> None:
    """Move everything loaded so far (MLflow, the model, the snapshot) out of the cyclic GC.

    A full collection over that heap takes tens to hundreds of milliseconds, which would land on a
    random checkout request; frozen, collections only walk what requests allocate. Called after
    start-up and after each reload (``Runtime.reload``), which first unfreezes and collects.
    """
    gc.collect()
    gc.freeze()


def create_app(config: ServingConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build the decision service.

    Args:
        config: A ``ServingConfig``, a mapping of overrides for ``load_config`` (tests), or
            None to read the environment (gunicorn).

    Returns:
        The Flask app. The policy must be valid (else ``PolicyError``); a missing model,
        snapshot or database leaves the app running and declining with reasons
        (``/readyz`` says what is missing).
    """
    if not isinstance(config, ServingConfig):
        config = load_config(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(
        config.database_url,
        config.database_schema,
        config.db_busy_timeout_ms,
        config.db_pool_size,
        config.sqlite_synchronous,
    )
    ledger = Ledger(engine, config.database_schema, config.db_busy_timeout_ms)
    try:
        ledger.create()
    except Exception:  # noqa: BLE001 - the database may come up later; decisions degrade meanwhile
        log.exception("ledger database unavailable at start: %s", ledger.engine.url.render_as_string())
    if config.checkpoint_interval_s > 0:
        ledger.start_checkpoints(config.checkpoint_interval_s)
    runtime = Runtime(config).start()
    runtime.watch()
    if not config.api_keys:
        log.warning("no API keys configured (SERVING_API_KEYS): every /v1 call will get 401")

    app = Flask("serving")
    app.json.sort_keys = False
    app.extensions[EXTENSION] = Services(
        config,
        runtime,
        ledger,
        Metrics(config.monitor_record),
        KeyCheck(config.api_keys, config.api_key_secret),
    )

    from serving.api import api
    from serving.ops import ops

    app.register_blueprint(api)
    app.register_blueprint(ops)
    _register_hooks(app)
    freeze_heap()
    return app


def close_app(app: Flask) -> None:
    """Stop the app's background threads (reload watcher, checkpoints) and close its database pool."""
    s: Services = app.extensions[EXTENSION]
    s.runtime.stop()
    s.ledger.close()
