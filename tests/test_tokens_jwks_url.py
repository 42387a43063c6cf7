"""JWKS over https (SPEC §8): fetched when needed, cached, refetched on an unknown kid at most
once per 30 s, the last good set kept when a fetch fails, timeouts. The issuer is a local
https server with a test CA made in the test, on 127.0.0.1 and a free port."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import pdp
from pdp.tokens import load_trust
from pdp.tokens import mint
from pdp.tokens.keys import FETCH_WAIT
from pdp.tokens.verify import Rejected, verify

from serverkit import WAIT, make_certs
from tokenkit import ISSUER, key, token


class Issuer:
    """A JWKS endpoint: serves ``self.document`` at /jwks.json; counts requests; can fail,
    hang, redirect, or answer ``delay`` seconds late."""

    def __init__(self, certs):
        self.document: dict = {"keys": []}
        self.requests = 0
        self.mode = "ok"  # ok | error | hang | redirect
        self.delay = 0.0
        self.release = threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                issuer.requests += 1
                if issuer.delay:
                    issuer.release.wait(issuer.delay)
                if issuer.mode == "hang":
                    issuer.release.wait(10)
                if issuer.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/jwks.json")
                    self.end_headers()
                    return
                if issuer.mode == "error":
                    self.send_error(500)
                    return
                body = json.dumps(issuer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that gave up (timeout, untrusted certificate): expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("jwks-certs"))


@pytest.fixture
def issuer(certs):
    server = Issuer(certs)
    yield server
    server.stop()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _trust(tmp_path, issuer, certs, extra="", wait=WAIT):
    """The trust file of ``issuer``, with a clock the test moves; a request waits up to ``wait``
    seconds for a fetch (long by default: these tests count fetches, not waits)."""
    path = tmp_path / "trust.yaml"
    path.write_text(f"issuers:\n  - issuer: {json.dumps(ISSUER)}\n    jwks: {json.dumps(issuer.url)}\n"
                    f"    jwks_ca: {json.dumps(str(certs.ca))}\n    audiences: [payments-api]\n{extra}")
    trust = load_trust(path)
    keys = trust.issuers[ISSUER].keys
    keys.clock = Clock()
    keys.wait = wait
    return trust, keys


def _why(trust, tok):
    with pytest.raises(Rejected) as info:
        verify(trust, tok, time.time())
    return info.value.message


def test_fetched_when_first_needed_then_cached(tmp_path, issuer, certs):
    k1 = key("ES256", "url-1")
    issuer.document = mint.jwks(k1)
    trust, keys = _trust(tmp_path, issuer, certs)
    assert issuer.requests == 0  # loading the trust file fetches nothing
    for _ in range(5):
        assert verify(trust, token(k1, "ES256"), time.time())
    assert issuer.requests == 1
    keys.clock.now += 301  # the cached set is old: fetched again, in the background
    issuer.delay = 3.0
    started = time.monotonic()
    assert verify(trust, token(k1, "ES256"), time.time())  # the old set serves meanwhile
    assert time.monotonic() - started < 2.0
    assert keys.settle(WAIT)
    assert issuer.requests == 2


def test_rotation_refetches_on_an_unknown_kid_at_most_once_per_30s(tmp_path, issuer, certs):
    old, new = key("ES256", "url-old"), key("ES256", "url-new")
    issuer.document = mint.jwks(old)
    trust, keys = _trust(tmp_path, issuer, certs)
    assert verify(trust, token(old, "ES256"), time.time())
    assert issuer.requests == 1
    issuer.document = mint.jwks(old, new)  # the issuer rotates
    keys.clock.now += 5
    # within 30 s of the last fetch: random kids (and the new one) do not reach the issuer
    for i in range(50):
        assert _why(trust, token(mint.generate_key("ES256", kid=f"random-{i}") if i < 3 else new, "ES256")) \
            .startswith("token rejected: unknown key")
    assert issuer.requests == 1
    keys.clock.now += 30
    assert verify(trust, token(new, "ES256"), time.time())  # one refetch finds it
    assert issuer.requests == 2
    for i in range(20):
        _why(trust, token(mint.generate_key("ES256", kid=f"later-{i}") if i < 2 else key("ES256", "url-none"),
                          "ES256"))
    assert issuer.requests == 2


def test_the_last_good_set_is_kept_when_a_fetch_fails(tmp_path, issuer, certs):
    k1 = key("ES256", "url-1")
    issuer.document = mint.jwks(k1)
    trust, keys = _trust(tmp_path, issuer, certs)
    assert verify(trust, token(k1, "ES256"), time.time())
    for mode in ("error", "redirect"):
        issuer.mode = mode
        keys.clock.now += 301
        assert verify(trust, token(k1, "ES256"), time.time())  # refetch failed: the old set serves
        assert keys.settle(WAIT)
    assert issuer.requests == 3
    issuer.document = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}  # a bad set is a failed fetch too
    issuer.mode = "ok"
    keys.clock.now += 301
    assert verify(trust, token(k1, "ES256"), time.time())
    assert keys.settle(WAIT) and issuer.requests == 4
    assert verify(trust, token(k1, "ES256"), time.time())


def test_a_hanging_issuer_times_out(tmp_path, issuer, certs):
    issuer.mode = "hang"
    trust, keys = _trust(tmp_path, issuer, certs, extra="    jwks_timeout: 500ms\n")
    started = time.monotonic()
    assert _why(trust, token(key("ES256", "url-1"), "ES256")) == "token rejected: unknown key: no key 'url-1'"
    assert time.monotonic() - started < 5
    issuer.release.set()


def test_an_untrusted_certificate_is_a_failed_fetch(tmp_path, issuer, certs):
    issuer.document = mint.jwks(key("ES256", "url-1"))
    path = tmp_path / "trust.yaml"
    path.write_text(f"issuers:\n  - issuer: {json.dumps(ISSUER)}\n    jwks: {json.dumps(issuer.url)}\n"
                    f"    audiences: [payments-api]\n")  # no jwks_ca: the system CAs do not know the test CA
    assert _why(load_trust(path), token(key("ES256", "url-1"), "ES256")).startswith("token rejected: unknown key")


POLICY = 'policy api { target resource.type == "api" permit writer when token.scopes contains "payments:write" }'
REQUEST = {"identity": {"type": "workload", "id": "billing"}, "action": "charge", "resource": {"type": "api"}}


def _engine(tmp_path, trust):
    (tmp_path / "p.pdl").write_text(POLICY)
    return pdp.load(tmp_path / "p.pdl", trust=trust)


def test_a_slow_issuer_holds_no_request(tmp_path, issuer, certs):
    """Requests that need a key while the issuer is slow share one fetch, wait for it at most
    FETCH_WAIT, and are answered unknown key; the requests after the fetch verify."""
    k1 = key("ES256", "slow-1")
    issuer.document = mint.jwks(k1)
    issuer.delay = 3.0
    trust, keys = _trust(tmp_path, issuer, certs, wait=FETCH_WAIT)
    engine = _engine(tmp_path, trust)
    request = {**REQUEST, "context": {"token": token(k1, "ES256")}}
    start = threading.Barrier(8)
    answers = []

    def one():
        start.wait(WAIT)
        began = time.monotonic()
        decision = engine.decide(request)
        answers.append((time.monotonic() - began, decision))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(answers) == 8
    for seconds, decision in answers:
        assert [(r.rule, r.message) for r in decision.reasons] == \
            [("pdp.token", "token rejected: unknown key: no key 'slow-1'")]
        assert seconds < 2.0  # the fetch takes 3 s: no request waited for it
    assert keys.settle(WAIT)
    assert issuer.requests == 1  # one fetch for all of them
    assert engine.decide(request).allowed  # the fetch landed: the key is known now
    assert issuer.requests == 1


def test_a_request_on_an_event_loop_never_waits_for_a_fetch(tmp_path, issuer, certs):
    """AuthZEN over HTTP decides on its asyncio loop: a fetch must not hold the loop."""
    import asyncio

    k1 = key("ES256", "loop-1")
    issuer.document = mint.jwks(k1)
    issuer.delay = 3.0
    trust, keys = _trust(tmp_path, issuer, certs, wait=WAIT)  # off a loop, this would wait
    engine = _engine(tmp_path, trust)
    request = {**REQUEST, "context": {"token": token(k1, "ES256")}}

    async def decide():
        began = time.monotonic()
        return engine.decide(request), time.monotonic() - began

    decision, seconds = asyncio.run(decide())
    assert decision.reasons[0].message == "token rejected: unknown key: no key 'loop-1'"
    assert seconds < 2.0
    assert keys.settle(WAIT)
    assert asyncio.run(decide())[0].allowed
