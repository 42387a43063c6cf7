"""The AuthZEN endpoints' logic, without HTTP: body bytes in, ``(status, JSON object)`` out.

Adds to ``pdp.authzen`` what the gRPC servicer adds to the engine: the serving engine read
once per call (one answer, one revision), the per-request attribute limit, ``context.peer``
from the mTLS client certificate, the decision log and metrics (api ``"authzen"``; a search
is one log line and one count of ``pdp_searches_total``, not a decision per candidate).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Generator

from ..authzen import mapping
from ..authzen import search as searching
from ..authzen.mapping import BadRequest
from ..errors import RequestError
from .convert import check_attribute_count, with_peer
from .holder import EngineHolder
from .options import ServerOptions

log = logging.getLogger("pdp.server")

API = "authzen"
_perf_ns = time.perf_counter_ns
#: pdp's request roots under their AuthZEN names, for error messages.
_MEMBERS = {"identity": "subject"}

#: The paths every endpoint answers on, by the name the discovery document gives them.
ENDPOINTS = {
    "access_evaluation_endpoint": "/access/v1/evaluation",
    "access_evaluations_endpoint": "/access/v1/evaluations",
    "search_subject_endpoint": "/access/v1/search/subject",
    "search_resource_endpoint": "/access/v1/search/resource",
    "search_action_endpoint": "/access/v1/search/action",
}
WELL_KNOWN = "/.well-known/authzen-configuration"


#: An endpoint as steps: a generator that yields ``(limiter, [(decision, claims), ...])`` when
#: limits must be settled, is sent the final decisions, and returns ``(status, JSON object)``.
#: The same steps run with the limiter's own store (``settled``) or on an event loop with an
#: asyncio client of it (``pdp.server.http``).
Steps = Generator[tuple, list, tuple[int, dict]]


def settled(steps: Steps) -> tuple[int, dict]:
    """Run an endpoint's steps, settling limits with the limiter's own (blocking) store."""
    try:
        ask = next(steps)
        while True:
            limiter, pairs = ask
            ask = steps.send(limiter.settle_many(pairs))
    except StopIteration as done:
        return done.value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body; BadRequest when it is not JSON."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest("", f"the request body is not valid JSON ({exc})") from None


def authzen_path(err: RequestError) -> str:
    """A RequestError's message with the AuthZEN member name (``identity.x`` ⇒ ``subject.x``)."""
    root, dot, rest = err.path.partition(".")
    path = _MEMBERS.get(root, root) + dot + rest
    return f"{path}: {err.message}" if path else err.message


class AuthzenService:
    """The five endpoints for ``holder``'s engine, within ``options``' limits."""

    def __init__(self, holder: EngineHolder, options: ServerOptions):
        self.holder = holder
        self.max_attributes = options.max_attributes
        self.max_batch = options.max_batch
        self.log = options.decision_log
        self.metrics = options.metrics

    def _prepare(self, request: dict, size: int, peer: dict | None) -> dict:
        check_attribute_count(request, size, self.max_attributes)
        return with_peer(request, peer)

    def _rejected(self, request_id: str, request: Any, message: str, status: int = 400) -> tuple[int, dict]:
        if self.metrics is not None:
            self.metrics.error(API, "INVALID_ARGUMENT" if status == 400 else "INTERNAL")
        if self.log is not None:
            self.log.record_error(API, request_id, request, message)
        return status, {"error": message}

    def _decided(self, request_id: str, request: dict, decision, started: int) -> None:
        elapsed = _perf_ns() - started
        if self.metrics is not None:
            self.metrics.decided(API, decision.decision, decision.reasons, elapsed / 1e9)
        if self.log is not None:
            self.log.record(API, request_id, request, decision, elapsed)

    @staticmethod
    def _decide(engine, request: dict, defer: bool) -> tuple:
        """The decision, and with ``defer`` the limits it meets, left to settle (claims)."""
        if defer and engine.limiter is not None:
            return engine.decide_claims(request)
        return engine.decide(request), None

    def _settle(self, engine, pending: list, out: list, request_id: str):
        """Steps: the pending items' limits settled in one yield (one store call), answered."""
        decisions = yield engine.limiter, [(decision, claims) for _, _, decision, claims, _ in pending]
        for (i, request, _, _, started), decision in zip(pending, decisions):
            self._decided(request_id, request, decision, started)
            out[i] = mapping.answer(decision)

    # ---- POST /access/v1/evaluation

    def evaluation(self, raw: bytes, request_id: str = "", peer: dict | None = None) -> tuple[int, dict]:
        return settled(self.evaluation_steps(raw, request_id, peer))

    def evaluation_steps(self, raw: bytes, request_id: str = "", peer: dict | None = None,
                         defer: bool = False) -> Steps:
        """The evaluation as steps (``settled``); with ``defer``, limits met are yielded to be
        settled by the caller's store (the HTTP server's asyncio Redis client)."""
        started = _perf_ns()
        request = None
        engine = self.holder.engine
        try:
            request = self._prepare(mapping.to_request(parse_body(raw)), len(raw), peer)
            decision, claims = self._decide(engine, request, defer)
        except BadRequest as err:
            return self._rejected(request_id, request, str(err))
        except RequestError as err:
            return self._rejected(request_id, request, authzen_path(err))
        except Exception:  # a bug: 500 without internals, logged; the server keeps serving
            log.exception("AuthZEN evaluation %r: unexpected error", request_id)
            return self._rejected(request_id, request, "internal error in pdp (logged on the server)", 500)
        if claims is not None:
            out = [None]
            yield from self._settle(engine, [(0, request, decision, claims, started)], out, request_id)
            return 200, out[0]
        self._decided(request_id, request, decision, started)
        return 200, mapping.answer(decision)

    # ---- POST /access/v1/evaluations

    def evaluations(self, raw: bytes, request_id: str = "", peer: dict | None = None) -> tuple[int, dict]:
        return settled(self.evaluations_steps(raw, request_id, peer))

    def evaluations_steps(self, raw: bytes, request_id: str = "", peer: dict | None = None,
                          defer: bool = False) -> Steps:
        """The evaluations as steps (``settled``). With ``defer``, the items that meet limits
        are settled together after the last item (one store call, in request order, as a gRPC
        CheckBatch), or each in turn when the batch has a stop condition (``deny_on_first_deny``,
        ``permit_on_first_permit``): whether the next item is evaluated, and takes units,
        depends on the final decision of this one."""
        try:
            body = parse_body(raw)
            parsed = mapping.batch(body)
        except BadRequest as err:
            return self._rejected(request_id, None, str(err))
        if parsed is None:  # no `evaluations`: a single Access Evaluation (AuthZEN 1.0)
            return (yield from self.evaluation_steps(raw, request_id, peer, defer))
        items, stop_on = parsed
        if len(items) > self.max_batch:
            return self._rejected(request_id, None, f"evaluations: {len(items)} items in one request; the "
                                                    f"server's limit is {self.max_batch}")
        engine = self.holder.engine
        out: list = []
        pending: list = []  # (index in out, request, decision, claims, started) of items meeting limits
        for i, item in enumerate(items):
            started = _perf_ns()
            if isinstance(item, BadRequest):
                out.append(self._item_error(request_id, None, str(item)))
            else:
                try:
                    request = self._prepare(item, len(raw), peer)
                    decision, claims = self._decide(engine, request, defer)
                except RequestError as err:
                    out.append(self._item_error(request_id, item, f"evaluations[{i}]: {authzen_path(err)}"))
                except Exception:  # a bug: this item fails closed, the others are decided
                    log.exception("AuthZEN evaluations %r item %d: unexpected error", request_id, i)
                    out.append(self._item_error(request_id, item, "internal error in pdp (logged on the server)",
                                                500))
                else:
                    if claims is None:
                        self._decided(request_id, request, decision, started)
                        out.append(mapping.answer(decision))
                    else:
                        out.append(None)
                        pending.append((i, request, decision, claims, started))
                        if stop_on is not None:
                            yield from self._settle(engine, pending, out, request_id)
                            pending = []
            if stop_on is not None and out[-1]["decision"] is stop_on:
                break
        if pending:
            yield from self._settle(engine, pending, out, request_id)
        return 200, {"evaluations": out}

    def _item_error(self, request_id: str, request: Any, message: str, status: int = 400) -> dict:
        self._rejected(request_id, request, message, status)
        return mapping.error_answer(message, status)

    # ---- POST /access/v1/search/{subject,resource,action}

    def search(self, kind: str, raw: bytes, request_id: str = "", peer: dict | None = None) -> tuple[int, dict]:
        started = _perf_ns()
        engine = self.holder.engine.without_limits()  # a search takes no unit from any budget
        query = None
        try:
            query = searching.parse(kind, parse_body(raw))
            template = self._prepare(query.template, len(raw), peer)
            candidates = searching.catalog(engine).candidates(query)
            answer = searching.answer(engine, query, candidates, template)
        except BadRequest as err:
            return self._search_rejected(kind, request_id, query and query.template, str(err))
        except RequestError as err:
            return self._search_rejected(kind, request_id, query and query.template, authzen_path(err))
        except Exception:
            log.exception("AuthZEN %s search %r: unexpected error", kind, request_id)
            return self._search_rejected(kind, request_id, None, "internal error in pdp (logged on the server)", 500)
        elapsed = _perf_ns() - started
        found, more = len(answer["results"]), answer["page"]["next_token"] != ""
        if self.metrics is not None:
            self.metrics.searched(kind, "found" if found else "empty", elapsed / 1e9)
        if self.log is not None:
            self.log.record_search(API, request_id, template, kind, found, more, engine.revision, elapsed)
        answer["context"] = {"revision": engine.revision}
        return 200, answer

    def _search_rejected(self, kind: str, request_id: str, request: Any, message: str,
                         status: int = 400) -> tuple[int, dict]:
        if self.metrics is not None:
            self.metrics.searched(kind, "invalid" if status == 400 else "failed")
        return self._rejected(request_id, request, message, status)

    # ---- GET /.well-known/authzen-configuration

    @staticmethod
    def configuration(base_url: str) -> dict:
        """The discovery document; ``base_url`` is the scheme and Host the client used."""
        base = base_url.rstrip("/")
        return {"policy_decision_point": base, **{name: base + path for name, path in ENDPOINTS.items()}}
