"""Static checks of expressions: names, calls and the types that are known at load time.

One walk over an expression resolves each name (a root or a visible ``let``), checks calls
against the built-in registry, and infers a static type where literals, operators, built-ins
and ``let``s fix it, reporting operands whose known type can never work (``"a" < 3``). It
also follows ``data`` paths whose keys are literals in the loaded data (SPEC §1.1): an
unknown data name is an error everywhere; a path that does not resolve, outside ``defined``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable, Mapping

from ..access import index_value
from ..builtins import ANY, BOOL, BUILTINS, CIDR, LIST, MAP, NUMBER, STRING, ZONED, index_by
from ..errors import Diagnostic, EvalError
from ..glob import glob_error
from ..syntax import ast
from ..times import zone_error
from ..values import parse_network, type_name
from .lint import lint_comparison

ROOT_TYPES = {"identity": MAP, "action": MAP, "resource": MAP, "context": MAP, "token": MAP, "data": MAP,
              "now": NUMBER}
ORDERING = ("<", "<=", ">", ">=")
#: A data path's value when it is not known at load time (a key that is not a literal), and
#: the value of a data file that failed to load (its own error says why; no path into it is
#: checked).
UNKNOWN = object()
#: At most this many keys are listed when a data path names none of them.
_KEYS_SHOWN = 8
STRING_OPS = ("matches", "startswith", "endswith")


def _value_type(value: object) -> str:
    if isinstance(value, dict):
        return MAP
    if isinstance(value, list):
        return LIST
    return _literal_type(value)


def _literal_type(value: object) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    return STRING


class ExpressionChecker:
    """Checks expressions in one policy; ``visible(name)`` gives a let's type or None."""

    def __init__(self, report: Callable[[Diagnostic], None], lets_before: Callable[[str], str | None],
                 let_later: Callable[[str], bool], data: dict[str, object],
                 warn: Callable[[Diagnostic], None] | None = None):
        self.report = report
        self.warn = warn  # lint (pdp check): what loads but cannot be meant
        self.lets_before = lets_before
        self.let_later = let_later
        self.data = data
        self._inside_defined = 0
        # Literal data paths met so far ⇒ their value in the loaded data: each step of a
        # path (data.a, data.a.b, ...) looks up one key in its object's value.
        self._data_values: dict[int, object] = {}

    def error(self, node, message: str, code: str) -> None:
        self.report(node.span.diagnostic(message, code))

    def warning(self, node, message: str, code: str) -> None:
        if self.warn is not None:
            self.warn(dataclasses.replace(node.span.diagnostic(message, code), severity="warning"))

    def condition(self, expr: ast.Expr, clause: str) -> None:
        """Check a target/when/unless expression, which must be a boolean."""
        kind = self.check(expr)
        if kind not in (BOOL, ANY):
            self.error(expr, f"{clause} expects a boolean, got {kind}", "pdl_type")

    def check(self, e: ast.Expr) -> str:
        """Check ``e`` and return its static type (``any`` when only known per request)."""
        if isinstance(e, ast.Literal):
            return _literal_type(e.value)
        if isinstance(e, ast.ListExpr):
            for item in e.items:
                self.check(item)
            return LIST
        if isinstance(e, ast.Name):
            return self._name(e)
        if isinstance(e, ast.Attribute):
            self._container(e.obj, (MAP,), f".{e.name}")
            self._data_step(e, e.name)
            return ANY
        if isinstance(e, ast.Index):
            self._container(e.obj, (MAP, LIST), "[...]")
            key = self.check(e.key)
            if key not in (STRING, NUMBER, ANY):
                self.error(e.key, f"an index must be a string (or a number for a list), got {key}", "pdl_type")
            elif isinstance(e.key, ast.Literal):
                self._data_step(e, e.key.value)
            return ANY
        if isinstance(e, ast.Call):
            return self._call(e)
        if isinstance(e, ast.Not):
            self._boolean(e.operand, "not")
            return BOOL
        if isinstance(e, (ast.And, ast.Or)):
            op = "and" if isinstance(e, ast.And) else "or"
            for operand in e.operands:
                self._boolean(operand, op)
            return BOOL
        if isinstance(e, ast.Compare):
            self._compare(e)
            return BOOL
        raise TypeError(f"not an expression: {e!r}")  # pragma: no cover

    # ---- pieces ----

    def _name(self, e: ast.Name) -> str:
        if e.name in ROOT_TYPES:
            return ROOT_TYPES[e.name]
        kind = self.lets_before(e.name)
        if kind is not None:
            return kind
        if self.let_later(e.name):
            self.error(e, f"let {e.name!r} is used before its definition", "pdl_unknown_name")
        elif e.name in BUILTINS:
            self.error(e, f"{e.name!r} is a function; call it as {e.name}(...)", "pdl_unknown_name")
        else:
            self.error(e, f"unknown name {e.name!r}; expected identity, action, resource, context, "
                          f"token, data, now or a let name", "pdl_unknown_name")
        return ANY

    def _container(self, obj: ast.Expr, allowed: tuple[str, ...], access: str) -> None:
        kind = self.check(obj)
        if kind not in allowed and kind != ANY:
            self.error(obj, f"{ast.to_text(obj)} is a {kind}; {access} needs a map"
                       + (" or a list" if LIST in allowed else ""), "pdl_type")

    def _data_step(self, e: ast.Attribute | ast.Index, key: object) -> None:
        """One literal step of a ``data`` path: look ``key`` up in the value its object has in
        the loaded data, and report a step that cannot work (SPEC §1.1)."""
        obj = e.obj
        if isinstance(obj, ast.Name) and obj.name == "data":
            if isinstance(key, str) and key not in self.data:
                # Everywhere, defined(...) included: no request can make it exist.
                self._error_at_key(e, _unknown_data_name(key, self.data), "pdl_unknown_data")
                return
            parent: object = self.data
        else:
            parent = self._data_values.get(id(obj), UNKNOWN)
            if parent is UNKNOWN:
                return
        if isinstance(e, ast.Attribute):  # as the evaluators read x.name and x[key] (pdp/access.py)
            resolves = isinstance(parent, dict) and key in parent
            value = parent[key] if resolves else None  # type: ignore[index]
        else:
            try:
                value, resolves = index_value(parent, key, "data"), True
            except EvalError:
                value, resolves = None, False
        if not resolves:
            if not self._inside_defined:  # defined(...) asks exactly whether it resolves
                self._error_at_key(e, f"{ast.to_text(e)} is not in the loaded data: "
                                      f"{_why_not(obj, parent, key, isinstance(e, ast.Index))}", "pdl_data_path")
            return
        self._data_values[id(e)] = value

    def _error_at_key(self, e: ast.Attribute | ast.Index, message: str, code: str) -> None:
        """Report at the key of ``e``: the name after the dot, or the index expression."""
        if isinstance(e, ast.Index):
            self.error(e.key, message, code)
            return
        span = e.span
        self.report(span.file.diagnostic(span.end_line, span.end_column - len(e.name), message, code))

    def _known(self, e: ast.Expr, kind: str) -> str:
        """``kind``, or for a data path that resolved at load, the type of its value."""
        if kind != ANY:
            return kind
        value = self._data_values.get(id(e), UNKNOWN)
        return ANY if value is UNKNOWN else _value_type(value)

    def _boolean(self, operand: ast.Expr, op: str) -> None:
        kind = self.check(operand)
        if kind not in (BOOL, ANY):
            wanted = "a boolean" if op == "not" else "booleans"  # the evaluators' wording
            self.error(operand, f"{op} expects {wanted}, got {kind}", "pdl_type")

    def _call(self, e: ast.Call) -> str:
        builtin = BUILTINS.get(e.func)
        inside_defined = e.func == "defined"
        self._inside_defined += inside_defined
        arg_types = [self.check(a) for a in e.args]
        self._inside_defined -= inside_defined
        if builtin is None:
            known = ", ".join(sorted(BUILTINS))
            self.error(e, f"unknown function {e.func!r}; the functions are {known}", "pdl_unknown_function")
            return ANY
        n = len(e.args)
        if n < builtin.min_args or (builtin.max_args is not None and n > builtin.max_args):
            self.error(e, f"{e.func} takes {builtin.arity_text()}, got {n}", "pdl_arity")
            return builtin.result
        if builtin.name == "defined":
            return builtin.result
        for position, (arg, kind) in enumerate(zip(e.args, arg_types)):
            wanted = builtin.types_of(position)
            if kind != ANY and kind not in wanted:
                what = "a time zone name (a string) as its second argument" if builtin.name in ZONED and position \
                    else f"a {' or '.join(wanted)}"
                self.error(arg, f"{e.func} expects {what}, got {kind}", "pdl_type")
        if builtin.name == "cidr":
            self._cidr_literals(e)
        if builtin.name in ZONED:
            self._zone_literal(e.args[1])
        if builtin.name == "index_by":
            self._index_of_data(e)
        return builtin.result

    def _index_of_data(self, e: ast.Call) -> None:
        """``index_by`` of loaded data by a literal field is built at load: its errors (two
        entries with one value, data that is not a map or list) are load errors here."""
        collection = self._data_values.get(id(e.args[0]), UNKNOWN)
        field = e.args[1]
        if collection is UNKNOWN or not (isinstance(field, ast.Literal) and isinstance(field.value, str)):
            return
        try:
            index_by(collection, field.value)
        except EvalError as err:
            self.error(e, f"{ast.to_text(e.args[0])}: {err.message}", "pdl_index")

    def _zone_literal(self, zone: ast.Expr) -> None:
        if isinstance(zone, ast.Literal) and isinstance(zone.value, str):
            problem = zone_error(zone.value)
            if problem:
                self.error(zone, problem, "pdl_zone")

    def _cidr_literals(self, e: ast.Call) -> None:
        for arg in e.args:
            items = arg.items if isinstance(arg, ast.ListExpr) else (arg,)
            for item in items:
                if isinstance(item, ast.Literal) and isinstance(item.value, str):
                    try:
                        parse_network(item.value)
                    except ValueError as exc:
                        self.error(item, str(exc), "pdl_cidr")
                elif isinstance(item, ast.Literal) and item is not arg:  # a bare argument: reported above
                    self.error(item, f"cidr expects strings, got {_literal_type(item.value)}", "pdl_type")

    def _compare(self, e: ast.Compare) -> None:
        left, right = self.check(e.left), self.check(e.right)
        op = e.op
        known = left != ANY and right != ANY
        if self.warn is not None:
            lint_comparison(self, e, self._known(e.left, left), self._known(e.right, right))
        if op in ("==", "!="):
            return
        if op in ORDERING:
            for side, kind in ((e.left, left), (e.right, right)):
                if kind not in (NUMBER, STRING, ANY):
                    self.error(side, f"{op} compares numbers or strings, got {kind}", "pdl_type")
                    return
            if known and left != right:
                self.error(e, f"{op} compares two numbers or two strings, got {left} and {right}", "pdl_type")
        elif op in ("in", "not in"):
            if right not in (LIST, CIDR, ANY):
                self.error(e.right, f"{op} expects a list or cidr(...) on its right, got {right}", "pdl_type")
            elif right == CIDR and left not in (STRING, ANY):
                self.error(e.left, f"{op} cidr(...) expects an IP address string, got {left}", "pdl_type")
        elif op == "contains":
            if left not in (LIST, STRING, ANY):
                self.error(e.left, f"contains expects a list or a string on its left, got {left}", "pdl_type")
            elif left == STRING and right not in (STRING, ANY):
                self.error(e.right, f"contains on a string expects a string, got {right}", "pdl_type")
        elif op in ("contains_any", "contains_all"):
            for side, kind in ((e.left, left), (e.right, right)):
                if kind not in (LIST, ANY):
                    self.error(side, f"{op} expects two lists, got {kind}", "pdl_type")
        elif op in STRING_OPS:
            for side, kind in ((e.left, left), (e.right, right)):
                if kind not in (STRING, ANY):
                    self.error(side, f"{op} expects two strings, got {kind}", "pdl_type")
            if op == "matches" and isinstance(e.right, ast.Literal) and isinstance(e.right.value, str):
                problem = glob_error(e.right.value)
                if problem:
                    self.error(e.right, problem, "pdl_glob")


def _unknown_data_name(name: str, data: Mapping[str, object]) -> str:
    message = f"unknown data name {name!r}: no {name}.data.yaml, .yml or .json is loaded"
    if not data:
        return message
    close = difflib.get_close_matches(name, list(data), n=1)
    if close:
        return f"{message}; did you mean data.{close[0]}?"
    return f"{message}; the data names are {_listed(data)}"


def _why_not(obj: ast.Expr, parent: object, key: object, indexed: bool) -> str:
    """Why ``obj.key`` / ``obj[key]`` does not resolve, ``obj`` standing for ``parent``."""
    where = ast.to_text(obj)
    if isinstance(parent, dict) and isinstance(key, str):
        if not parent:
            return f"{where} is an empty map"
        close = difflib.get_close_matches(key, list(parent), n=1)
        if close:
            return f"{where} has no key {key!r}; did you mean {ast.to_text(_step(obj, close[0]))}?"
        return f"{where} has no key {key!r}; its keys are {_listed(parent)}"
    if isinstance(parent, dict):
        return f"{where} is a map, indexed by strings, not by a {type_name(key)}"
    if isinstance(parent, list) and indexed:
        if isinstance(key, int) and not isinstance(key, bool):
            return f"{where} has {len(parent)} item{'' if len(parent) == 1 else 's'}"
        return f"{where} is a list, indexed by integers, not by a {type_name(key)}"
    return f"{where} is a {type_name(parent)}, not a map" + (" or a list" if indexed else "")


def _step(obj: ast.Expr, key: str) -> ast.Expr:
    return ast.Attribute(obj, key) if key.isidentifier() else ast.Index(obj, ast.Literal(key))


def _listed(keys: Mapping[str, object]) -> str:
    names = [repr(k) for k in list(keys)[:_KEYS_SHOWN]]
    more = len(keys) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
