"""AuthZEN over HTTP (SPEC §10) on aiohttp, in a thread of the serving process beside gRPC.

``HttpServer(holder, address, options).start()`` binds (raising ``BindError`` before anything
runs) and serves on its own event loop thread; ``stop()`` stops accepting and lets
requests in flight finish. Decisions take microseconds and never wait, so handlers decide
on the loop itself. When velocity limits keep their budgets in Redis, the limits a request
meets are settled with an asyncio Redis client on the same loop (one round trip for the
items of an evaluations batch), so the loop serves other requests while Redis answers.
bench/HTTP.md has the measurements that chose aiohttp.

Every answer is JSON and echoes ``X-Request-ID``: 400 ``{"error"}`` naming the member, 413
over ``max_message_bytes``, 404 for an unknown path, 405 for a wrong method, and a 400 for
bytes aiohttp cannot parse as HTTP. The server is aiohttp's low-level one (``web.Server``):
six fixed paths need no router, and it is where a connection's protocol can answer parse
errors (``_Connection``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import threading

from aiohttp import web

from ..tokens.binding import CNF_CERTIFICATE
from ..tokens.verify import b64url
from .app import BindError
from .authzen import ENDPOINTS, WELL_KNOWN, AuthzenService
from .holder import EngineHolder
from .metrics import split_address
from .options import ServerOptions, TLSConfig

log = logging.getLogger("pdp.server")

REQUEST_ID = "X-Request-ID"


def _remote(store):
    """An asyncio client of a limit store that answers from another process (Redis, or the
    ``--workers`` parent over its socket), or None when the store is this process's memory."""
    from ..limits.redis_store import RedisStore
    from ..limits.shared import SharedStore

    return store.asyncio() if isinstance(store, (RedisStore, SharedStore)) else None


def _advance(steps, value) -> tuple[bool, object]:
    """``steps.send(value)`` as (done, what): StopIteration cannot cross a Future."""
    try:
        return False, steps.send(value)
    except StopIteration as done:
        return True, done.value


_JSON = "application/json"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The server's TLS settings: its certificate, and with ``client_ca`` required client
    certificates (mTLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.client_ca is not None:
        ctx.load_verify_locations(str(tls.client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class RotatingTLS:
    """The server's SSLContext, following its files as gRPC's credentials do (pdp.server.tls):
    before each handshake, files that changed and check out give that handshake, and the
    ones after it, a context with the new certificate; files that do not check out are not
    served (the previous certificate stays, and the error is logged once)."""

    def __init__(self, tls: TLSConfig):
        from .tls import CertificateFiles

        self.tls = tls
        self.files = CertificateFiles(tls.cert, tls.key, tls.client_ca)  # ValueError: bad files, no start
        self.context = ssl_context(tls)  # the listening socket's; its callback switches handshakes
        self.context.sni_callback = self._hello
        self._current = self.context

    def _hello(self, ssl_object, _server_name, _context) -> None:
        if self.files.fetch() is not None:
            try:
                self._current = ssl_context(self.tls)
            except (OSError, ssl.SSLError) as err:  # rewritten again since the check
                log.error("TLS: the new certificate files are not served (%s); still serving the previous "
                          "certificate", err)
        if self._current is not self.context:
            ssl_object.context = self._current


def peer_attributes(cert: dict | None) -> dict | None:
    """``context.peer`` from a verified client certificate (``ssl`` decoded form), with the
    same members as over gRPC (``pdp.server.convert.peer_attributes``)."""
    if not cert:
        return None
    sans = cert.get("subjectAltName", ())
    uris = [v for k, v in sans if k == "URI"]
    peer: dict = {"authenticated": True}
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    if len(spiffe) == 1:  # a certificate with several SPIFFE IDs has none (SPIFFE X.509-SVID)
        peer["spiffe_id"] = spiffe[0]
    if uris:
        peer["uri_sans"] = uris
    dns = [v for k, v in sans if k == "DNS"]
    if dns:
        peer["dns_sans"] = dns
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                peer["common_name"] = value
                break
    return peer


def _json(status: int, payload: dict) -> web.Response:
    return web.Response(body=_dumps(payload).encode(), status=status, content_type=_JSON)


def _one_line(text: str) -> str:
    """aiohttp's parser message on one line, without its caret line."""
    return " ".join(part for part in text.split() if part.strip("^"))


class _Connection(web.RequestHandler):
    """aiohttp's protocol for one connection, answering what it cannot parse (garbage bytes,
    TLS on the plain port, a malformed header) as pdp answers everything: JSON, and one log
    line instead of a traceback, since a client's bytes are not pdp's error. aiohttp hands
    such requests to ``handle_error``, never to a handler or a middleware
    (aio-libs/aiohttp#3287), so this is where they are answered; the connection is closed."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp does: the answer is already on its way
            raise ConnectionError("the response is already sent; cannot send the error")
        if status >= 500:  # a bug in pdp, or a timeout: worth a traceback
            log.error("AuthZEN over HTTP: unexpected error answering %s %s", request.method, request.path,
                      exc_info=exc)
            text = "internal error in pdp (logged on the server)"
        else:
            text = f"malformed HTTP request: {_one_line(message or str(exc or '')) or 'cannot be parsed'}"
            log.info("AuthZEN over HTTP: %s (from %s)", text, request.remote)
        response = _json(status, {"error": text})
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's low-level server, whose connections are ``_Connection``s."""

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=asyncio.get_running_loop(), access_log=None)


class HttpServer:
    """The AuthZEN endpoints of ``holder``'s engine on ``address`` (``host:port``; 0 picks)."""

    def __init__(self, holder: EngineHolder, address: str, options: ServerOptions | None = None,
                 grace: float = 10.0):
        self.grace = grace  # on stop, how long requests in flight may take
        self.options = options or ServerOptions()
        self.holder = holder
        self.service = AuthzenService(holder, self.options)
        self.address = address
        self.scheme = "https" if self.options.tls is not None else "http"
        self.mutual_tls = self.options.tls is not None and self.options.tls.mutual
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.BaseRunner | None = None
        self._thread: threading.Thread | None = None
        self._limits = None  # the limit store's asyncio client, made on the server's loop (start)
        self._routes = self._route_table()

    # ---- the endpoints

    def _route_table(self) -> dict[str, tuple[str, object]]:
        """Path ⇒ (method, handler)."""
        service = self.service
        routes: dict[str, tuple[str, object]] = {
            ENDPOINTS["access_evaluation_endpoint"]: ("POST", self._post(service.evaluation,
                                                                         service.evaluation_steps)),
            ENDPOINTS["access_evaluations_endpoint"]: ("POST", self._post(service.evaluations,
                                                                          service.evaluations_steps)),
        }
        for kind in ("subject", "resource", "action"):
            routes[ENDPOINTS[f"search_{kind}_endpoint"]] = (
                "POST", self._post(lambda raw, rid, peer, kind=kind: service.search(kind, raw, rid, peer)))
        routes[WELL_KNOWN] = ("GET", self._configuration)
        return routes

    async def answer(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request aiohttp parsed: its endpoint's answer, or 404/405; X-Request-ID echoed."""
        route = self._routes.get(request.path)
        if route is None:
            response = _json(404, {"error": f"no AuthZEN endpoint at {request.path}"})
        elif request.method == route[0] or (route[0] == "GET" and request.method == "HEAD"):
            response = await route[1](request)
        else:
            allow = "GET, HEAD" if route[0] == "GET" else route[0]
            response = _json(405, {"error": f"{request.method} is not allowed on {request.path}; use {allow}"})
            response.headers["Allow"] = allow
        request_id = request.headers.get(REQUEST_ID)
        if request_id is not None:
            response.headers[REQUEST_ID] = request_id
        return response

    def _post(self, call, steps=None):
        async def handle(request: web.BaseRequest) -> web.Response:
            raw = await self._body(request)
            if raw is None:
                return _json(413, {"error": "the request body is larger than the server's limit of "
                                            f"{self.options.max_message_bytes} bytes"})
            peer = self._peer(request) if self.mutual_tls else None
            request_id = request.headers.get(REQUEST_ID, "")
            if self._limits is None:
                answer = call(raw, request_id, peer)
            elif steps is not None:
                answer = await self._settled(steps(raw, request_id, peer, defer=True))
            elif self.holder.engine.tokens is not None:
                # A search takes no unit, but a DPoP proof's replay check waits on the
                # store with the blocking client: on a thread, the loop goes on serving.
                answer = await asyncio.get_running_loop().run_in_executor(None, call, raw, request_id, peer)
            else:
                answer = call(raw, request_id, peer)  # a search without tokens never asks the store
            return _json(*answer)
        return handle

    async def _settled(self, steps) -> tuple[int, dict]:
        """Run an endpoint's steps (``pdp.server.authzen.settled``) with the limits settled by
        the store's asyncio client, within the store's deadline. With a trust file the steps
        themselves run on a thread: verifying a DPoP proof checks its replay in the store with
        the blocking client (up to the same deadline)."""
        loop = asyncio.get_running_loop()
        offload = self.holder.engine.tokens is not None
        value = None
        while True:
            if offload:
                done, what = await loop.run_in_executor(None, _advance, steps, value)
            else:
                done, what = _advance(steps, value)
            if done:
                return what
            limiter, pairs = what
            value = await limiter.settle_many_async(pairs, self._limits)

    async def _body(self, request: web.BaseRequest) -> bytes | None:
        """The request's body; None (reading no further) when it is over ``max_message_bytes``."""
        limit = self.options.max_message_bytes
        length = request.content_length
        if length is not None and length > limit:
            return None
        chunks, size = [], 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _configuration(self, request: web.BaseRequest) -> web.Response:
        host = request.headers.get("Host")
        if not host:  # HTTP/1.0 without Host: the address it reached
            local = request.transport.get_extra_info("sockname") if request.transport is not None else None
            name = local[0] if local else (request.url.host or "localhost")
            host = f"[{name}]:{self.port}" if ":" in name else f"{name}:{self.port}"
        return _json(200, self.service.configuration(f"{self.scheme}://{host}"))

    @staticmethod
    def _peer(request: web.BaseRequest) -> dict | None:
        transport = request.transport
        if transport is None:
            return None
        peer = peer_attributes(transport.get_extra_info("peercert"))
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if peer is not None and der:  # what a certificate-bound token's cnf names (RFC 8705)
            peer[CNF_CERTIFICATE] = b64url(hashlib.sha256(der).digest())
        return peer

    # ---- running in a thread

    def start(self) -> int:
        """Bind and serve; returns the port. Raises BindError when the address cannot be bound."""
        host, port = split_address(self.address)
        try:
            context = RotatingTLS(self.options.tls).context if self.options.tls is not None else None
        except (OSError, ValueError, ssl.SSLError) as err:
            raise BindError(f"cannot serve TLS on {self.address} (AuthZEN over HTTP): {err}") from None
        loop = asyncio.new_event_loop()
        runner = None

        async def bind() -> int:
            nonlocal runner
            self._limits = _remote(getattr(self.holder, "limits", None))
            runner = web.ServerRunner(_Server(self.answer), handle_signals=False, shutdown_timeout=self.grace)
            await runner.setup()
            site = web.TCPSite(runner, host, port, ssl_context=context, backlog=1024,
                               reuse_port=self.options.reuse_port or None)
            await site.start()
            return site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the only way to learn port 0's pick

        try:
            self.port = loop.run_until_complete(bind())
        except OSError as exc:
            if runner is not None:
                loop.run_until_complete(runner.cleanup())
            loop.close()
            raise BindError(f"cannot listen on {self.address} (AuthZEN over HTTP): {exc.strerror or exc}") from None
        self._loop, self._runner = loop, runner
        self._thread = threading.Thread(target=loop.run_forever, name="pdp-http", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop accepting; requests in flight get ``grace`` seconds."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        self._loop = self._runner = None
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(self.grace + 5)
            if self._limits is not None:
                asyncio.run_coroutine_threadsafe(self._limits.close(), loop).result(5)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.exception("stopping the HTTP server")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()
