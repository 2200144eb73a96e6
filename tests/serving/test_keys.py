"""API keys with scopes, stored as HMAC-SHA256 under a server secret."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from serving.config import load_config
from serving.http.auth import KeyCheck, demo_keys, key_digest, key_entry

SECRET = "another-secret-0123456789"


@pytest.fixture
def scoped(make_app, config):
    """An app with one key per scope plus one with no admin scope; returns (app, keys by name)."""
    keys = {"decide": "k-decide", "outcomes": "k-outcomes", "admin": "k-admin", "both": "k-both"}
    entries = [
        key_entry(keys["decide"], SECRET, ["decide"]),
        key_entry(keys["outcomes"], SECRET, ["outcomes"]),
        key_entry(keys["admin"], SECRET, ["admin"]),
        key_entry(keys["both"], SECRET, ["decide", "outcomes"]),
    ]
    app = make_app(config | {"api_keys": entries, "api_key_secret": SECRET})
    return app, keys


def _call(client, route: str, key: str):
    headers = {"X-API-Key": key}
    if route == "decisions":
        return client.post("/v1/decisions", json={"nonsense": 1}, headers=headers)
    if route == "outcomes":
        return client.post("/v1/outcomes", json={"nonsense": 1}, headers=headers)
    if route == "rating":
        return client.get("/v1/buyers/5/rating", headers=headers)
    if route == "reload":
        return client.post("/v1/admin/reload", json={"parts": ["policy"]}, headers=headers)
    return client.get("/v1/model", headers=headers)


ALLOWED = {
    "decide": {"decisions", "rating", "model"},
    "outcomes": {"outcomes", "model"},
    "admin": {"reload", "model"},
    "both": {"decisions", "rating", "outcomes", "model"},
}


@pytest.mark.parametrize("who", sorted(ALLOWED))
@pytest.mark.parametrize("route", ["decisions", "outcomes", "rating", "reload", "model"])
def test_each_route_needs_its_scope(scoped, who, route):
    app, keys = scoped
    response = _call(app.test_client(), route, keys[who])
    if route in ALLOWED[who]:
        assert response.status_code in (200, 400), response.json  # past authorisation
    else:
        assert response.status_code == 403, response.json
        assert response.json["code"] == "forbidden"


def test_unknown_key_and_key_under_another_secret_are_401(scoped):
    app, keys = scoped
    client = app.test_client()
    assert _call(client, "model", "k-nobody").status_code == 401
    # The same clear key is worthless if the entry was made with another secret.
    other = KeyCheck([key_entry(keys["admin"], "a-different-secret-xyz", ["admin"])], SECRET)
    assert other.match(keys["admin"]) is None


def test_keys_are_stored_as_hmac_not_bare_sha256():
    digest = key_digest("k", SECRET)
    assert digest != hashlib.sha256(b"k").hexdigest()
    assert key_entry("k", SECRET, ["admin", "decide"]) == f"{digest}:admin+decide"
    check = KeyCheck([key_entry("k", SECRET, ["decide"])], SECRET)
    assert check.match("k") == (digest, frozenset({"decide"}))
    assert check.match("K") is None and check.match("") is None and check.match(None) is None


@pytest.mark.parametrize(
    "entries, secret, message",
    [
        ([hashlib.sha256(b"k").hexdigest()], SECRET, "api_keys"),  # the old bare-digest format
        ([key_entry("k", SECRET, ["decide"]).replace("decide", "root")], SECRET, "unknown scope"),
        ([key_entry("k", SECRET, ["decide"])], "short", "api_key_secret"),
    ],
)
def test_config_rejects_bad_key_settings(entries, secret, message):
    with pytest.raises(ValueError, match=message):
        load_config({"api_keys": entries, "api_key_secret": secret}, env={})


def test_keys_and_secret_come_from_the_environment():
    entry = key_entry("k", SECRET, ["outcomes"])
    config = load_config(
        env={
            "SERVING_API_KEYS": f"{entry},{key_entry('j', SECRET, ['admin'])}",
            "SERVING_API_KEY_SECRET": SECRET,
        }
    )
    assert config.api_keys[0] == entry and len(config.api_keys) == 2
    assert SECRET not in repr(config)


def test_demo_keys_make_a_working_key():
    key, overrides = demo_keys()
    config = load_config(overrides, env={})
    assert KeyCheck(config.api_keys, config.api_key_secret).match(key)[1] == {"decide", "outcomes", "admin"}


def _cli(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"} | ({"SERVING_API_KEY_SECRET": secret} if secret else {})
    return subprocess.run(
        [sys.executable, "-m", "serving", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_hash_key_and_new_key_commands():
    out = _cli("hash-key", "my-key", "--scopes", "decide,admin")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == key_entry("my-key", SECRET, ["decide", "admin"])
    new = _cli("new-key", "--scopes", "outcomes")
    assert new.returncode == 0, new.stderr
    key, entry = new.stdout.split()
    assert KeyCheck([entry], SECRET).match(key)[1] == {"outcomes"}
    assert _cli("hash-key", "k", secret=None).returncode == 2  # no secret: refuse
    assert _cli("hash-key", "k", "--scopes", "root").returncode == 2
