"""The engine: paths ⇒ loaded, checked policy set; request dicts ⇒ decisions and explanations.

Pipeline: loader (files, revision) → syntax (parse, AST) → check → evaluator.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
from typing import Iterable, Sequence

from . import clock, reference, runtime
from .check import UNKNOWN, CheckedPolicySet, check
from .compile import compile_program
from .decision import Decision, decide_batch, failed_closed
from .errors import Diagnostic, PolicyError, RequestError
from .explain import NOT_EVALUATED, Explanation, RuleTrace, explain
from .compile.program import Program
from .compile.verify import verify
from .datafile import load_data
from .limits import Limiter, MemoryStore, limited_decide
from .loader import DATA, POLICY, Source, data_name, discover, read_bytes, revision
from .request import Request, candidate_probe, candidate_value, indexed_request, parse_request
from .source import SourceFile
from .syntax import ast
from .syntax.parser import SyntaxProblem
from .syntax.to_ast import parse_module
from .tokens import Rejected, TokenGate, Trust, load_trust
from .tokens.gate import rejected_decision
from .tokens.verify import token_view
from .yamlio import decode_text


# PUBLIC: exported from pdp.
class Engine:
    """A loaded policy set, ready to decide. Immutable: reloading makes a new Engine.

    Built from source files (``pdp.load``) or from a compiled bundle (``pdp.load_bundle``); a
    bundle's engine parses its embedded sources only if ``explain`` is asked for.

    With a trust file (``trust``, SPEC §8), ``decide`` verifies the request's ``context.token``
    first: a token that does not verify is DENY with the single reason ``pdp.token`` and no
    rule is evaluated; one that verifies is the root ``token``. The token's own times (``exp``,
    ``nbf``, ``iat``) are always checked against the server clock.

    ``max_clock_skew`` (seconds; None by default) bounds the clock a caller may set: a
    ``context.time`` further than that from the server clock makes ``now`` an evaluation
    error (pdp.clock; ``pdp serve`` uses 30 s), on every path: ``decide``, ``decide_many``,
    ``decide_verified``, ``decide_at``, ``allowed_candidates``, ``explain``. Without it
    ``context.time`` is taken as given.
    """

    def __init__(self, program: Program, sources: Sequence[Source], policy_set: CheckedPolicySet | None = None,
                 backend: str | None = None, trust: Trust | None = None, max_clock_skew: float | None = None,
                 limits=None):
        self.program = program
        self.revision = program.revision
        self.sources = tuple(sources)
        self._policy_set = policy_set
        self.backend = backend or runtime.BACKEND
        self.trust = trust
        self.tokens = None if trust is None else TokenGate(trust)
        #: The trust file's own revision (its content and its key files'), None without one:
        #: served and compared by reloads beside ``revision``, which hashes the policies only.
        self.trust_revision = None if trust is None else trust.revision
        self.max_clock_skew = None if max_clock_skew is None else clock.check_max_skew(max_clock_skew)
        if self.backend == "reference":
            verify(program)  # the evaluators check the programs they link; this one decides from sources
            self._evaluator = None
            self._decide_with = self._decide_reference
        else:
            if self.backend not in runtime.EVALUATORS:
                raise ValueError(f"backend {self.backend!r} is not available; "
                                 f"available: {', '.join(sorted(runtime.EVALUATORS))}, reference")
            self._evaluator = runtime.EVALUATORS[self.backend](program, self.max_clock_skew)
            self._decide_with = self._evaluator.decide
        # Without a trust file nothing stands between a caller and the evaluator.
        self.decide = self._decide_with if self.tokens is None else self._decide_token  # type: ignore[method-assign]
        self.limiter: Limiter | None = None
        self._bind_limits(limits, True)

    # ---- velocity limits (SPEC §9)

    def _bind_limits(self, store, take: bool) -> None:
        """A policy set with limit rules decides through a Limiter; one without never touches
        a store (and keeps the evaluator's own ``decide``)."""
        if not self.program.limits:
            return
        self.limiter = Limiter(self.program.limits, store if store is not None else MemoryStore(), take)
        # Past no token gate, straight to the evaluator (the cheapest path: bench/LIMITS.md).
        direct = self._evaluator is not None and self.tokens is None
        claims_of = self._evaluator.decide_claims if direct else self.decide_claims
        self.decide = limited_decide(claims_of, self.limiter,  # type: ignore[method-assign]
                                     self._evaluator if direct else None)

    def with_limits(self, store, take: bool = True) -> "Engine":
        """This engine taking its limits' units from ``store`` (shared by the engines a server
        reloads); ``take=False`` only looks at the budgets (a shadow candidate)."""
        other = copy.copy(self)
        other._bind_limits(store, take)
        return other

    def without_limits(self) -> "Engine":
        """This engine deciding as if it had no limit rule: for queries that take no unit
        (AuthZEN search answers what the policies permit, not what a budget has left)."""
        if self.limiter is None:
            return self
        other = copy.copy(self)
        other.limiter = None
        other.decide = other._decide_with if other.tokens is None else other._decide_token  # type: ignore[method-assign]
        return other

    @property
    def limits(self):
        """The limit store this engine takes units from (None when it has no limit rule)."""
        return None if self.limiter is None else self.limiter.store

    def decide_claims(self, request: dict, claims: dict | None = None) -> tuple[Decision, list | None]:
        """The decision before the limits are settled, and the limits it meets (the claims).
        The token gate comes first: a rejected token is its DENY, which meets no limit. With
        ``claims``, the request's token is taken as verified with them (``decide_verified``)."""
        if claims is not None:
            return self._claims_with(request, self._token_view(claims))
        if self.tokens is None:
            return self._claims_with(request)
        try:
            verified = self.tokens.check(request)
        except Rejected as rejected:
            parse_request(request)  # a malformed request is a RequestError, token or not
            return rejected_decision(rejected, self.revision), None
        except Exception as exc:  # a bug: fail closed
            return failed_closed(exc, self.revision), None
        return self._claims_with(request) if verified is None else self._claims_with(request, verified.view)

    def _claims_with(self, request: dict, token: dict | None = None) -> tuple[Decision, list | None]:
        """``decide_claims`` past the token gate, ``token`` the verified one (None: none)."""
        if self._evaluator is not None:
            return self._evaluator.decide_claims(request, token)
        try:
            parsed = parse_request(request)
            return reference.decide_claims(self.policy_set, Request(parsed.attrs, parsed.arrival, token),
                                           self.revision, self.max_clock_skew)
        except RequestError:
            raise
        except Exception as exc:
            return failed_closed(exc, self.revision), None

    @property
    def policy_set(self) -> CheckedPolicySet:
        """The checked AST (parsed from the embedded sources on first use for a bundle)."""
        if self._policy_set is None:
            self._policy_set = _check_sources(self.sources)
        return self._policy_set

    def decide(self, request: dict) -> Decision:  # replaced per instance by the backend's decide
        """Decide one request (SPEC §3 dict); raises ``RequestError`` when it is malformed.

        Fails closed: any other exception met while deciding (a bug, an exhausted resource)
        gives DENY with the reason ``internal_error`` and is logged (logger ``pdp.engine``);
        every backend guards its own ``decide`` and ``decide_many``, so that the compiled one
        pays no extra call for it.
        """
        raise NotImplementedError  # pragma: no cover - __init__ always binds a backend

    def _decide_reference(self, request: dict, token: dict | None = None) -> Decision:
        try:
            parsed = parse_request(request)
            return reference.decide(self.policy_set, Request(parsed.attrs, parsed.arrival, token), self.revision,
                                    self.max_clock_skew)
        except RequestError:
            raise
        except Exception as exc:  # a bug: fail closed (each backend guards its own entry points)
            return failed_closed(exc, self.revision)

    def _decide_token(self, request: dict) -> Decision:
        """``decide`` with a trust file: the token gate, then the evaluator."""
        try:
            verified = self.tokens.check(request)  # type: ignore[union-attr]
        except Rejected as rejected:
            parse_request(request)  # a malformed request is a RequestError, token or not
            return rejected_decision(rejected, self.revision)
        except Exception as exc:  # a bug: fail closed
            return failed_closed(exc, self.revision)
        return self._decide_with(request) if verified is None else self._decide_with(request, verified.view)

    def decide_verified(self, request: dict, claims: dict) -> Decision:
        """Decide ``request`` as if it carried a token that verified with the payload
        ``claims`` (its root ``token`` is made from them; nothing is checked). For test suites,
        replays of decision logs, and callers that verified the token themselves."""
        if self.limiter is not None:
            decision, met = self._claims_with(request, self._token_view(claims))
            return decision if met is None else self.limiter.settle(decision, met)
        return self._decide_with(request, self._token_view(claims))

    @staticmethod
    def _token_view(claims: dict) -> dict:
        """The root ``token`` of a token verified with ``claims``; RequestError at ``token.PATH``."""
        try:
            return token_view(claims)
        except RequestError as err:
            raise RequestError(f"token.{err.path}", err.message) from None

    def token_claims(self, request: dict) -> dict | None:
        """The claims of ``request``'s verified token (from the gate's cache), or None when it
        has none, it did not verify, or no trust file is loaded. For decision logs."""
        context = request.get("context") if self.tokens is not None and type(request) is dict else None
        if type(context) is not dict or context.get("token") is None:
            return None
        try:  # the token alone (cached): checking its binding again would see a DPoP proof replayed
            return self.tokens.verified(context["token"], self.tokens.clock()).view["claims"]
        except Exception:  # Rejected, or anything else: no claims to log
            return None

    def decide_at(self, request: dict, server_time: float, claims: dict | None = None) -> Decision:
        """Decide ``request`` as if it had arrived when the server clock read ``server_time``
        (epoch seconds): that is ``now`` when the request has no ``context.time``, and what
        the clock bound measures ``context.time`` against. With ``claims`` its token is taken
        as verified with them (``decide_verified``); otherwise a trust file's gate checks it
        now. For deciding later what arrived earlier (shadow mode); raises ``RequestError``
        like ``decide``."""
        parsed = parse_request(request, server_time)
        if claims is not None:
            token = self._token_view(claims)
        elif self.tokens is None:
            token = None
        else:
            try:
                verified = self.tokens.check(request)
            except Rejected as rejected:
                return rejected_decision(rejected, self.revision)
            except Exception as exc:  # a bug: fail closed
                return failed_closed(exc, self.revision)
            token = None if verified is None else verified.view
        try:
            if self._evaluator is None:
                decision, met = reference.decide_claims(self.policy_set, Request(parsed.attrs, parsed.arrival, token),
                                                        self.revision, self.max_clock_skew)
            else:
                decision, met = self._evaluator.decide_parsed_claims(parsed.attrs, parsed.arrival, token)
            # Limits settle on the store's clock, now: server_time moves only ``now``.
            return decision if met is None or self.limiter is None else self.limiter.settle(decision, met)
        except Exception as exc:  # a bug: fail closed, as decide does
            return failed_closed(exc, self.revision)

    def with_max_clock_skew(self, seconds: float | None) -> "Engine":
        """This policy set with another clock bound (None: take ``context.time`` as given).

        A new engine: this one is unchanged (the suites of a reload run on an engine without
        a bound, the server then serves one with it)."""
        other = Engine(self.program, self.sources, self._policy_set, self.backend, self.trust, seconds, self.limits)
        # The same budgets, taken from (or only looked at) as here.
        return other if self.limiter is None or self.limiter.take else other.with_limits(self.limits, take=False)

    def decide_many(self, requests: Iterable[dict]) -> list[Decision]:
        """Decide many requests, in order. Every request is validated before any is decided;
        ``RequestError`` names the index of the first malformed one (``[3].identity.type``)."""
        if self.limiter is not None:
            return self.limiter.settle_many(self.decide_many_claims(requests))
        if self.tokens is not None:
            requests = list(requests)
            for i, raw in enumerate(requests):
                indexed_request(i, raw)
            return [self.decide(r) for r in requests]
        if self._evaluator is not None:
            return self._evaluator.decide_many(requests)
        return decide_batch(requests, lambda r: reference.decide(self.policy_set, r, self.revision, self.max_clock_skew),
                            self.revision)

    def allowed_candidates(self, request: dict, root: str, key: str, candidates: Sequence[object],
                           limit: int = -1) -> list[int]:
        """The indexes of ``candidates`` for which ``request`` with ``request[root][key]`` set to
        the candidate is an ALLOW, in order, at most ``limit`` of them (all when negative).

        The same answers as deciding each filled-in request, far cheaper: the request is
        validated once and no Decision is built (AuthZEN search, ``pdp.authzen.search``).
        Raises ``RequestError`` when the request is malformed apart from the candidate.
        Candidates are ids and names: one that is not a string, or that no valid request could
        carry at ``root.key``, is never allowed (``request.candidate_value``).
        """
        token = None
        if self.tokens is not None:
            try:
                verified = self.tokens.check(request)
            except Rejected:  # no candidate is allowed with a token that does not verify
                parse_request(candidate_probe(request, root, key))
                return []
            token = None if verified is None else verified.view
        if self._evaluator is not None and token is None:  # the fast path knows no token
            return self._evaluator.allowed_candidates(request, root, key, candidates, limit)
        parse_request(candidate_probe(request, root, key))  # RequestError before any candidate
        out = []
        for i, candidate in enumerate(candidates):
            value = candidate_value(root, key, candidate)
            if value is None:
                continue
            filled = dict(request)
            filled[root] = {**candidate_probe(request, root, key)[root], key: value}
            decision = self._decide_with(filled) if token is None else self._decide_with(filled, token)
            if decision.decision == "ALLOW":
                out.append(i)
                if len(out) == limit:
                    break
        return out

    def decide_many_claims(self, requests: Iterable[dict]) -> list[tuple[Decision, list | None]]:
        """``decide_claims`` of each request, in order (validated first, as ``decide_many``)."""
        if self.tokens is None:
            return self._many_claims_with(requests)
        requests = list(requests)
        for i, raw in enumerate(requests):
            indexed_request(i, raw)
        pairs: list = [None] * len(requests)
        passed, tokens = [], []  # the requests past the token gate, and their verified tokens
        for i, raw in enumerate(requests):
            try:
                verified = self.tokens.check(raw)
            except Rejected as rejected:
                pairs[i] = (rejected_decision(rejected, self.revision), None)
                continue
            except Exception as exc:  # a bug: fail closed
                pairs[i] = (failed_closed(exc, self.revision), None)
                continue
            passed.append(i)
            tokens.append(None if verified is None else verified.view)
        for i, pair in zip(passed, self._many_claims_with([requests[i] for i in passed], tokens)):
            pairs[i] = pair
        return pairs

    def _many_claims_with(self, requests: Iterable[dict], tokens: list | None = None) -> list:
        """``decide_many_claims`` past the token gate; ``tokens`` as the evaluators take them."""
        if self._evaluator is not None:
            return self._evaluator.decide_many_claims(requests, tokens)
        pairs = decide_batch(requests, lambda r: _Pair(reference.decide_claims(self.policy_set, r, self.revision,
                                                                               self.max_clock_skew)),
                             self.revision, tokens)
        return [tuple(p) if type(p) is _Pair else (p, None) for p in pairs]

    def explain(self, request: dict, claims: dict | None = None) -> Explanation:
        """Decide one request and say, for every rule, why it did or did not apply. With
        ``claims``, the request's token is taken as verified with them (``decide_verified``)."""
        parsed = parse_request(request)
        if claims is not None:
            parsed = Request(parsed.attrs, parsed.arrival, self._token_view(claims))
        elif self.tokens is not None:
            try:
                verified = self.tokens.check(request)
            except Rejected as rejected:
                return Explanation(rejected_decision(rejected, self.revision),
                                   [RuleTrace(rule.id, rule.effect, NOT_EVALUATED,
                                              f"{rejected.message}, so no rule is evaluated")
                                    for rule in self.program.rules])
            if verified is not None:
                parsed = Request(parsed.attrs, parsed.arrival, verified.view)
        return explain(self.policy_set, parsed, self.revision, self.max_clock_skew)

    @property
    def rule_ids(self) -> list[str]:
        return [rule.id for rule in self.program.rules]

    def __repr__(self) -> str:
        bound = "" if self.max_clock_skew is None else f" max_clock_skew={self.max_clock_skew:g}s"
        return f"<pdp.Engine revision={self.revision} rules={len(self.program.rules)} backend={self.backend}{bound}>"


class _Pair(tuple):
    """A (decision, claims) pair through ``decide_batch`` (which fails closed with a bare Decision)."""

    __slots__ = ()


def load(*paths: str | os.PathLike | Sequence[str | os.PathLike], backend: str | None = None,
         trust: str | os.PathLike | Trust | None = None, max_clock_skew: float | None = None,
         limits=None) -> Engine:
    """Load policies and data from files or folders; raises ``PolicyError`` with every problem.

    ``pdp.load("policies/")``, ``pdp.load("a.pdl", "b.pdl")`` and ``pdp.load(["a", "b"])`` all work.
    ``backend`` picks an evaluator: ``"compiled"`` (the Cython extension), ``"python"`` (the
    same compiled program in pure Python) or ``"reference"`` (the AST evaluator that defines
    the semantics); by default the fastest available. ``trust``: a trust file (SPEC §8), read
    now, so that requests' tokens are verified. ``max_clock_skew`` bounds ``context.time``
    against the server clock, as ``pdp serve`` does (see ``Engine``). ``limits`` is the store
    that limit rules take units from (``pdp.limits.MemoryStore()``, a new one, by default).
    """
    if trust is not None and not isinstance(trust, Trust):
        trust = load_trust(trust)
    flat: list[str | os.PathLike] = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            flat.extend(p)
        else:
            flat.append(p)
    entries = discover(flat)
    sources: list[Source] = []
    problems: list[Diagnostic] = []
    for entry in entries:
        if entry.kind in (POLICY, DATA):
            try:
                sources.append(Source(entry.display, entry.relative, entry.kind, read_bytes(entry)))
            except PolicyError as err:
                problems.extend(err.diagnostics)
    if problems:
        raise PolicyError(problems)
    with collector_paused():
        policy_set = _check_sources(sources)
        rev = revision([(s.relative, s.content) for s in sources])
        return Engine(compile_program(policy_set, rev), sources, policy_set, backend, trust, max_clock_skew, limits)


@contextlib.contextmanager
def collector_paused():
    """Pause the cyclic garbage collector while a policy set is built.

    Parsing makes hundreds of thousands of objects that all stay alive; each collection would
    walk them again, which made loading 10,000 rules take twice as long (measured). Nothing
    built here forms reference cycles that need collecting before the load ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_sources(sources: Sequence[Source]) -> CheckedPolicySet:
    """Source files (in load order) ⇒ checked policy set, or PolicyError with every problem."""
    diagnostics: list[Diagnostic] = []
    modules: list[ast.Module] = []
    data: dict[str, object] = {}
    data_origin: dict[str, str] = {}
    for src in sources:
        try:
            text = decode_text(src.content, src.display)
            source = SourceFile(src.display, text)
            if src.kind == POLICY:
                modules.append(parse_module(text, source))
            else:
                name = data_name(src.relative)
                if name in data_origin:
                    diagnostics.append(Diagnostic(src.display, 0, 0,
                                                  f"data name {name!r} is also defined by {data_origin[name]}",
                                                  "data_duplicate"))
                    continue
                data_origin[name] = src.display
                data[name] = UNKNOWN  # until it loads: paths into a file that fails are not checked
                data[name] = load_data(name, text, source, is_json=src.relative.endswith(".json"))
        except PolicyError as err:
            diagnostics.extend(err.diagnostics)
        except SyntaxProblem as problem:
            diagnostics.extend(problem.diagnostics)
    policy_set, check_diagnostics = check(modules, data)
    diagnostics.extend(check_diagnostics)
    if diagnostics:
        order = {s.display: i for i, s in enumerate(sources)}
        diagnostics.sort(key=lambda d: (order.get(d.file, -1), d.line, d.column))
        raise PolicyError(diagnostics)
    return policy_set
