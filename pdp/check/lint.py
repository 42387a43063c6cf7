"""Lint: what loads but cannot be what the author meant. ``pdp check`` prints these as warnings
(with file:line:column, the source line and a caret); they never stop a policy set loading.

- a glob with ``[`` or ``]``: globs have no character classes (``"*T1[0-6]:*"`` never matches
  a time; ``hour(t, zone)`` does what it meant);
- a comparison that can never hold (or always holds): operands of different known types
  (``hour(now, "UTC") == "9"``, ``data.limits.max == "3"``), two literals, a value a time
  function never gives (``weekday(now, "UTC") == "Saturday"``, ``hour(...) == 24``);
- a rule that can never apply: its target and ``when`` require one attribute to equal two
  different strings (``target resource.type == "payment"`` … ``when resource.type ==
  "invoice"``), or contain ``false`` (``unless true``). A forbid like that still applies when
  the attribute is missing, by failing closed, so it is reported too.
"""

from __future__ import annotations

import re
from typing import Callable

from ..builtins import ANY, CIDR
from ..errors import Diagnostic
from ..request import ROOT_KEYS
from ..syntax import ast
from ..times import WEEKDAYS
from ..values import equal

#: What each time function can give, for comparisons with literals.
_HOURS, _MINUTES = range(24), range(60)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RESULT = {"hour": "number", "minute": "number", "weekday": "string", "date": "string"}


# ---- comparisons -----------------------------------------------------------------------------


def lint_comparison(checker, e: ast.Compare, left: str, right: str) -> None:
    """Warn about ``e`` (through ``checker.warning``); ``left``/``right`` are the operands'
    static types (a data path's value type included), ``any`` where unknown."""
    op = e.op
    if op == "matches" and isinstance(e.right, ast.Literal) and isinstance(e.right.value, str):
        _glob(checker, e.right)
    if op in ("==", "!="):
        _equality(checker, e, left, right)
    elif op in ("in", "not in") and isinstance(e.right, ast.ListExpr):
        _membership(checker, e, left)
    _calendar(checker, e)


def _glob(checker, pattern: ast.Literal) -> None:
    text = pattern.value
    bracket = next((c for c in text if c in "[]"), None)
    if bracket is None:
        return
    checker.warning(pattern, f"the glob {_shown(text)} has {bracket!r}, which matches only itself: globs have "
                             "no character classes (for the hour or day of a time use hour(t, zone), "
                             "minute, weekday or date)", "lint_glob")


def _equality(checker, e: ast.Compare, left: str, right: str) -> None:
    never = e.op == "=="
    if _constant(e.left) and _constant(e.right):
        holds = equal(_value(e.left), _value(e.right)) == never
        checker.warning(e, f"{ast.to_text(e)} compares two constants: it {'always' if holds else 'never'} holds",
                        "lint_constant")
        return
    if ANY in (left, right) or left == right or CIDR in (left, right):
        return
    checker.warning(e, f"{ast.to_text(e)} {'can never hold' if never else 'always holds'}: it compares a "
                       f"{left} with a {right}, and values of different types are never equal", "lint_never")


def _membership(checker, e: ast.Compare, left: str) -> None:
    items = e.right.items
    if left == ANY or not items or not all(_constant(i) for i in items):
        return
    types = {_type(_value(i)) for i in items}
    if left not in types and CIDR not in types:
        holds = "can never hold" if e.op == "in" else "always holds"
        checker.warning(e, f"{ast.to_text(e)} {holds}: a {left} is never equal to the "
                           f"{' or '.join(sorted(types))} items of the list", "lint_never")


def _calendar(checker, e: ast.Compare) -> None:
    """A time function compared with a literal it can never give."""
    for call, other in ((e.left, e.right), (e.right, e.left)):
        if not (isinstance(call, ast.Call) and call.func in ("hour", "minute", "weekday", "date")):
            continue
        literals = other.items if isinstance(other, ast.ListExpr) and e.op in ("in", "not in") else (other,)
        for literal in literals:
            # A literal of another type is reported as such (_equality, _membership).
            if isinstance(literal, ast.Literal) and _type(literal.value) == _RESULT[call.func] \
                    and not _possible(call.func, literal.value):
                checker.warning(literal, f"{call.func}(...) never gives {_shown(literal.value)}: "
                                         f"{_possible_text(call.func)}", "lint_never")


def _possible(func: str, value: object) -> bool:
    if func == "weekday":
        return value in WEEKDAYS
    if func == "date":
        return isinstance(value, str) and _DATE.fullmatch(value) is not None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value in (_HOURS if func == "hour" else _MINUTES)


def _possible_text(func: str) -> str:
    return {"weekday": "it gives " + ", ".join(f'"{d}"' for d in WEEKDAYS),
            "date": 'it gives a date as "YYYY-MM-DD"',
            "hour": "it gives a whole number from 0 to 23",
            "minute": "it gives a whole number from 0 to 59"}[func]


def _constant(e: ast.Expr) -> bool:
    return isinstance(e, ast.Literal) or (isinstance(e, ast.ListExpr) and all(_constant(i) for i in e.items))


def _value(e: ast.Expr) -> object:
    return e.value if isinstance(e, ast.Literal) else [_value(i) for i in e.items]  # type: ignore[union-attr]


def _type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    return "string"


def _shown(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


# ---- rules that can never apply ------------------------------------------------------------


def lint_rules(policy, warn: Callable[[Diagnostic], None]) -> None:
    """Warn about each rule of ``policy`` (a CheckedPolicy) that can never apply: its target
    and ``when`` conjuncts require one attribute to equal different strings, or one of them
    is ``false``; or its ``unless`` is ``true``."""
    import dataclasses

    def warning(node, message: str) -> None:
        warn(dataclasses.replace(node.span.diagnostic(message, "lint_never_applies"), severity="warning"))

    target = _conjuncts(policy.target, policy.lets) if policy.target is not None else []
    for rule in policy.rules:
        r = rule.rule
        conjuncts = target + (_conjuncts(r.when, policy.lets) if r.when is not None else [])
        false = next((c for c in conjuncts if isinstance(c, ast.Literal) and c.value is False), None)
        if false is not None:
            warning(false, f"rule {rule.id} can never apply: this condition is false")
            continue
        if r.unless is not None and isinstance(r.unless, ast.Literal) and r.unless.value is True:
            warning(r.unless, f"rule {rule.id} can never apply: its unless is true")
            continue
        conflict = _conflict(conjuncts)
        if conflict is not None:
            first, second, path = conflict
            where = f"{first.span.line}:{first.span.column}"
            warning(second, f"rule {rule.id} can never apply: {path} must be {_allowed(first)} (at {where}) and "
                            f"{_allowed(second)} here")


def _conjuncts(e: ast.Expr, lets) -> list[ast.Expr]:
    """The expressions that must all be true for ``e`` to be: ``and`` operands, through lets."""
    out: list[ast.Expr] = []
    pending = [e]
    seen: set[str] = set()
    while pending:
        item = pending.pop(0)
        if isinstance(item, ast.And):
            pending[:0] = list(item.operands)
        elif isinstance(item, ast.Name) and item.name in lets and item.name not in seen:
            seen.add(item.name)  # a let is a name for its expression
            pending.insert(0, lets[item.name].expr)
        else:
            out.append(item)
    return out


def _conflict(conjuncts: list[ast.Expr]):
    """(first, second, path) of two conjuncts that no value of ``path`` satisfies, or None."""
    required: dict[str, tuple[frozenset, ast.Expr]] = {}
    for c in conjuncts:
        found = _requirement(c)
        if found is None:
            continue
        path, values = found
        before = required.get(path)
        if before is None:
            required[path] = (values, c)
            continue
        both = before[0] & values
        if not both:
            return before[1], c, path
        required[path] = (both, before[1])
    return None


def _requirement(c: ast.Expr) -> tuple[str, frozenset] | None:
    """``path == "s"`` or ``path in ["a", "b"]`` (either side) ⇒ (path text, allowed strings)."""
    if not isinstance(c, ast.Compare):
        return None
    if c.op == "==":
        for path, literal in ((c.left, c.right), (c.right, c.left)):
            if _is_path(path) and isinstance(literal, ast.Literal) and isinstance(literal.value, str):
                return ast.to_text(path), frozenset((literal.value,))
    if c.op == "in" and _is_path(c.left) and isinstance(c.right, ast.ListExpr) and c.right.items \
            and all(isinstance(i, ast.Literal) and isinstance(i.value, str) for i in c.right.items):
        return ast.to_text(c.left), frozenset(i.value for i in c.right.items)  # type: ignore[union-attr]
    return None


def _is_path(e: ast.Expr) -> bool:
    """A request attribute path with literal keys: ``resource.type``, ``context.headers["x"]``."""
    while isinstance(e, (ast.Attribute, ast.Index)):
        if isinstance(e, ast.Index) and not isinstance(e.key, ast.Literal):
            return False
        e = e.obj
    return isinstance(e, ast.Name) and e.name in ROOT_KEYS


def _allowed(c: ast.Expr) -> str:
    _, values = _requirement(c)  # type: ignore[misc]
    shown = sorted(values)
    return _shown(shown[0]) if len(shown) == 1 else "one of " + ", ".join(_shown(v) for v in shown)
