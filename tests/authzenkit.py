"""Helpers for the AuthZEN tests: the interop vectors, and AuthZEN servers on 127.0.0.1 port 0
with a keep-alive JSON client."""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
from pathlib import Path

import pytest

from pdp.server import EngineHolder, ServerOptions
from pdp.server.http import HttpServer

CONFORMANCE = Path(__file__).parent / "conformance"
#: The AuthZEN interop vectors (see their SOURCE.md): shared/ beside the clone (CI), or beside
#: the folder of worktrees.
_REPO = Path(__file__).resolve().parents[1]
VECTORS = next((p for p in (_REPO.parent / "shared" / "conformance" / "authzen",
                            _REPO.parent.parent / "shared" / "conformance" / "authzen") if p.is_dir()),
               _REPO.parent / "shared" / "conformance" / "authzen")
TIMEOUT = 30.0


def vectors(relative: str) -> dict:
    path = VECTORS / relative
    if not path.is_file():
        pytest.skip(f"the AuthZEN conformance vectors are not there: {path} is absent")
    return json.loads(path.read_text(encoding="utf-8"))


class Client:
    """One keep-alive connection; ``post``/``get`` return (status, headers, JSON body)."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None):
        if context is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        else:
            self.conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=context)

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None

    def post(self, path: str, body, headers: dict | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.send("POST", path, data, headers)

    def get(self, path: str, headers: dict | None = None):
        return self.send("GET", path, None, headers)

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def serving(engine_or_holder, options: ServerOptions | None = None):
    """An AuthZEN HTTP server on 127.0.0.1 port 0; yields (holder, port)."""
    holder = engine_or_holder if isinstance(engine_or_holder, EngineHolder) else EngineHolder(engine_or_holder)
    server = HttpServer(holder, "127.0.0.1:0", options, grace=1.0)
    port = server.start()
    try:
        yield holder, port
    finally:
        server.stop()
