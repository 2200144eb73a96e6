"""API-key authentication: callers send ``X-API-Key``; the service stores only sha256 digests."""

from __future__ import annotations

from collections.abc import Iterable

from serving.config import hash_api_key

HEADER = "X-API-Key"


class KeyCheck:
    """Accepts a key whose sha256 digest is configured.

    Args:
        digests: sha256 hex digests of the accepted keys (``ServingConfig.api_key_hashes``).
    """

    def __init__(self, digests: Iterable[str]) -> None:
        self.digests = frozenset(digests)

    def allows(self, key: str | None) -> bool:
        """Whether ``key`` (the header value, None when absent) is accepted."""
        # Comparing digests, not keys: a timing difference reveals nothing about a valid key.
        return bool(key) and hash_api_key(key) in self.digests
