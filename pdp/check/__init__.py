"""Static checking: parsed modules ⇒ a checked policy set, or every error at once.

Declaration checks (duplicate policy, rule, let and annotation names, one target per
policy, lets that shadow) live here; expression checks (names, calls, known types) in
``expressions.py``. Errors are collected across all files and sorted by position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from ..builtins import ANY, BOOL, BUILTINS, NUMBER, STRING
from ..errors import Diagnostic
from ..syntax import ast
from .expressions import ROOT_TYPES, UNKNOWN, ExpressionChecker
from .lint import lint_rules


@dataclass(frozen=True)
class CheckedRule:
    """A rule with its id (``policy.rule``) and the annotations it carries (its policy's, then its own)."""

    id: str
    rule: ast.Rule
    annotations: Mapping[str, str]
    position: int  # index in source order across the whole policy set

    @property
    def effect(self) -> str:
        return self.rule.effect


@dataclass(frozen=True)
class CheckedLimit:
    """A limit rule (SPEC §9) with its id (``policy.limit``) and annotations, as CheckedRule."""

    id: str
    rule: ast.Limit
    annotations: Mapping[str, str]
    position: int  # index among the limits, in source order across the whole policy set

    effect = "limit"

    @property
    def message(self) -> str:
        """The reason of a denial for want of a unit (limit reasons are plain text)."""
        if self.rule.reason is None:
            return f"limit of {self.rule.count} per {self.rule.period_text} reached"
        return "".join(self.rule.reason.parts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CheckedPolicy:
    policy: ast.Policy
    target: ast.Expr | None
    lets: Mapping[str, ast.Let]
    rules: tuple[CheckedRule, ...]
    limits: tuple[CheckedLimit, ...] = ()

    @property
    def name(self) -> str:
        return self.policy.name


@dataclass(frozen=True)
class CheckedPolicySet:
    """What the evaluators run: policies and rules in source order, and the reference data."""

    policies: tuple[CheckedPolicy, ...]
    data: Mapping[str, object] = field(default_factory=dict)
    #: Lint (pdp.check.lint): what loads but cannot be meant, as diagnostics of severity
    #: "warning", sorted like errors; ``pdp check`` prints them.
    warnings: tuple[Diagnostic, ...] = ()

    def rules(self, effect: str) -> list[tuple[CheckedPolicy, CheckedRule]]:
        """Rules of one effect, in source order."""
        return [(p, r) for p in self.policies for r in p.rules if r.effect == effect]

    def all_rules(self) -> list[tuple[CheckedPolicy, CheckedRule]]:
        return [(p, r) for p in self.policies for r in p.rules]

    def limits(self) -> list[tuple[CheckedPolicy, CheckedLimit]]:
        """Limit rules, in source order."""
        return [(p, limit) for p in self.policies for limit in p.limits]


def check(modules: list[ast.Module], data: Mapping[str, object]) -> tuple[CheckedPolicySet, list[Diagnostic]]:
    """Check parsed modules (in load order) against the loaded data. Returns the checked set
    and the diagnostics found."""
    data = dict(data)
    diagnostics: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    report = diagnostics.append
    seen_policies: dict[str, ast.Policy] = {}
    checked: list[CheckedPolicy] = []
    position = 0
    limit_position = 0
    for module in modules:
        for policy in module.policies:
            first = seen_policies.get(policy.name)
            if first is not None:
                report(policy.name_span.diagnostic(
                    f"duplicate policy {policy.name!r}; first defined at {_where(first.name_span)}",
                    "pdl_duplicate"))
            else:
                seen_policies[policy.name] = policy
            _keyword_name("policy", policy.name, policy.name_span, report)
            checked_policy = _check_policy(policy, report, position, limit_position, data, warnings.append)
            lint_rules(checked_policy, warnings.append)
            position += len(checked_policy.rules)
            limit_position += len(checked_policy.limits)
            checked.append(checked_policy)
    rank = {m.path: i for i, m in enumerate(modules)}
    order = lambda d: (rank.get(d.file, -1), d.line, d.column)  # noqa: E731
    diagnostics.sort(key=order)
    warnings.sort(key=order)
    return CheckedPolicySet(tuple(checked), MappingProxyType(data), tuple(warnings)), diagnostics


#: Words of the language: they may follow `.` as attribute names, but may not name a policy,
#: a rule or a let, where they would read as the keyword (`permit when when …`).
KEYWORDS = frozenset({"policy", "target", "let", "permit", "forbid", "when", "unless", "reason", "and", "or",
                      "not", "in", "contains", "contains_any", "contains_all", "matches", "startswith",
                      "endswith", "true", "false"})


def _keyword_name(kind: str, name: str, span, report) -> None:
    if name in KEYWORDS:
        report(span.diagnostic(f"{name!r} is a keyword and cannot name a {kind}", "pdl_keyword"))


def _where(span) -> str:
    return f"{span.file.name}:{span.line}:{span.column}"


#: Annotation keys pdp gives reasons itself; a policy writing one could pass for pdp (a
#: ``limit_key`` makes a reason a limited denial for the decision log, metrics and suites).
RESERVED_ANNOTATIONS = {"limit_key": "a velocity limit's denial carries its key under that name"}


def _annotations(items: tuple[ast.Annotation, ...], report) -> dict[str, str]:
    result: dict[str, str] = {}
    for a in items:
        if a.key in result:
            report(a.span.diagnostic(f"duplicate annotation @{a.key}", "pdl_duplicate"))
        elif a.key in RESERVED_ANNOTATIONS:
            report(a.span.diagnostic(f"@{a.key} is reserved: {RESERVED_ANNOTATIONS[a.key]}", "pdl_reserved"))
        result[a.key] = a.value
    return result


def _check_policy(policy: ast.Policy, report, position: int, limit_position: int, data: dict[str, object],
                  warn) -> CheckedPolicy:
    policy_annotations = _annotations(policy.annotations, report)
    all_lets = {item.name for item in policy.items if isinstance(item, ast.Let)}
    let_types: dict[str, str] = {}
    lets: dict[str, ast.Let] = {}
    rules: list[CheckedRule] = []
    limits: list[CheckedLimit] = []
    rule_names: dict[str, ast.Rule | ast.Limit] = {}
    target: ast.Target | None = None

    checker = ExpressionChecker(report, let_types.get, lambda name: name in all_lets, data, warn)
    for item in policy.items:
        if isinstance(item, ast.Target):
            if target is not None:
                report(item.span.diagnostic(
                    f"policy {policy.name!r} has a second target; combine them with 'and'", "pdl_duplicate"))
            else:
                target = item
            checker.condition(item.expr, "target")
        elif isinstance(item, ast.Let):
            kind = checker.check(item.expr)
            _keyword_name("let", item.name, item.span, report)
            if item.name in ROOT_TYPES or item.name in BUILTINS:
                what = "root" if item.name in ROOT_TYPES else "function"
                report(item.span.diagnostic(f"let {item.name!r} shadows the {what} {item.name!r}", "pdl_shadow"))
            elif item.name in lets:
                report(item.span.diagnostic(f"duplicate let {item.name!r}; first defined at "
                                            f"{_where(lets[item.name].span)}", "pdl_duplicate"))
            else:
                lets[item.name] = item
                let_types[item.name] = kind
        else:
            rule = item
            kind = "limit" if isinstance(rule, ast.Limit) else "rule"
            _keyword_name(kind, rule.name, rule.name_span, report)
            first = rule_names.get(rule.name)
            if first is not None:
                report(rule.name_span.diagnostic(
                    f"duplicate {kind} {rule.name!r} in policy {policy.name!r}; first defined at "
                    f"{_where(first.name_span)}", "pdl_duplicate"))
            else:
                rule_names[rule.name] = rule
            if rule.when is not None:
                checker.condition(rule.when, "when")
            if rule.unless is not None:
                checker.condition(rule.unless, "unless")
            if isinstance(rule, ast.Limit):
                for key in rule.keys:
                    key_type = checker.check(key)
                    if key_type not in (STRING, NUMBER, BOOL, ANY):
                        checker.error(key, f"a limit key must be a string, number or boolean, got {key_type}",
                                      "pdl_type")
            if rule.reason is not None:
                for part in rule.reason.parts:
                    if isinstance(rule, ast.Limit) and not isinstance(part, str):
                        checker.error(part, "a limit's reason is plain text: it cannot interpolate {...} "
                                            "(write {{ for a brace)", "pdl_limit")
                    elif not isinstance(part, str):
                        checker.check(part)
            annotations = {**policy_annotations, **_annotations(rule.annotations, report)}
            if isinstance(rule, ast.Limit):
                limits.append(CheckedLimit(f"{policy.name}.{rule.name}", rule, MappingProxyType(annotations),
                                           limit_position + len(limits)))
                continue
            rules.append(CheckedRule(f"{policy.name}.{rule.name}", rule, MappingProxyType(annotations),
                                     position + len(rules)))
    return CheckedPolicy(policy, target.expr if target else None, MappingProxyType(lets), tuple(rules), tuple(limits))
