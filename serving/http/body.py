"""Strict request bodies: media type, size, a bounded read, UTF-8 JSON objects only.

Every rule about the bytes of a body lives here; what the fields mean is ``serving.schema``.
A body is accepted only when

* it is ``application/json`` (a ``charset`` parameter, if any, is ``utf-8``), else 415;
* it is at most ``max_body_bytes``, whether announced by ``Content-Length`` or sent chunked
  (counted while reading), else 413;
* it arrives within ``body_timeout_s`` of the first read, else 408 (a stalled or
  trickling client; under gevent workers the bound is exact, otherwise each wait on the
  socket is bounded by the time left);
* it is UTF-8 (no other encoding, no BOM), one JSON object, with no duplicate keys and no
  ``NaN``/``Infinity``, else 400 with a ``field`` naming where.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from serving.http.problems import Problem

CHUNK = 4096


class _Duplicate(ValueError):
    pass


class _NonFinite(ValueError):
    pass


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


def _no_constant(name: str) -> Any:
    raise _NonFinite(name)


# Stateless decoders (their hooks keep nothing between calls).
_STRICT = json.JSONDecoder(object_pairs_hook=_strict_pairs, parse_constant=_no_constant, parse_float=Decimal)


class _Marked(dict):
    """A decoded object that held a duplicate key (the slow path that finds where)."""

    duplicate: str = ""


class _Constant:
    def __init__(self, name: str) -> None:
        self.name = name


def _marking_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    marked = _Marked(pairs)
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


_MARKING = json.JSONDecoder(object_pairs_hook=_marking_pairs, parse_constant=_Constant, parse_float=Decimal)


def _where(value: Any, path: str) -> tuple[str, str] | None:
    """``(problem, dotted path)`` of the first duplicate key or non-finite constant in ``value``."""
    if isinstance(value, _Constant):
        return "non_finite", path
    if isinstance(value, Mapping):
        if isinstance(value, _Marked):
            return "duplicate", _join(path, value.duplicate)
        for key, item in value.items():
            found = _where(item, _join(path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _where(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _join(path: str, key: str) -> str:
    return key if path == "body" else f"{path}.{key}"


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a body that must be one UTF-8 JSON object.

    Args:
        raw: The body bytes.

    Returns:
        The object.

    Raises:
        Problem: 400 ``invalid_encoding``, ``malformed_json``, ``duplicate_key``,
            ``non_finite_number`` or ``not_an_object``, with ``field`` set where one is at fault.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "invalid_encoding", "the body must be UTF-8 encoded JSON", "body") from None
    try:
        value = _STRICT.decode(text)
    except (_Duplicate, _NonFinite):
        value = _MARKING.decode(text)
        kind, path = _where(value, "body") or ("malformed", "body")
        if kind == "duplicate":
            raise Problem(400, "duplicate_key", f"{path}: key appears more than once", path) from None
        raise Problem(
            400, "non_finite_number", f"{path}: NaN and Infinity are not JSON numbers", path
        ) from None
    except (ValueError, RecursionError):
        raise Problem(400, "malformed_json", "the body is not valid JSON", "body") from None
    if not isinstance(value, dict):
        raise Problem(400, "not_an_object", "the body must be a JSON object", "body")
    return value


def check_media_type(content_type: str | None) -> None:
    """Accept only ``application/json`` (optionally ``; charset=utf-8``); 415 otherwise."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        raise Problem(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media.strip() or 'nothing'}",
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise Problem(415, "unsupported_media_type", "the only accepted charset is utf-8")


@contextlib.contextmanager
def _total_deadline(seconds: float) -> Iterator[None]:
    """Under gevent workers, an exact bound on the whole read (``gevent.Timeout``); else nothing."""
    gevent = sys.modules.get("gevent")
    monkey = sys.modules.get("gevent.monkey")
    if gevent is None or monkey is None or not monkey.is_module_patched("socket"):
        yield
        return
    with gevent.Timeout(seconds, TimeoutError("body read timed out")):
        yield


def read_body(environ: Mapping[str, Any], limit: int, timeout_s: float) -> bytes:
    """Read the whole request body, at most ``limit`` bytes, within ``timeout_s`` seconds.

    Args:
        environ: The WSGI environ (``wsgi.input``; ``gunicorn.socket`` when under gunicorn).
        limit: Largest accepted body, in bytes.
        timeout_s: Longest wait for the body, in seconds.

    Returns:
        The body (empty when there is none).

    Raises:
        Problem: 413 ``body_too_large`` (announced or counted), 408 ``request_timeout``,
            400 ``malformed_request`` for an invalid ``Content-Length``.
    """
    announced = environ.get("CONTENT_LENGTH") or ""
    if announced:
        try:
            length = int(announced)
        except ValueError:
            raise Problem(400, "malformed_request", "Content-Length is not a number") from None
        if length > limit:
            raise Problem(413, "body_too_large", f"the body must be at most {limit} bytes")
    elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        length = limit + 1  # chunked: read until the end, counting
    else:
        return b""
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    deadline = time.monotonic() + timeout_s
    parts: list[bytes] = []
    size = 0
    try:
        with _total_deadline(timeout_s):
            while size < length:
                if sock is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = stream.read(min(CHUNK, length - size))
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise Problem(413, "body_too_large", f"the body must be at most {limit} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError("body read timed out")
    except TimeoutError:
        raise Problem(408, "request_timeout", f"the body did not arrive within {timeout_s:g} s") from None
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(None)
    return b"".join(parts)
