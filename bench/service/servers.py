"""The servers under test: the parse-only Flask app (target a), free ports, a server process group started
and stopped around the benchmark, and the production gunicorn command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def parse_app():
    """The parse-only Flask app (gunicorn ``bench.service.servers:parse_app()``)."""
    import json as _json

    from flask import Flask, jsonify, request

    app = Flask("parse_only")

    @app.post("/v1/decisions")
    def decisions():
        body = _json.loads(request.get_data(cache=False))
        return jsonify({"decision": "decline", "request_id": body.get("request_id")})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server process group started for the benchmark and stopped after it."""

    def __init__(self, name: str, cmd: list[str], env: dict, port: int, health: str, log: Path) -> None:
        self.name, self.cmd, self.env, self.port, self.health, self.log = name, cmd, env, port, health, log
        self.proc = None

    def __enter__(self) -> Server:
        out = open(self.log, "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}{self.health}", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after 180 s; see {self.log}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def gunicorn(app: str, port: int, workers: int, worker_class: str | None) -> list[str]:
    """The production gunicorn command (``serving/http/gunicorn_conf.py``) on ``port``."""
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:serving.http.gunicorn_conf",
        "-b",
        f"{HOST}:{port}",
    ]
    cmd += ["-w", str(workers), "--log-level", "warning"]
    if worker_class:
        cmd += ["-k", worker_class]
    return cmd + [app]
