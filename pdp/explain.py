"""Explanations: checked policy set + request ⇒ the decision and, for every rule, why it did or
did not apply, with the value (or error) of every sub-expression that was evaluated.

Runs the reference evaluator with a tracer, in the same order as ``decide``, so the decision
it reports is the one ``decide`` gives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .check import CheckedLimit, CheckedPolicy, CheckedPolicySet, CheckedRule
from .decision import ALLOW, DENY, FAILED_CLOSED, Decision, Reason, RuleError, combine
from .errors import EvalError
from .limits.limiter import key_text
from .reference import Evaluation, Tracer, TraceNode, _UNSET, limit_key
from .request import Request
from .shown import cut, preview
from .syntax import ast
from .syntax.ast import to_text

APPLIED, NOT_APPLIED, FAILED, NOT_EVALUATED = "applied", "not applied", "error", "not evaluated"
#: How many of the permits that came closest a default DENY's trace lists first.
MAX_CLOSEST = 5
#: A trace line longer than this shows its value on a line of its own.
_WIDE = 120


@dataclass
class RuleTrace:
    rule: str
    effect: str
    status: str  # applied | not applied | error | not evaluated
    note: str  # why, in words
    clauses: list[tuple[str, TraceNode]] = field(default_factory=list)
    message: str | None = None  # the reason message when the rule applied
    error: str | None = None

    def to_dict(self) -> dict:
        out = {"rule": self.rule, "effect": self.effect, "status": self.status, "note": self.note,
               "clauses": [{"clause": name, **node_dict(node)} for name, node in self.clauses]}
        if self.message is not None:
            out["message"] = self.message
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class NearMiss:
    """A permit that came close to applying: its target held, and ``failing`` is the smallest
    sub-expression of ``clause`` that kept it from applying (false in ``when``, true in
    ``unless``, or an error)."""

    trace: RuleTrace
    clause: str  # when | unless
    failing: TraceNode
    progress: tuple[bool, int]  # how far it got: past `when`, and how many of its conditions held

    def to_dict(self) -> dict:
        return {"rule": self.trace.rule, "status": self.trace.status, "clause": self.clause,
                "failing": node_dict(self.failing, children=False)}


# PUBLIC: returned by Engine.explain.
@dataclass
class Explanation:
    decision: Decision
    rules: list[RuleTrace]

    @property
    def default_deny(self) -> bool:
        return [r.rule for r in self.decision.reasons] == ["default"]

    @property
    def closest(self) -> list[NearMiss]:
        """For a default DENY: the permits whose target held, those that got furthest first (in
        source order among equals). Empty for any other decision."""
        if not self.default_deny:
            return []
        misses = [m for m in map(_near_miss, self.rules) if m is not None]
        return sorted(misses, key=lambda m: m.progress, reverse=True)  # stable: source order among equals

    def to_dict(self) -> dict:
        out: dict = {"decision": self.decision.to_dict()}
        if self.default_deny:
            out["closest"] = [m.to_dict() for m in self.closest]
        out["rules"] = [r.to_dict() for r in self.rules]
        return out

    def render(self) -> str:
        """A readable trace, for ``pdp eval --explain``: the decision and its reasons; for a
        default DENY, the permits that came closest; then every rule. Each value, expression,
        message and error is cut at ``MAX_SHOWN_CHARS`` characters."""
        d = self.decision
        lines = [f"{d.decision}  (revision {d.revision})"]
        for reason in d.reasons:
            message = f": {cut(reason.message)}" if reason.message else ""
            lines.append(f"  because {reason.effect} {reason.rule}{message}")
        for error in d.errors:
            lines.append(f"  error in {error.rule}: {cut(error.message)}")
        if self.default_deny:
            lines.append("")
            lines.extend(_render_closest(self.closest))
        lines.extend(render_rules(self.rules))
        return "\n".join(lines)


def render_rules(traces: list[RuleTrace]) -> list[str]:
    """Each rule's trace after a blank line: its status and note, then each clause it
    evaluated with the value (or error) of every sub-expression."""
    lines: list[str] = []
    for trace in traces:
        lines.append("")
        lines.append(f"{trace.effect} {trace.rule}: {trace.status.upper()} — {trace.note}")
        for clause, node in trace.clauses:
            _render_node(node, lines, 1, f"{clause} ")
    return lines


def _render_closest(misses: list[NearMiss]) -> list[str]:
    if not misses:
        return ["closest permits: none (no permit rule's target held)"]
    lines = ["closest permits (their target held; the first got furthest):"]
    for miss in misses[:MAX_CLOSEST]:
        if miss.trace.status == FAILED:
            how = "could not be evaluated" + ("" if miss.failing.error else f" ({cut(miss.trace.error or '')})")
        else:
            how = f"{miss.clause} is {'true' if miss.clause == 'unless' else 'false'}"
        lines.append(f"  permit {miss.trace.rule}: {how}, because")
        _render_node(miss.failing, lines, 2, max_depth=2)
    if len(misses) > MAX_CLOSEST:
        lines.append(f"  … and {len(misses) - MAX_CLOSEST} more (every rule is below)")
    return lines


def _near_miss(trace: RuleTrace) -> NearMiss | None:
    """The near miss of a permit that did not apply although its target held, else None."""
    if trace.effect != "permit" or trace.status not in (NOT_APPLIED, FAILED) or not trace.clauses:
        return None
    clause, node = trace.clauses[-1]  # the clause that stopped the rule
    if clause == "target":
        return None  # its target was false or failed: not close
    stopping = clause == "unless"  # the value that stops a rule: a true unless, a false when
    when = next((n for name, n in trace.clauses if name == "when"), None)
    held = 0  # the conditions of `when` that held
    if when is not None:
        held = sum(c.value is True for c in when.children) if isinstance(when.expr, ast.And) else int(when.value is True)
    progress = (stopping, held)  # stopped by `unless`: every condition of `when` held
    return NearMiss(trace, clause, culprit(node, stopping), progress)


def culprit(node: TraceNode, stopping: bool) -> TraceNode:
    """The smallest sub-expression of the clause ``node`` that errored or took the value
    ``stopping``: follow the error down, the operand that settled an ``and`` (false) or an
    ``or`` (true), or a ``let`` name into its expression."""
    while True:
        if node.error is not None:
            child = next((c for c in node.children if c.error is not None), None)
        elif isinstance(node.expr, ast.And if stopping is False else ast.Or):
            child = next((c for c in node.children if c.value is stopping), None)
        elif isinstance(node.expr, ast.Name) and len(node.children) == 1 and node.children[0].value is node.value:
            child = node.children[0]  # a let: its expression says more than its name
        else:
            child = None
        if child is None:
            return node
        node = child


def node_dict(node: TraceNode, children: bool = True) -> dict:
    """A trace node as JSON: ``expr``; ``error``, or ``value`` — or, for a value longer than
    ``MAX_SHOWN_CHARS`` characters of JSON, ``value_preview``, its start and an ellipsis;
    ``children``."""
    out: dict = {"expr": cut(node.text)}
    if node.error is not None:
        out["error"] = cut(node.error)
    elif node.value is not _UNSET:
        plain = _plain(node.value)
        text, was_cut = preview(plain)
        out["value_preview" if was_cut else "value"] = text if was_cut else plain
    if children and node.children:
        out["children"] = [node_dict(c) for c in node.children]
    return out


def _render_node(node: TraceNode, lines: list[str], depth: int, prefix: str = "", max_depth: int = -1) -> None:
    if node.error is not None:
        outcome = f"error: {cut(node.error)}"
    elif node.value is _UNSET:
        outcome = "not evaluated"
    else:
        outcome = preview(_shown(node.value))[0]
    head = f"{'  ' * depth}{prefix}{cut(node.text)}"
    if len(head) + len(outcome) > _WIDE and len(outcome) > 40:  # a long value goes on its own line
        lines.append(head)
        lines.append(f"{'  ' * (depth + 1)}⇒  {outcome}")
    else:
        lines.append(f"{head}  ⇒  {outcome}")
    if max_depth == 0:
        return
    for child in node.children:
        if child.text != node.text:
            _render_node(child, lines, depth + 1, max_depth=max_depth - 1)


def _plain(value: object) -> object:
    """A value as JSON data: a ``cidr(...)`` set as the list of its networks."""
    if isinstance(value, list):  # a list literal may hold cidr(...) sets
        return [_plain(item) for item in value]
    strings = getattr(value, "strings", None)
    return strings() if callable(strings) else value


def _shown(value: object) -> object:
    """A value as the text trace shows it: a ``cidr(...)`` set as ``{"cidr": [...]}``."""
    if isinstance(value, list):
        return [_shown(item) for item in value]
    strings = getattr(value, "strings", None)
    return {"cidr": strings()} if callable(strings) else value


def explain(policy_set: CheckedPolicySet, request: Request, revision: str,
            max_clock_skew: float | None = None) -> Explanation:
    started = time.perf_counter_ns()
    tracer = Tracer()
    evaluation = Evaluation(policy_set, request, tracer, max_clock_skew)
    target_traces: dict[int, TraceNode] = {}
    traces: list[RuleTrace] = []
    errors: list[RuleError] = []
    applied: dict[str, list[Reason]] = {"forbid": [], "permit": []}
    for effect in ("forbid", "permit"):
        for policy, rule in policy_set.rules(effect):
            if effect == "permit" and applied["forbid"]:
                traces.append(RuleTrace(rule.id, effect, NOT_EVALUATED,
                                        "a forbid rule applied, so permit rules are not evaluated"))
                continue
            trace = _trace_rule(evaluation, tracer, target_traces, policy, rule)
            traces.append(trace)
            if trace.status == FAILED:
                errors.append(RuleError(rule.id, trace.error or ""))
                if effect == "forbid":
                    applied["forbid"].append(Reason(rule.id, effect, FAILED_CLOSED + (trace.error or ""),
                                                    rule.annotations))
            elif trace.status == APPLIED:
                applied[effect].append(Reason(rule.id, effect, trace.message or "", rule.annotations))
    decision = combine(applied["forbid"], applied["permit"], errors, revision,
                       time.perf_counter_ns() - started)
    failed: list[Reason] = []
    for policy, limit in policy_set.limits():
        if decision.decision != ALLOW:
            traces.append(RuleTrace(limit.id, "limit", NOT_EVALUATED,
                                    "limits are consulted only for a request that would otherwise be ALLOW"))
            continue
        trace = _trace_limit(evaluation, tracer, target_traces, policy, limit)
        traces.append(trace)
        if trace.status == FAILED:
            failed.append(Reason(limit.id, "forbid", FAILED_CLOSED + (trace.error or ""), limit.annotations))
            errors.append(RuleError(limit.id, trace.error or ""))
    if failed:
        decision = Decision(DENY, tuple(failed), tuple(errors), revision, decision.eval_ns)
    return Explanation(decision, traces)


def _trace_limit(evaluation: Evaluation, tracer: Tracer, target_traces: dict[int, TraceNode],
                 policy: CheckedPolicy, limit: CheckedLimit) -> RuleTrace:
    """A limit rule: does the request meet it, and with which key (explain takes no unit)."""
    trace = _trace_rule(evaluation, tracer, target_traces, policy, limit)  # type: ignore[arg-type]
    if trace.status == FAILED:
        trace.note = "it could not be evaluated, so the request is denied (fail closed)"
        return trace
    if trace.status != APPLIED:
        return trace
    values = []
    for key in limit.rule.keys:
        before = len(tracer.root.children)
        try:
            values.append(limit_key(evaluation.eval(key, policy)))
        except EvalError as err:
            trace.status, trace.error = FAILED, err.message
            trace.note = "its key could not be evaluated, so the request is denied (fail closed)"
            return trace
        finally:
            node = tracer.take() if len(tracer.root.children) > before else _untraced(evaluation, key, policy)
            trace.clauses.append(("key", node))  # type: ignore[arg-type]
    trace.message = limit.message
    trace.note = (f"the request takes a unit from the budget of {limit.rule.count} per {limit.rule.period_text} "
                  f"for key {key_text(tuple(values))} (explain takes none; the decision is DENY when it is empty)")
    return trace


def _trace_rule(evaluation: Evaluation, tracer: Tracer, target_traces: dict[int, TraceNode],
                policy: CheckedPolicy, rule: CheckedRule) -> RuleTrace:
    trace = RuleTrace(rule.id, rule.effect, NOT_APPLIED, "")
    try:
        if policy.target is not None:
            before = len(tracer.root.children)
            try:
                holds = evaluation.target(policy)
            finally:
                if len(tracer.root.children) > before:
                    target_traces[id(policy)] = tracer.take()  # type: ignore[assignment]
                elif id(policy) not in target_traces:  # a literal target: the tracer skips it
                    target_traces[id(policy)] = _untraced(evaluation, policy.target, policy)
                trace.clauses.append(("target", target_traces[id(policy)]))
            if not holds:
                trace.note = "the policy's target is false"
                return trace
        r = rule.rule
        for clause, expr, stop_on in (("when", r.when, False), ("unless", r.unless, True)):
            if expr is None:
                continue
            before = len(tracer.root.children)
            try:
                value = evaluation.condition(expr, policy, clause)
            finally:
                node = tracer.take() if len(tracer.root.children) > before else _untraced(evaluation, expr, policy)
                trace.clauses.append((clause, node))  # type: ignore[arg-type]
            if value is stop_on:
                trace.note = f"{clause} is {'true' if value else 'false'}"
                return trace
    except EvalError as err:
        trace.status, trace.error = FAILED, err.message
        trace.note = ("it could not be evaluated, so it applies (fail closed)" if rule.effect == "forbid"
                      else "it could not be evaluated, so it does not apply")
        return trace
    trace.status = APPLIED
    trace.note = "every condition held"
    trace.message = evaluation.reason_message(rule, policy)
    return trace


def _untraced(evaluation: Evaluation, expr, policy: CheckedPolicy) -> TraceNode:
    """The trace node of a clause the tracer does not record (a literal such as ``when true``)."""
    node = TraceNode(to_text(expr), expr=expr)
    try:
        node.value = evaluation.eval(expr, policy)
    except EvalError as err:
        node.error = err.message
    return node
