"""API keys with scopes: callers send ``X-API-Key``; the service stores only keyed digests.

A key is configured as one entry ``<digest>:<scope>[+<scope>...]`` where ``digest`` is
HMAC-SHA256 of the key under the server secret (``SERVING_API_KEY_SECRET``), hex. Without
the secret a stolen list of entries cannot be checked against guessed keys. Scopes:

* ``decide``: ``POST /v1/decisions``, ``GET /v1/buyers/<id>/rating``;
* ``outcomes``: ``POST /v1/outcomes``;
* ``admin``: ``/v1/admin/*`` (reload).

``python -m serving new-key --scopes decide`` makes a key and its entry;
``python -m serving hash-key KEY --scopes ...`` makes the entry of an existing key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

HEADER = "X-API-Key"
SCOPES = ("decide", "outcomes", "admin")
MIN_SECRET_CHARS = 16
_ENTRY = re.compile(r"^([0-9a-f]{64}):([a-z]+(?:\+[a-z]+)*)$")


def key_digest(key: str, secret: str) -> str:
    """HMAC-SHA256 of ``key`` under ``secret``, 64 lowercase hex characters."""
    return hmac.new(secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()


def key_entry(key: str, secret: str, scopes: Iterable[str]) -> str:
    """The configuration entry (``SERVING_API_KEYS``) of ``key`` with ``scopes``.

    Raises:
        ValueError: An unknown or missing scope.
    """
    wanted = sorted(set(scopes))
    if not wanted or any(s not in SCOPES for s in wanted):
        raise ValueError(f"scopes: must be a non-empty subset of {', '.join(SCOPES)}, got {wanted}")
    return f"{key_digest(key, secret)}:{'+'.join(wanted)}"


def new_key() -> str:
    """A fresh random API key (32 url-safe characters)."""
    return secrets.token_urlsafe(24)


def parse_entry(entry: str) -> tuple[str, frozenset[str]]:
    """``(digest, scopes)`` of one configured entry.

    Raises:
        ValueError: The entry is not ``<64 hex>:<scope>[+<scope>...]`` with known scopes.
    """
    match = _ENTRY.match(entry) if isinstance(entry, str) else None
    if match is None:
        raise ValueError("api_keys: each entry must be '<hmac-sha256 hex>:<scope>[+<scope>...]'")
    scopes = frozenset(match.group(2).split("+"))
    unknown = scopes - set(SCOPES)
    if unknown:
        raise ValueError(f"api_keys: unknown scope {sorted(unknown)[0]!r} (known: {', '.join(SCOPES)})")
    return match.group(1), scopes


def demo_keys(scopes: Iterable[str] = SCOPES) -> tuple[str, dict[str, object]]:
    """A random key and the config overrides (random secret, one entry) that accept it.

    For the demo and tests: ``key, overrides = demo_keys(); load_config(overrides)``.
    """
    key, secret = new_key(), secrets.token_hex(32)
    return key, {"api_key_secret": secret, "api_keys": (key_entry(key, secret, scopes),)}


class KeyCheck:
    """Finds the scopes of a presented key.

    Args:
        entries: Configured entries (``ServingConfig.api_keys``).
        secret: The server secret the digests were made with.
    """

    def __init__(self, entries: Iterable[str], secret: str) -> None:
        self.entries = tuple(parse_entry(e) for e in entries)
        self.secret = secret

    def match(self, key: str | None) -> tuple[str, frozenset[str]] | None:
        """``(stored digest, scopes)`` of ``key`` (the header value), or None when absent or unknown.

        Every configured digest is compared, each in constant time, so the time taken says
        nothing about which entry (if any) matched.
        """
        if not key or not self.secret:
            return None
        digest = key_digest(key, self.secret)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry[0], digest):
                found = entry
        return found
