"""The abstract syntax tree: frozen dataclasses built by to_ast.py from Lark's parse tree.

Every node carries a ``span`` that is left out of equality, so two trees compare equal when
they mean the same thing wherever they stand (Cedar ignores ``source_loc`` the same way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Union

from ..request import ROOT_KEYS, TOKEN_ROOT
from ..source import Span

#: The names an expression may start from: the request's roots, its verified token, then the
#: loaded data and the time.
ROOTS = (*ROOT_KEYS, TOKEN_ROOT, "data", "now")


def _span() -> Span:
    return field(default=None, compare=False, repr=False)  # type: ignore[return-value]

# NOTE: nodes are plain (unfrozen) slotted dataclasses because the parser builds hundreds of
# thousands of them for a large policy set and frozen dataclasses cost ~3× as much to build.
# INVARIANT: no stage mutates a node after to_ast.py built it.


# ---- expressions ---------------------------------------------------------------------------


@dataclass(slots=True)
class Literal:
    """A string, number, boolean or duration (a number of seconds) written in the policy."""

    value: object
    text: str = field(compare=False, default="")  # as written: `1h30m` stays `1h30m` in messages
    span: Span = _span()


@dataclass(slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(slots=True)
class Name:
    """A root (``identity``, ``now``, …) or a ``let`` name; the checker tells which."""

    name: str
    span: Span = _span()


@dataclass(slots=True)
class Attribute:
    obj: Expr
    name: str
    span: Span = _span()


@dataclass(slots=True)
class Index:
    obj: Expr
    key: Expr
    span: Span = _span()


@dataclass(slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    span: Span = _span()


@dataclass(slots=True)
class Not:
    operand: Expr
    span: Span = _span()


@dataclass(slots=True)
class And:
    """``a and b and …``: short-circuit, left to right."""

    operands: tuple[Expr, ...]
    span: Span = _span()


@dataclass(slots=True)
class Or:
    """``a or b or …``: short-circuit, left to right."""

    operands: tuple[Expr, ...]
    span: Span = _span()


@dataclass(slots=True)
class Compare:
    """A level-4 operator: ``==`` … ``>=``, ``in``, ``not in``, ``contains``, ``matches`` …"""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()


Expr = Union[Literal, ListExpr, Name, Attribute, Index, Call, Not, And, Or, Compare]


# ---- declarations --------------------------------------------------------------------------


@dataclass(slots=True)
class Annotation:
    key: str
    value: str
    span: Span = _span()


@dataclass(slots=True)
class Reason:
    """A reason template: literal text and ``{expr}`` parts, in order."""

    parts: tuple[Union[str, Expr], ...]
    span: Span = _span()


@dataclass(slots=True)
class Target:
    expr: Expr
    span: Span = _span()


@dataclass(slots=True)
class Let:
    name: str
    expr: Expr
    span: Span = _span()


@dataclass(slots=True)
class Rule:
    effect: str  # "permit" | "forbid"
    name: str
    annotations: tuple[Annotation, ...]
    when: Expr | None
    unless: Expr | None
    reason: Reason | None
    span: Span = _span()
    name_span: Span = _span()


@dataclass(slots=True)
class Limit:
    """``limit NAME COUNT per PERIOD by KEY, … [when …] [unless …] [reason "…"]`` (SPEC §9)."""

    name: str
    annotations: tuple[Annotation, ...]
    count: int
    period: float  # seconds
    period_text: str  # as written: `1h` stays `1h` in messages
    keys: tuple[Expr, ...]
    when: Expr | None
    unless: Expr | None
    reason: Reason | None
    span: Span = _span()
    name_span: Span = _span()
    count_span: Span = _span()
    period_span: Span = _span()


PolicyItem = Union[Target, Let, Rule, Limit]


@dataclass(slots=True)
class Policy:
    name: str
    annotations: tuple[Annotation, ...]
    items: tuple[PolicyItem, ...]  # in source order: let visibility depends on it
    span: Span = _span()
    name_span: Span = _span()

    @property
    def target(self) -> Target | None:
        return next((i for i in self.items if isinstance(i, Target)), None)

    @property
    def lets(self) -> tuple[Let, ...]:
        return tuple(i for i in self.items if isinstance(i, Let))

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(i for i in self.items if isinstance(i, Rule))

    @property
    def limits(self) -> tuple[Limit, ...]:
        return tuple(i for i in self.items if isinstance(i, Limit))


@dataclass(slots=True)
class Module:
    """One parsed ``.pdl`` file."""

    path: str
    policies: tuple[Policy, ...]


# ---- source text of an expression, for messages and traces ---------------------------------

_PRECEDENCE = {Or: 1, And: 2, Not: 3, Compare: 4}


def to_text(expr: Expr) -> str:
    """Render an expression back to policy syntax, with only the parentheses it needs.

    >>> to_text(Compare("==", Attribute(Name("resource"), "type"), Literal("payment")))
    'resource.type == "payment"'
    """
    return _text(expr, 0)


def _text(e: Expr, outer: int) -> str:
    own = _PRECEDENCE.get(type(e), 5)
    if isinstance(e, Literal):
        s = e.text or _literal_text(e.value)
    elif isinstance(e, ListExpr):
        s = "[" + ", ".join(_text(i, 0) for i in e.items) + "]"
    elif isinstance(e, Name):
        s = e.name
    elif isinstance(e, Attribute):
        s = f"{_text(e.obj, 5)}.{e.name}"
    elif isinstance(e, Index):
        s = f"{_text(e.obj, 5)}[{_text(e.key, 0)}]"
    elif isinstance(e, Call):
        s = f"{e.func}(" + ", ".join(_text(a, 0) for a in e.args) + ")"
    elif isinstance(e, Not):
        s = f"not {_text(e.operand, 3)}"
    elif isinstance(e, And):
        s = " and ".join(_text(o, 3) for o in e.operands)
    elif isinstance(e, Or):
        s = " or ".join(_text(o, 2) for o in e.operands)
    elif isinstance(e, Compare):
        s = f"{_text(e.left, 5)} {e.op} {_text(e.right, 5)}"
    else:  # pragma: no cover - every Expr kind is listed above
        raise TypeError(f"not an expression: {e!r}")
    return f"({s})" if own < outer or (own == outer == 4) else s


def _literal_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)
