"""The reference evaluator: checked policy set + request ⇒ decision; it *is* SPEC §1–§2.

Plain and readable on purpose: every faster evaluator is tested against this one. It walks
the checked AST directly; ``let``s and policy targets are evaluated at most once per request
and cached (errors included); with a :class:`Tracer` it records every evaluated expression
for ``explain``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import clock, operators
from .access import index_value, missing, not_a_map
from .builtins import BUILTINS
from .check import CheckedPolicy, CheckedPolicySet, CheckedRule
from .decision import ALLOW, FAILED_CLOSED, MAX_REASON_CHARS, Decision, Reason, RuleError, cap_reason, combine
from .errors import EvalError
from .request import ROOT_KEYS, TOKEN_ROOT, Request
from .syntax import ast
from .values import parse_time, render, type_name

_UNSET = object()


# ---- tracing (explain) -------------------------------------------------------------------


@dataclass
class TraceNode:
    """One evaluated expression: its text and its value or error, with its sub-expressions."""

    text: str
    value: object = _UNSET
    error: str | None = None
    children: list["TraceNode"] = field(default_factory=list)
    expr: object = field(default=None, repr=False, compare=False)  # the AST node (explain reads its kind)


class Tracer:
    def __init__(self) -> None:
        self.root = TraceNode("")
        self.stack = [self.root]

    def enter(self, expr: ast.Expr) -> TraceNode:
        node = TraceNode(ast.to_text(expr), expr=expr)
        self.stack[-1].children.append(node)
        self.stack.append(node)
        return node

    def leave(self) -> None:
        self.stack.pop()

    def take(self) -> TraceNode | None:
        """The last top-level node recorded (the clause just evaluated)."""
        return self.root.children[-1] if self.root.children else None


# ---- evaluation --------------------------------------------------------------------------


class Evaluation:
    """The evaluation of one request against one policy set."""

    def __init__(self, policy_set: CheckedPolicySet, request: Request, tracer: Tracer | None = None,
                 max_clock_skew: float | None = None):
        self.policy_set = policy_set
        self.attrs = request.attrs
        self.arrival = request.arrival
        self.token = request.token
        self.max_clock_skew = max_clock_skew  # None: context.time is taken as given (pdp.clock)
        self.tracer = tracer
        # The policy set holds data read-only (a mapping proxy); expressions see a plain map.
        self.data = dict(policy_set.data)
        self._now: object = _UNSET
        self._lets: dict[tuple[int, str], object] = {}
        self._targets: dict[int, object] = {}

    # -- clauses --

    def target(self, policy: CheckedPolicy) -> bool:
        """The policy's target (true when absent); evaluated once, its error cached too."""
        if policy.target is None:
            return True
        key = id(policy)
        cached = self._targets.get(key, _UNSET)
        if cached is _UNSET:
            try:
                cached = self.condition(policy.target, policy, "target")
            except EvalError as err:
                cached = err
            self._targets[key] = cached
        if isinstance(cached, EvalError):
            raise cached
        return cached  # type: ignore[return-value]

    def rule_applies(self, policy: CheckedPolicy, rule: CheckedRule) -> bool:
        """Target, then ``when``, then ``unless``; raises EvalError when one cannot be evaluated."""
        if not self.target(policy):
            return False
        r = rule.rule
        if r.when is not None and not self.condition(r.when, policy, "when"):
            return False
        if r.unless is not None and self.condition(r.unless, policy, "unless"):
            return False
        return True

    def condition(self, expr: ast.Expr, policy: CheckedPolicy, clause: str) -> bool:
        value = self.eval(expr, policy)
        if value is not True and value is not False:
            raise EvalError(f"{clause} expects a boolean, got {type_name(value)}")
        return value

    def reason_message(self, rule: CheckedRule, policy: CheckedPolicy) -> str:
        """The rule's reason with ``{expr}`` parts rendered; a failing part renders as ``{?}``.

        Cut to ``MAX_REASON_CHARS`` (``cap_reason``); parts past the cut are not rendered.
        """
        if rule.rule.reason is None:
            return ""
        out = []
        size = 0
        for part in rule.rule.reason.parts:
            if size > MAX_REASON_CHARS:
                break  # it will be cut here whatever comes next
            if not isinstance(part, str):
                try:
                    part = render(self.eval(part, policy))
                except EvalError:
                    part = "{?}"
            out.append(part)
            size += len(part)
        return cap_reason("".join(out))

    # -- values --

    def now(self) -> int | float:
        if self._now is _UNSET:
            context = self.attrs["context"]
            if "time" in context:
                try:
                    self._now = parse_time(context["time"])
                except EvalError as err:
                    self._now = EvalError(f"context.time: {err.message}")
                else:
                    if self.max_clock_skew is not None:
                        try:
                            clock.bounded(self._now, self.arrival, self.max_clock_skew)
                        except EvalError as err:
                            self._now = err
            else:
                self._now = self.arrival
        if isinstance(self._now, EvalError):
            raise self._now
        return self._now  # type: ignore[return-value]

    def let(self, policy: CheckedPolicy, name: str) -> object:
        key = (id(policy), name)
        cached = self._lets.get(key, _UNSET)
        if cached is _UNSET:
            try:
                cached = self.eval(policy.lets[name].expr, policy)
            except EvalError as err:
                cached = err
            self._lets[key] = cached
        if isinstance(cached, EvalError):
            raise cached
        return cached

    def eval(self, e: ast.Expr, policy: CheckedPolicy) -> object:
        if self.tracer is None or _self_evident(e):
            return self._eval(e, policy)
        node = self.tracer.enter(e)
        try:
            node.value = self._eval(e, policy)
            return node.value
        except EvalError as err:
            node.error = err.message
            raise
        finally:
            self.tracer.leave()

    def _eval(self, e: ast.Expr, policy: CheckedPolicy) -> object:
        if isinstance(e, ast.Literal):
            return e.value
        if isinstance(e, ast.Name):
            name = e.name
            if name in ROOT_KEYS:
                return self.attrs[name]
            if name == TOKEN_ROOT:
                if self.token is None:
                    raise EvalError(missing(TOKEN_ROOT))
                return self.token
            if name == "data":
                return self.data
            if name == "now":
                return self.now()
            return self.let(policy, name)
        if isinstance(e, ast.Attribute):
            obj = self.eval(e.obj, policy)
            if not isinstance(obj, dict):
                raise EvalError(not_a_map(ast.to_text(e.obj), obj))
            if e.name not in obj:
                raise EvalError(missing(ast.to_text(e)))
            return obj[e.name]
        if isinstance(e, ast.Index):
            return self._index(e, policy)
        if isinstance(e, ast.And):
            for operand in e.operands:
                if not self._boolean(operand, policy, "and"):
                    return False
            return True
        if isinstance(e, ast.Or):
            for operand in e.operands:
                if self._boolean(operand, policy, "or"):
                    return True
            return False
        if isinstance(e, ast.Not):
            return not self._boolean(e.operand, policy, "not")
        if isinstance(e, ast.Compare):
            left = self.eval(e.left, policy)
            right = self.eval(e.right, policy)
            return operators.apply(e.op, left, right)
        if isinstance(e, ast.Call):
            if e.func == "defined":
                try:
                    self.eval(e.args[0], policy)
                except EvalError:
                    return False
                return True
            args = [self.eval(a, policy) for a in e.args]
            return BUILTINS[e.func].impl(self.now, *args)  # type: ignore[misc]
        if isinstance(e, ast.ListExpr):
            return [self.eval(item, policy) for item in e.items]
        raise TypeError(f"not an expression: {e!r}")  # pragma: no cover

    def _boolean(self, e: ast.Expr, policy: CheckedPolicy, op: str) -> bool:
        value = self.eval(e, policy)
        if value is not True and value is not False:
            wanted = "a boolean" if op == "not" else "booleans"
            raise EvalError(f"{op} expects {wanted}, got {type_name(value)}")
        return value

    def _index(self, e: ast.Index, policy: CheckedPolicy) -> object:
        obj = self.eval(e.obj, policy)
        key = self.eval(e.key, policy)
        return index_value(obj, key, ast.to_text(e.obj))


def _self_evident(e: ast.Expr) -> bool:
    """Literals and whole request roots say nothing a trace reader needs."""
    return isinstance(e, ast.Literal) or (
        isinstance(e, ast.ListExpr) and all(isinstance(i, ast.Literal) for i in e.items)
    ) or (isinstance(e, ast.Name) and (e.name in ROOT_KEYS or e.name == "data"))


# ---- the decision procedure --------------------------------------------------------------


def decide(policy_set: CheckedPolicySet, request: Request, revision: str,
           max_clock_skew: float | None = None) -> Decision:
    """Decide one request (SPEC §2): all candidate forbids, then — if none applied — permits.

    With ``max_clock_skew`` a ``context.time`` further than that from ``request.arrival`` (the
    server clock) makes ``now`` an evaluation error (pdp.clock)."""
    return decide_claims(policy_set, request, revision, max_clock_skew)[0]


def decide_claims(policy_set: CheckedPolicySet, request: Request, revision: str,
                  max_clock_skew: float | None = None) -> tuple[Decision, list | None]:
    """The decision, and the limits (SPEC §9) an ALLOW meets (``limit_claims``); None when
    the decision is not ALLOW or the policy set has no limit. ``max_clock_skew`` as ``decide``'s."""
    started = time.perf_counter_ns()
    evaluation = Evaluation(policy_set, request, max_clock_skew=max_clock_skew)
    errors: list[RuleError] = []
    forbids = _applying(evaluation, policy_set.rules("forbid"), errors)
    permits = [] if forbids else _applying(evaluation, policy_set.rules("permit"), errors)
    decision = combine(forbids, permits, errors, revision, time.perf_counter_ns() - started)
    limits = policy_set.limits()
    if decision[0] != ALLOW or not limits:
        return decision, None
    return decision, limit_claims(evaluation, limits)


def limit_claims(evaluation: Evaluation, limits) -> list | None:
    """The limits a request meets, in source order: ``(index, key values)`` for each limit
    that applies, ``(index, message)`` for each whose condition or key cannot be evaluated
    (it fails closed); None when it meets none."""
    out = []
    for i, (policy, limit) in enumerate(limits):
        try:
            if evaluation.rule_applies(policy, limit):
                out.append((i, tuple(limit_key(evaluation.eval(key, policy)) for key in limit.rule.keys)))
        except EvalError as err:
            out.append((i, err.message))
    return out or None


def limit_key(value: object) -> object:
    """A key value of a limit: a string, a number or a boolean."""
    if type(value) in (str, int, float, bool):
        return value
    raise EvalError(f"a limit key must be a string, number or boolean, got {type_name(value)}")


def _applying(evaluation: Evaluation, rules, errors: list[RuleError]) -> list[Reason]:
    reasons = []
    for policy, rule in rules:
        try:
            applies = evaluation.rule_applies(policy, rule)
        except EvalError as err:
            errors.append(RuleError(rule.id, err.message))
            if rule.effect == "forbid":  # fail closed: a forbid that cannot be evaluated applies
                reasons.append(Reason(rule.id, "forbid", FAILED_CLOSED + err.message, rule.annotations))
            continue
        if applies:
            reasons.append(Reason(rule.id, rule.effect, evaluation.reason_message(rule, policy), rule.annotations))
    return reasons
