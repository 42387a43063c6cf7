"""Lowering: checked AST ⇒ plain-data expression nodes (see ir.py), interned and folded.

- Attribute chains on request roots become one PATH node (resolved by key, once per request
  when shared).
- ``data`` is constant: paths into it are resolved now (to a constant, or to the error the
  reference evaluator would raise).
- Literal lists, ``cidr("…")`` of literals, ``defined`` of a constant are folded.
- ``x == "s"``, ``x in ["a", "b"]`` and ``x matches "glob"`` get their own opcodes.
- Nodes are interned (hash-consed), so equal sub-expressions — ``let``s included — are one
  node; ``cse.py`` later gives the shared ones a cache slot.
"""

from __future__ import annotations

import json

from ..access import index_value, missing, not_a_map
from ..builtins import cidr_set, index_by
from ..check import CheckedPolicy
from ..errors import EvalError
from ..glob import glob_error
from ..syntax import ast
from .ir import (AND, ATTR, CALL, CIDR, COMPARE, CONST, DEFINED, EQ_STR, ERROR, IN_STRS, INDEX, LIST,
                 MATCH_GLOB, NOT, NOW, OR, PATH, ROOTS)


def _const_key(value: object) -> str:
    # JSON keeps 1, 1.0 and true apart, as pdp's values are.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class ConstKeys:
    """The interning key of a constant (``_const_key``), made once per map or list: every path
    into ``data`` meets the same maps again (``data`` itself at each use), and writing them
    out each time made loading grow with uses × data size. By identity, so the memo keeps each
    value alive (its id stays its own); constants are never mutated."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[object, str]] = {}

    def __call__(self, value: object) -> str:
        if not isinstance(value, (dict, list)):
            return _const_key(value)
        found = self._memo.get(id(value))
        if found is None:
            found = self._memo[id(value)] = (value, _const_key(value))
        return found[1]


class Lowerer:
    def __init__(self, data: dict):
        self.data = data
        self._interned: dict[tuple, tuple] = {}
        self._lets: dict[tuple[str, str], tuple] = {}
        self._const_keys = ConstKeys()

    def _make(self, key: tuple, node: tuple) -> tuple:
        return self._interned.setdefault(key, node)

    def const(self, value: object) -> tuple:
        return self._make((CONST, self._const_keys(value)), (CONST, value))

    def error(self, message: str) -> tuple:
        return self._make((ERROR, message), (ERROR, message))

    def _node(self, op: int, *fields) -> tuple:
        key = (op,) + tuple(_field_key(f) for f in fields)
        return self._make(key, (op,) + fields)

    # ---- expressions ----

    def expr(self, e: ast.Expr, policy: CheckedPolicy) -> tuple:
        if isinstance(e, ast.Literal):
            return self.const(e.value)
        if isinstance(e, ast.ListExpr):
            items = tuple(self.expr(i, policy) for i in e.items)
            failed = _first_error(items)
            if failed is not None:
                return failed
            if all(i[0] == CONST for i in items):
                return self.const([i[1] for i in items])
            return self._node(LIST, items)
        if isinstance(e, ast.Name):
            if e.name in ROOTS:
                return self._node(PATH, e.name, (), (e.name,))
            if e.name == "data":
                return self.const(self.data)
            if e.name == "now":
                return self._node(NOW)
            return self.let(policy, e.name)
        if isinstance(e, ast.Attribute):
            return self._attribute(e, policy)
        if isinstance(e, ast.Index):
            return self._index(e, policy)
        if isinstance(e, ast.Call):
            return self._call(e, policy)
        if isinstance(e, ast.Not):
            return self._node(NOT, self.expr(e.operand, policy))
        if isinstance(e, (ast.And, ast.Or)):
            op = AND if isinstance(e, ast.And) else OR
            return self._node(op, tuple(self.expr(o, policy) for o in e.operands))
        if isinstance(e, ast.Compare):
            return self._compare(e, policy)
        raise TypeError(f"not an expression: {e!r}")  # pragma: no cover

    def let(self, policy: CheckedPolicy, name: str) -> tuple:
        key = (policy.name, name)
        if key not in self._lets:
            self._lets[key] = self.expr(policy.lets[name].expr, policy)
        return self._lets[key]

    def _attribute(self, e: ast.Attribute, policy: CheckedPolicy) -> tuple:
        obj = self.expr(e.obj, policy)
        if obj[0] == ERROR:
            return obj
        if obj[0] == PATH:
            _, root, keys, texts = obj
            return self._node(PATH, root, keys + (e.name,), texts + (ast.to_text(e),))
        if obj[0] == CONST:
            value = obj[1]
            if not isinstance(value, dict):
                return self.error(not_a_map(ast.to_text(e.obj), value))
            if e.name not in value:
                return self.error(missing(ast.to_text(e)))
            return self.const(value[e.name])
        return self._node(ATTR, obj, e.name, ast.to_text(e.obj), ast.to_text(e))

    def _index(self, e: ast.Index, policy: CheckedPolicy) -> tuple:
        obj = self.expr(e.obj, policy)
        if obj[0] == ERROR:
            return obj
        key = self.expr(e.key, policy)
        if obj[0] == CONST and key[0] == ERROR:
            return key
        if obj[0] == CONST and key[0] == CONST:
            try:
                return self.const(index_value(obj[1], key[1], ast.to_text(e.obj)))
            except EvalError as err:
                return self.error(err.message)
        return self._node(INDEX, obj, key, ast.to_text(e.obj))

    def _call(self, e: ast.Call, policy: CheckedPolicy) -> tuple:
        args = tuple(self.expr(a, policy) for a in e.args)
        if e.func == "defined":
            if args[0][0] in (CONST, ERROR):
                return self.const(args[0][0] == CONST)
            return self._node(DEFINED, args[0])
        failed = _first_error(args)
        if failed is not None:
            return failed
        if e.func == "index_by" and all(a[0] == CONST for a in args):
            try:  # an index of the loaded data: built once, here
                return self.const(index_by(args[0][1], args[1][1]))
            except EvalError as err:
                return self.error(err.message)
        if e.func == "cidr" and all(a[0] == CONST for a in args):
            texts: list[str] = []
            for a in args:
                values = a[1] if isinstance(a[1], list) else [a[1]]
                if not all(isinstance(v, str) for v in values):
                    break
                texts.extend(values)
            else:
                try:
                    cidr_set(tuple(texts))
                except EvalError as err:
                    return self.error(err.message)
                return self._node(CIDR, tuple(texts))
        return self._node(CALL, e.func, args)

    def _compare(self, e: ast.Compare, policy: CheckedPolicy) -> tuple:
        left, right = self.expr(e.left, policy), self.expr(e.right, policy)
        special = specialized_compare(e.op, left, right)
        if special is not None:
            return self._node(*special)
        return self._node(COMPARE, e.op, left, right)


def _first_error(items: tuple) -> tuple | None:
    """The error that operands evaluated in order (a list's items, a call's arguments) are
    known to meet at load: an ERROR with only constants before it. An operand before it that
    is read at run time may fail first (``[cidr(identity.env), [][0]]`` fails on a bad
    ``identity.env`` before the index), so then the node is built and the error met in order."""
    for item in items:
        if item[0] == ERROR:
            return item
        if item[0] != CONST:
            return None
    return None


def specialized_compare(op: str, left: tuple, right: tuple) -> tuple | None:
    """The specialised node (its fields, uninterned) of ``left op right`` with a constant
    operand: ``x == "s"`` (EQ_STR), ``x in ["a", "b"]`` (IN_STRS), ``x matches "glob"``
    (MATCH_GLOB); None when no specialisation applies. Also for operands that become constant
    after lowering (tabulate.py folds data rows in)."""
    if op in ("==", "!="):
        negate = op == "!="
        if right[0] == CONST and isinstance(right[1], str):
            return (EQ_STR, left, right[1], negate)
        if left[0] == CONST and isinstance(left[1], str) and right[0] != ERROR:
            return (EQ_STR, right, left[1], negate)
    if op in ("in", "not in") and right[0] == CONST and isinstance(right[1], list) \
            and all(isinstance(v, str) for v in right[1]):
        return (IN_STRS, left, tuple(right[1]), op == "not in")
    if op == "matches" and right[0] == CONST and isinstance(right[1], str) and glob_error(right[1]) is None:
        return (MATCH_GLOB, left, right[1])
    return None


def _field_key(field: object) -> object:
    if isinstance(field, tuple):
        if field and isinstance(field[0], tuple):  # a tuple of nodes
            return tuple(id(f) for f in field)
        if field and isinstance(field[0], int) and not isinstance(field[0], bool):
            return id(field)  # a node (nodes are interned, so identity is structure)
        return field
    return field
