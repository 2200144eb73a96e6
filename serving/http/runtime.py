"""Holds the ``Live`` in force for one worker and swaps in reloads without a restart.

Three ways to reload:
    * ``POST /v1/admin/reload`` (this worker; policy, snapshot and model),
    * a watcher thread that every ``watch_interval_s`` seconds reloads whatever changed
      (policy file mtime, snapshot file mtime or Redis version, the champion alias's
      version), which reaches every worker,
    * ``kill -HUP <gunicorn master>``, which gracefully restarts all workers.
"""

from __future__ import annotations

import gc
import logging
import os
import threading

from serving.config import ServingConfig
from serving.live import Live, load_live, model_version_now
from serving.publish.snapshot import is_redis

log = logging.getLogger(__name__)
ALL_PARTS = frozenset({"policy", "snapshot", "model"})


class Runtime:
    """The current ``Live`` plus reload.

    Args:
        config: The service configuration.
    """

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.live: Live | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Runtime:
        """Load everything (the policy must be valid; model and snapshot may be unavailable)."""
        self.live = load_live(self.config)
        return self

    def reload(self, parts: frozenset[str] = ALL_PARTS) -> Live:
        """Reload ``parts`` and swap the result in; raises ``PolicyError`` keeping the old policy."""
        with self._lock:
            self.live = load_live(self.config, self.live, parts)
            gc.unfreeze()  # let what the previous model or snapshot held be collected, then freeze again
            gc.collect()
            gc.freeze()
            log.info(
                "reloaded %s: policy %s, model %s",
                sorted(parts),
                self.live.policy.version,
                self.live.model_version,
            )
            return self.live

    def changed_parts(self) -> frozenset[str]:
        """Which parts differ from what is loaded (cheap: stats and one small query each)."""
        live, cfg = self.live, self.config
        parts = set()
        try:
            if os.stat(cfg.policy_path).st_mtime != live.policy_mtime:
                parts.add("policy")
        except OSError:
            pass
        if live.snapshot is None:
            if is_redis(cfg.snapshot) or os.path.exists(cfg.snapshot):
                parts.add("snapshot")
        elif live.snapshot.changed(cfg.snapshot):
            parts.add("snapshot")
        try:
            version = model_version_now(cfg)
        except Exception:  # noqa: BLE001 - an unreachable registry is not a change
            version = None
        if live.rating is None:
            if version is not None or not cfg.model_uri.startswith("models:/"):
                parts.add("model")
        elif version is not None and version != live.rating.version:
            parts.add("model")
        return frozenset(parts)

    def check(self) -> None:
        """Reload whatever changed; failures are logged and the old parts kept."""
        try:
            parts = self.changed_parts()
            if parts:
                self.reload(parts)
        except Exception:  # noqa: BLE001 - the watcher must never die
            log.exception("reload failed; keeping the previous policy, snapshot and model")

    def watch(self) -> None:
        """Start the watcher thread (no-op when ``watch_interval_s`` is 0)."""
        if self.config.watch_interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.config.watch_interval_s):
                self.check()

        self._thread = threading.Thread(target=loop, name="serving-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
