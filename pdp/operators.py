"""The level-4 operators of SPEC §1 on runtime values, shared by every evaluator.

``==``/``!=`` never error; the others raise ``EvalError`` naming the operator and the types
they got. Matching uses the linear-time glob matcher only.
"""

from __future__ import annotations

from .errors import EvalError
from .glob import compile_glob
from .values import CidrSet, compare, equal, type_name


def member(item: object, container: object, op: str = "in") -> bool:
    """``item in container`` for a list (by pdp equality) or a ``cidr(...)`` set."""
    if isinstance(container, list):
        if isinstance(item, str):  # fast path: a string equals only strings
            return item in container
        return any(equal(item, x) for x in container)
    if isinstance(container, CidrSet):
        return container.contains(item)
    raise EvalError(f"{op} expects a list or cidr(...) on its right, got {type_name(container)}")


def _contains(a: object, b: object) -> bool:
    if isinstance(a, list):
        return member(b, a, "contains")
    if isinstance(a, str):
        if isinstance(b, str):
            return b in a
        raise EvalError(f"contains on a string expects a string, got {type_name(b)}")
    raise EvalError(f"contains expects a list or a string on its left, got {type_name(a)}")


def _lists(op: str, a: object, b: object) -> None:
    if not isinstance(a, list) or not isinstance(b, list):
        raise EvalError(f"{op} expects two lists, got {type_name(a)} and {type_name(b)}")


#: Above this many (needle, item) pairs contains_any / contains_all hash the list instead of
#: scanning it once per needle: linear, not quadratic, in the sizes of two request lists.
SCAN_PAIRS = 256


def _contains_any(a: object, b: object) -> bool:
    _lists("contains_any", a, b)
    if len(a) * len(b) > SCAN_PAIRS:  # type: ignore[arg-type]
        return any(map(_Index(a).has, b))  # type: ignore[arg-type]
    return any(member(x, a) for x in b)  # type: ignore[union-attr]


def _contains_all(a: object, b: object) -> bool:
    _lists("contains_all", a, b)
    if len(a) * len(b) > SCAN_PAIRS:  # type: ignore[arg-type]
        return all(map(_Index(a).has, b))  # type: ignore[arg-type]
    return all(member(x, a) for x in b)  # type: ignore[union-attr]


_BOOL, _NUMBER, _LIST, _MAP = range(4)


def _key(v: object) -> object:
    """A hashable key with pdp equality (values are equal exactly when their keys are), or
    None for a value that has none (a cidr set, or a list or map holding one)."""
    t = type(v)
    if t is str:
        return v  # a string equals only strings; every other key is a tuple
    if t is bool:
        return (_BOOL, v)
    if t is int or t is float:
        return (_NUMBER, v)  # 1 == 1.0 and hash(1) == hash(1.0), as pdp wants
    if isinstance(v, (list, tuple)):
        items = tuple(map(_key, v))
        return None if None in items else (_LIST, items)
    if isinstance(v, dict):
        pairs = frozenset((k, _key(x)) for k, x in v.items())
        return None if any(k is None for _, k in pairs) else (_MAP, pairs)
    return None


class _Index:
    """``member(x, items)`` for many ``x`` in time linear in the sizes: a set of the items'
    keys, and a scan of the few items without a key."""

    __slots__ = ("keys", "rest")

    def __init__(self, items: list):
        self.keys: set = set()
        self.rest: list = []
        for item in items:
            key = _key(item)
            if key is None:
                self.rest.append(item)
            else:
                self.keys.add(key)

    def has(self, x: object) -> bool:
        key = _key(x)
        if key is None:
            return any(equal(x, y) for y in self.rest)
        return key in self.keys


def _strings(op: str, a: object, b: object) -> None:
    if not isinstance(a, str) or not isinstance(b, str):
        raise EvalError(f"{op} expects two strings, got {type_name(a)} and {type_name(b)}")


def _matches(a: object, b: object) -> bool:
    _strings("matches", a, b)
    try:
        glob = compile_glob(b)  # type: ignore[arg-type]
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    return glob.match(a)  # type: ignore[arg-type]


def _startswith(a: object, b: object) -> bool:
    _strings("startswith", a, b)
    return a.startswith(b)  # type: ignore[union-attr]


def _endswith(a: object, b: object) -> bool:
    _strings("endswith", a, b)
    return a.endswith(b)  # type: ignore[union-attr]


OPERATORS = {
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": lambda a, b: compare("<", a, b),
    "<=": lambda a, b: compare("<=", a, b),
    ">": lambda a, b: compare(">", a, b),
    ">=": lambda a, b: compare(">=", a, b),
    "in": member,
    "not in": lambda a, b: not member(a, b, "not in"),
    "contains": _contains,
    "contains_any": _contains_any,
    "contains_all": _contains_all,
    "matches": _matches,
    "startswith": _startswith,
    "endswith": _endswith,
}


def apply(op: str, a: object, b: object) -> bool:
    return OPERATORS[op](a, b)
