"""The pure-Python evaluator of a compiled Program: (Program, request dict) ⇒ Decision.

Used when the Cython extension (``_ceval``) is not built; it links each node into a closure
once at load, so a decision runs closures, not an interpreter loop. Semantics are the
reference evaluator's, message for message; the operators, built-ins and values are the
shared ones (pdp/operators.py, pdp/builtins.py, pdp/values.py).
"""

from __future__ import annotations

import sys
import time

from .. import clock, operators
from ..builtins import BUILTINS, cidr_set
from ..compile import ir
from ..compile.program import Program
from ..compile.verify import verify
from ..decision import (FAILED_CLOSED, MAX_REASON_CHARS, Reason, RuleError, cap_reason, combine, decide_batch,
                        failed_closed, frozen_map)
from ..errors import EvalError, RequestError
from ..glob import compile_glob
from ..request import ROOT_KEYS, candidate_probe, candidate_value, parse_request
from ..values import parse_time, render, type_name
from ..access import index_value, missing, not_a_map, not_boolean

_UNSET = object()
_ROOT_INDEX = {name: i for i, name in enumerate(ir.ROOTS)}


class _Context:
    __slots__ = ("roots", "arrival", "max_skew", "cache", "_now")

    def __init__(self, roots: tuple, arrival: float, max_skew: float | None = None):
        self.roots = roots
        self.arrival = arrival
        self.max_skew = max_skew  # None: context.time is taken as given (pdp.clock)
        self.cache: dict = {}
        self._now = _UNSET

    def now(self):
        now = self._now
        if now is _UNSET:
            context = self.roots[3]
            if "time" in context:
                try:
                    now = parse_time(context["time"])
                except EvalError as err:
                    now = EvalError(f"context.time: {err.message}")
                else:
                    if self.max_skew is not None:
                        try:
                            now = clock.bounded(now, self.arrival, self.max_skew)
                        except EvalError as err:
                            now = err
            else:
                now = self.arrival
            self._now = now
        if type(now) is EvalError:
            raise now
        return now


def link(node: tuple):
    """A node ⇒ a function of the request context that returns its value or raises EvalError."""
    op = node[0]
    if op == ir.CONST:
        value = node[1]
        return lambda ctx: value
    if op == ir.CIDR:
        value = cidr_set(node[1])
        return lambda ctx: value
    if op == ir.ERROR:
        message = node[1]

        def error(ctx):
            raise EvalError(message)
        return error
    if op == ir.PATH:
        return _link_path(node)
    if op == ir.NOW:
        return lambda ctx: ctx.now()
    if op == ir.ATTR:
        obj, name, obj_text, text = link(node[1]), node[2], node[3], node[4]

        def attr(ctx):
            value = obj(ctx)
            if type(value) is not dict:
                raise EvalError(not_a_map(obj_text, value))
            try:
                return value[name]
            except KeyError:
                raise EvalError(missing(text)) from None
        return attr
    if op == ir.INDEX:
        obj, key, obj_text = link(node[1]), link(node[2]), node[3]
        return lambda ctx: index_value(obj(ctx), key(ctx), obj_text)
    if op == ir.LIST:
        items = [link(i) for i in node[1]]
        return lambda ctx: [f(ctx) for f in items]
    if op == ir.NOT:
        operand = link(node[1])

        def not_(ctx):
            value = operand(ctx)
            if value is True:
                return False
            if value is False:
                return True
            raise EvalError(not_boolean("not", value))
        return not_
    if op in (ir.AND, ir.OR):
        return _link_logic(op, [link(i) for i in node[1]])
    if op == ir.COMPARE:
        fn, left, right = operators.OPERATORS[node[1]], link(node[2]), link(node[3])
        return lambda ctx: fn(left(ctx), right(ctx))
    if op == ir.EQ_STR:
        operand, text, negate = link(node[1]), node[2], node[3]
        if negate:
            return lambda ctx: operand(ctx) != text
        return lambda ctx: operand(ctx) == text
    if op == ir.IN_STRS:
        operand, texts, negate = link(node[1]), frozenset(node[2]), node[3]

        def in_strs(ctx):
            value = operand(ctx)
            found = type(value) is str and value in texts
            return not found if negate else found
        return in_strs
    if op == ir.MATCH_GLOB:
        operand, glob, pattern = link(node[1]), compile_glob(node[2]), node[2]

        def match(ctx):
            value = operand(ctx)
            if type(value) is not str:
                return operators.apply("matches", value, pattern)  # raises the shared message
            return glob.match(value)
        return match
    if op == ir.CALL:
        impl, args = BUILTINS[node[1]].impl, [link(a) for a in node[2]]
        if len(args) == 1:
            arg = args[0]
            return lambda ctx: impl(ctx.now, arg(ctx))
        return lambda ctx: impl(ctx.now, *[a(ctx) for a in args])
    if op == ir.DEFINED:
        operand = link(node[1])

        def defined(ctx):
            try:
                operand(ctx)
            except EvalError:
                return False
            return True
        return defined
    if op == ir.LOOKUP:
        key, default = link(node[1]), link(node[3])
        cases = {k: link(v) for k, v in node[2].items()}

        def lookup(ctx):
            try:
                value = key(ctx)
            except EvalError:
                return default(ctx)  # it meets the same error where it reads the key
            case = cases.get(value) if type(value) is str else None
            return default(ctx) if case is None else case(ctx)
        return lookup
    if op == ir.CACHED:
        slot, inner = node[1], link(node[2])

        def cached(ctx):
            cache = ctx.cache
            value = cache.get(slot, _UNSET)
            if value is _UNSET:
                try:
                    value = inner(ctx)
                except EvalError as err:
                    value = err
                cache[slot] = value
            if type(value) is EvalError:
                raise value
            return value
        return cached
    raise ValueError(f"unknown opcode {op}")  # pragma: no cover


def constant_value(node: tuple) -> object:
    """The value of a node that reads neither the request nor the time (raises EvalError):
    the compiler folds such nodes with this evaluator, so folding words errors as it does."""
    return link(node)(_Context(({}, {}, {}, {}, None), float("nan")))


def _link_path(node: tuple):
    _, root, keys, texts = node
    keys = tuple(sys.intern(k) for k in keys)  # identity hits in dict look-ups
    index = _ROOT_INDEX[root]

    def path(ctx):
        value = ctx.roots[index]
        if value is None:  # the token root of a request without a token
            raise EvalError(missing(texts[0]))
        for i, key in enumerate(keys):
            if type(value) is not dict:
                raise EvalError(not_a_map(texts[i], value))
            try:
                value = value[key]
            except KeyError:
                raise EvalError(missing(texts[i + 1])) from None
        return value
    return path


def _link_logic(op: int, items: list):
    name = "and" if op == ir.AND else "or"
    short = op == ir.OR  # the value that settles the result

    def logic(ctx):
        for item in items:
            value = item(ctx)
            if value is short:
                return short
            if value is not (not short):
                raise EvalError(not_boolean(name, value, plural=True))
        return not short
    return logic


class _LinkedRule:
    __slots__ = ("id", "effect", "reason", "annotations", "static_reason")

    def __init__(self, code, linked_nodes):
        self.id, self.effect = code.id, code.effect
        self.annotations = frozen_map(code.annotations)  # shared by its reasons: read-only
        self.reason = None
        message = ""
        if code.reason is not None:
            if all(isinstance(p, str) for p in code.reason):
                message = cap_reason("".join(code.reason))
            else:
                self.reason = [p if isinstance(p, str) else linked_nodes(p) for p in code.reason]
        self.static_reason = Reason(self.id, self.effect, message, self.annotations)


class Evaluator:
    """Decides requests with one compiled Program."""

    backend = "python"

    def __init__(self, program: Program, max_clock_skew: float | None = None):
        verify(program)  # PolicyError unless well-formed, as the compiled evaluator
        self.program = program
        # None: context.time is taken as given (pdp.clock)
        self.max_clock_skew = None if max_clock_skew is None else clock.check_max_skew(max_clock_skew)
        memo: dict[int, object] = {}

        def linked(node):
            if node is None:
                return None
            key = id(node)
            if key not in memo:
                memo[key] = link(node)
            return memo[key]

        self._rules = [_LinkedRule(code, linked) for code in program.rules]
        self._trees = (self._link_tree(program.forbid_tree, linked), self._link_tree(program.permit_tree, linked))
        self._limits = [(i, linked(c.target), linked(c.when), linked(c.unless), [linked(k) for k in c.keys])
                        for i, c in enumerate(program.limits)]

    def _link_tree(self, tree, linked):
        if tree[0] == "leaf":
            return ("leaf", [(self._rules[rule], linked(target), linked(when), linked(unless))
                             for rule, target, when, unless in tree[1]])
        _, path, branches, default, error = tree
        return ("switch", linked(path), {k: self._link_tree(v, linked) for k, v in branches.items()},
                self._link_tree(default, linked), None if error is None else self._link_tree(error, linked))

    def decide(self, raw: dict, token: dict | None = None):
        """Decide one request; raises RequestError when it is malformed. Any other exception
        (a bug) fails closed: DENY with the reason ``internal_error``. ``token`` is the
        request's verified token (the root ``token``; None: absent)."""
        try:
            request = parse_request(raw)
            return self.decide_parsed(request.attrs, request.arrival, token)
        except RequestError:
            raise
        except Exception as exc:
            return failed_closed(exc, self.program.revision)

    def decide_many(self, requests) -> list:
        """Validate every request first (RequestError names the index), then decide each; an
        internal error fails that request closed."""
        return decide_batch(requests, lambda r: self.decide_parsed(r.attrs, r.arrival), self.program.revision)

    def decide_claims(self, raw: dict, token: dict | None = None) -> tuple:
        """``(decision, claims)``: the claims are the limits an ALLOW meets (as
        ``reference.limit_claims``), None when it is not ALLOW or meets none. ``token`` as
        ``decide``'s."""
        try:
            request = parse_request(raw)
            return self._decide(request.attrs, request.arrival, token, True)
        except RequestError:
            raise
        except Exception as exc:
            return failed_closed(exc, self.program.revision), None

    def decide_many_claims(self, requests, tokens=None) -> list:
        """``decide_claims`` of each request, in order (validated first, as ``decide_many``);
        ``tokens``: the verified token of each request (None: no request has one)."""
        pairs = decide_batch(requests, lambda r: _Pair(self._decide(r.attrs, r.arrival, r.token, True)),
                             self.program.revision, tokens)
        return [tuple(p) if type(p) is _Pair else (p, None) for p in pairs]

    def decide_parsed(self, attrs: dict, arrival: float, token: dict | None = None):
        return self._decide(attrs, arrival, token, False)[0]

    def decide_parsed_claims(self, attrs: dict, arrival: float, token: dict | None = None) -> tuple:
        """``decide_parsed``, and the limits an ALLOW meets, as ``decide_claims``."""
        return self._decide(attrs, arrival, token, True)

    def _decide(self, attrs: dict, arrival: float, token: dict | None, claims: bool) -> tuple:
        started = time.perf_counter_ns()
        ctx = self._context((attrs["identity"], attrs["action"], attrs["resource"], attrs["context"], token), arrival)
        errors: list = []
        forbids = self._phase(self._trees[0], ctx, errors)
        permits = [] if forbids else self._phase(self._trees[1], ctx, errors)
        decision = combine(forbids, permits, errors, self.program.revision, time.perf_counter_ns() - started)
        if not claims or not self._limits or forbids or not permits:
            return decision, None
        return decision, self._claims(ctx)

    def _claims(self, ctx: _Context) -> list | None:
        out = []
        for i, target, when, unless, keys in self._limits:
            try:
                if ((target is None or _condition(target(ctx), "target"))
                        and (when is None or _condition(when(ctx), "when"))
                        and not (unless is not None and _condition(unless(ctx), "unless"))):
                    out.append((i, tuple(limit_key(k(ctx)) for k in keys)))
            except EvalError as err:
                out.append((i, err.message))
        return out or None

    def _context(self, roots: tuple, arrival: float) -> _Context:
        """The context of one request (decide and allowed_candidates both make theirs here)."""
        return _Context(roots, arrival, self.max_clock_skew)

    def allowed_candidates(self, request, root: str, key: str, candidates, limit: int = -1) -> list[int]:
        """The indexes of ``candidates`` for which ``request`` with ``request[root][key]`` set to
        the candidate is an ALLOW, in order, at most ``limit`` (all when negative); as the
        compiled evaluator's (which says more)."""
        arrival = time.time()
        attrs = parse_request(candidate_probe(request, root, key), arrival).attrs
        entity = dict(attrs[root])
        roots = (*(entity if name == root else attrs[name] for name in ROOT_KEYS), None)  # no token
        forbid_tree, permit_tree = self._trees
        out: list[int] = []
        for i, candidate in enumerate(candidates):
            candidate = candidate_value(root, key, candidate)
            if candidate is None:
                continue
            entity[key] = candidate
            ctx = self._context(roots, arrival)
            try:
                if any(self._holds(entry, ctx) is not False for entry in self._leaf(forbid_tree, ctx)[1]):
                    continue  # a forbid applies or fails closed
                if not any(self._holds(entry, ctx) is True for entry in self._leaf(permit_tree, ctx)[1]):
                    continue
            except Exception:  # a bug: that candidate fails closed
                continue
            out.append(i)
            if len(out) == limit:
                break
        return out

    @staticmethod
    def _holds(entry, ctx: _Context):
        """Whether a leaf entry's rule applies: True, False, or None when it fails."""
        _rule, target, when, unless = entry
        try:
            return ((target is None or _condition(target(ctx), "target"))
                    and (when is None or _condition(when(ctx), "when"))
                    and not (unless is not None and _condition(unless(ctx), "unless")))
        except EvalError:
            return None

    @staticmethod
    def _leaf(tree, ctx: _Context):
        while tree[0] == "switch":
            _, path, branches, default, error = tree
            try:
                value = path(ctx)
            except EvalError:
                tree = error
                continue
            tree = branches.get(value, default) if type(value) is str else default
        return tree

    def _phase(self, tree, ctx: _Context, errors: list) -> list:
        tree = self._leaf(tree, ctx)
        reasons = []
        for rule, target, when, unless in tree[1]:
            try:
                applies = ((target is None or _condition(target(ctx), "target"))
                           and (when is None or _condition(when(ctx), "when"))
                           and not (unless is not None and _condition(unless(ctx), "unless")))
            except EvalError as err:
                errors.append(RuleError(rule.id, err.message))
                if rule.effect == "forbid":
                    reasons.append(Reason(rule.id, "forbid", FAILED_CLOSED + err.message, rule.annotations))
                continue
            if applies:
                reasons.append(rule.static_reason if rule.reason is None else self._reason(rule, ctx))
        return reasons

    def _reason(self, rule: _LinkedRule, ctx: _Context) -> Reason:
        out = []
        size = 0
        for part in rule.reason:
            if size > MAX_REASON_CHARS:
                break  # cut here whatever comes next (as the reference does)
            if not isinstance(part, str):
                try:
                    part = render(part(ctx))
                except EvalError:
                    part = "{?}"
            out.append(part)
            size += len(part)
        message = "".join(out)
        return Reason(rule.id, rule.effect, cap_reason(message) if size > MAX_REASON_CHARS else message,
                      rule.annotations)


class _Pair(tuple):
    """A (decision, claims) pair passing through ``decide_batch`` (which fails a request closed
    with a bare Decision)."""

    __slots__ = ()


def limit_key(value: object) -> object:
    """A key value of a limit: a string, a number or a boolean (as ``reference.limit_key``)."""
    if type(value) in (str, int, float, bool):
        return value
    raise EvalError(f"a limit key must be a string, number or boolean, got {type_name(value)}")


def _condition(value: object, clause: str) -> bool:
    if value is True or value is False:
        return value
    raise EvalError(f"{clause} expects a boolean, got {type_name(value)}")
