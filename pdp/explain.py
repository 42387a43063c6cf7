"""Explanations: checked policy set + request ⇒ the decision and, for every rule, why it did or
did not apply, with the value (or error) of every sub-expression that was evaluated.

Runs the reference evaluator with a tracer, in the same order as ``decide``, so the decision
it reports is the one ``decide`` gives.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from .check import CheckedPolicy, CheckedPolicySet, CheckedRule
from .decision import FAILED_CLOSED, Decision, Reason, RuleError, combine
from .errors import EvalError
from .reference import Evaluation, Tracer, TraceNode, _UNSET
from .request import Request
from .syntax.ast import to_text

APPLIED, NOT_APPLIED, FAILED, NOT_EVALUATED = "applied", "not applied", "error", "not evaluated"


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
               "clauses": [{"clause": name, **node.to_dict()} for name, node in self.clauses]}
        if self.message is not None:
            out["message"] = self.message
        if self.error is not None:
            out["error"] = self.error
        return out


# PUBLIC: returned by Engine.explain.
@dataclass
class Explanation:
    decision: Decision
    rules: list[RuleTrace]

    def to_dict(self) -> dict:
        return {"decision": self.decision.to_dict(), "rules": [r.to_dict() for r in self.rules]}

    def render(self) -> str:
        """A readable trace, for ``pdp eval --explain``."""
        d = self.decision
        lines = [f"{d.decision}  (revision {d.revision})"]
        for reason in d.reasons:
            message = f": {reason.message}" if reason.message else ""
            lines.append(f"  because {reason.effect} {reason.rule}{message}")
        for error in d.errors:
            lines.append(f"  error in {error.rule}: {error.message}")
        for trace in self.rules:
            lines.append("")
            lines.append(f"{trace.effect} {trace.rule}: {trace.status.upper()} — {trace.note}")
            for clause, node in trace.clauses:
                _render_node(node, lines, 1, f"{clause} ")
        return "\n".join(lines)


def _render_node(node: TraceNode, lines: list[str], depth: int, prefix: str = "") -> None:
    if node.error is not None:
        outcome = f"error: {node.error}"
    elif node.value is _UNSET:
        outcome = "not evaluated"
    else:
        outcome = json.dumps(_shown(node.value), ensure_ascii=False)
    lines.append(f"{'  ' * depth}{prefix}{node.text}  ⇒  {outcome}")
    for child in node.children:
        if child.text != node.text:
            _render_node(child, lines, depth + 1)


def _shown(value: object) -> object:
    if isinstance(value, list):  # a list literal may hold cidr(...) sets
        return [_shown(item) for item in value]
    strings = getattr(value, "strings", None)
    return {"cidr": strings()} if callable(strings) else value


def explain(policy_set: CheckedPolicySet, request: Request, revision: str) -> Explanation:
    started = time.perf_counter_ns()
    tracer = Tracer()
    evaluation = Evaluation(policy_set, request, tracer)
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
    return Explanation(decision, traces)


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
    node = TraceNode(to_text(expr))
    try:
        node.value = evaluation.eval(expr, policy)
    except EvalError as err:
        node.error = err.message
    return node
