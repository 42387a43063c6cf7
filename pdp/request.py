"""Requests: the AuthZEN-shaped dict of SPEC §3 ⇒ a validated, normalized ``Request``.

Normalizing means: ``action`` given as a bare string becomes ``{"name": ...}``, JSON ``null``
in a map counts as absent (the key is dropped), tuples become lists. Anything that is not a
JSON value, or not of the required shape, is a ``RequestError`` naming the path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .errors import RequestError

ROOT_KEYS = ("identity", "action", "resource", "context")
#: The root of the request's verified token (SPEC §8). Not a key a request may carry: the
#: engine's token gate fills it from ``context.token``, and it is absent without a token.
TOKEN_ROOT = "token"
REQUIRED = (("identity", "type"), ("identity", "id"), ("action", "name"), ("resource", "type"))

#: Integers outside this range cannot travel exactly on every layer (SPEC §3: 64 bits).
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
#: Maps and lists nested deeper than this are refused (each level is one step of recursion).
MAX_DEPTH = 32
#: Values one request may carry: the items of every map and list in it, at any depth (the
#: four root objects are not counted; a null in a map is). Bounds the work of validating,
#: and of evaluating, one request.
MAX_VALUES = 100_000
#: Items one list in a request may hold.
MAX_LIST_ITEMS = 10_000


@dataclass(frozen=True)
class Request:
    """A validated request. ``attrs`` holds the four root maps; ``arrival`` is the server clock
    (epoch seconds) when the request arrived, used for ``now`` when ``context.time`` is absent;
    ``token`` is its verified token (the root ``token``), None when it has none."""

    attrs: dict
    arrival: float
    token: dict | None = None

    def root(self, name: str) -> dict:
        return self.attrs[name]


def normalize_value(value: object, path: str, depth: int = 0) -> object:
    """Check that ``value`` is a JSON value and normalize it (nulls in maps dropped).

    Only the depth is bounded here (data files may be large); a request's value count and
    list lengths are bounded by ``parse_request``.

    >>> normalize_value({"a": None, "b": (1, 2.5)}, "context")
    {'b': [1, 2.5]}
    """
    return _normalize(value, path, depth, None)


def _normalize(value: object, path: str, depth: int, budget: list | None) -> object:
    """``normalize_value``; with ``budget`` (``[values left]``, shared by a request's roots)
    also the request limits MAX_VALUES and MAX_LIST_ITEMS."""
    t = type(value)
    if t is str:
        if not value.isascii():  # type: ignore[attr-defined]
            _check_unicode(value, path)  # type: ignore[arg-type]
        return value
    if t is bool:
        return value
    if t is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise RequestError(path, "integer does not fit in 64 bits")
        return value
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise RequestError(path, "numbers must be finite (no NaN or infinity)")
        return value
    if t is dict or t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise RequestError(path, f"nested deeper than {MAX_DEPTH} levels")
        if t is dict:
            return _normalize_map(value, path, depth, budget)  # type: ignore[arg-type]
        return _normalize_list(value, path, depth, budget)  # type: ignore[arg-type]
    if value is None:
        raise RequestError(path, "null is only allowed as a map value (where it means absent)")
    base = base_value(value)
    if base is None:
        raise RequestError(path, f"{t.__name__} is not a JSON value")
    return _normalize(base, path, depth, budget)


def base_value(value: object) -> object:
    """The value of the JSON type that ``value``, an instance of a subclass of one, stands for
    (SPEC §1.1: an ``enum.StrEnum`` member is its string, an ``IntEnum`` its integer, an
    ``OrderedDict`` a map, a namedtuple a list); None when it is not such an instance.

    The base type's own methods read the value, never the subclass's ``__str__`` or
    ``__int__`` (``str()`` of a ``(str, Enum)`` member is ``"Color.RED"``, not its value).

    >>> import enum
    >>> base_value(enum.StrEnum("E", {"DEV": "dev"}).DEV), base_value(enum.IntEnum("N", {"ONE": 1}).ONE)
    ('dev', 1)
    """
    if isinstance(value, str):
        return str.__str__(value)  # an exact str copy of its characters
    if isinstance(value, int):  # bool cannot be subclassed: every int subclass is a number
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return dict(dict.items(value))
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _normalize_map(value: dict, path: str, depth: int, budget: list | None) -> dict:
    if budget is not None:
        budget[0] -= len(value)
        if budget[0] < 0:
            _too_many(path)
    result = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise RequestError(path, f"map keys must be strings, got {type(key).__name__} {key!r}")
            key = str.__str__(key)
        if not key.isascii():
            _check_unicode(key, path)
        if item is not None:
            result[key] = _normalize(item, f"{path}.{key}" if path else key, depth + 1, budget)
    return result


def _normalize_list(value: list | tuple, path: str, depth: int, budget: list | None) -> list:
    if budget is not None:
        if len(value) > MAX_LIST_ITEMS:
            raise RequestError(path, f"a list of {len(value)} items; the limit is {MAX_LIST_ITEMS} per list")
        budget[0] -= len(value)
        if budget[0] < 0:
            _too_many(path)
    items = []
    for i, item in enumerate(value):
        if item is None:
            raise RequestError(f"{path}[{i}]", "null is not allowed inside a list")
        items.append(_normalize(item, f"{path}[{i}]", depth + 1, budget))
    return items


def _too_many(path: str) -> None:
    raise RequestError(path, f"the request carries more than {MAX_VALUES} values (items of maps and "
                                 "lists, at any depth)")


def _check_unicode(text: str, path: str) -> None:
    """Lone surrogates (``"\\ud800"`` in JSON) are not characters: no layer could encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(path, f"string holds a lone surrogate U+{ord(text[exc.start]):04X}, "
                                 "which is not a character") from None


def parse_request(raw: object, arrival: float | None = None) -> Request:
    """Validate a request dict (SPEC §3) and return a ``Request``; raises ``RequestError``."""
    if not isinstance(raw, dict):
        raise RequestError("", f"a request must be a JSON object, got {_kind(raw)}")
    for key in raw:
        if key not in ROOT_KEYS:
            hint = "identity, action, resource and context"
            shown = str(key).encode("utf-8", "backslashreplace").decode("utf-8")  # printable even with a lone surrogate
            raise RequestError(shown, f"unknown top-level key; a request has {hint}")
    attrs: dict = {}
    budget = [MAX_VALUES]
    for key in ROOT_KEYS:
        value = raw.get(key)
        if value is None:
            if key == "context":
                attrs[key] = {}
                continue
            raise RequestError(key, "is required")
        if key == "action" and isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            raise RequestError(key, f"must be an object, got {_kind(value)}")
        attrs[key] = _normalize(value, key, 0, budget)
    for root, field in REQUIRED:
        value = attrs[root].get(field)
        if not isinstance(value, str) or not value:
            got = "missing" if value is None else ("empty" if value == "" else _kind(value))
            raise RequestError(f"{root}.{field}", f"a non-empty string is required, got {got}")
    return Request(attrs, time.time() if arrival is None else arrival)


def indexed_request(index: int, raw: object, arrival: float | None = None) -> Request:
    """``parse_request`` for item ``index`` of a batch: the error path starts ``[index]``."""
    try:
        return parse_request(raw, arrival)
    except RequestError as err:
        raise RequestError(f"[{index}]{'.' if err.path else ''}{err.path}", err.message) from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---- candidates: one request, one varying field (AuthZEN search) ------------------------------


def candidate_probe(request: object, root: str, key: str) -> object:
    """``request`` with ``request[root][key]`` set to a placeholder string: validating it
    validates everything a candidate does not replace (the candidate is checked on its own by
    ``candidate_value``). The maps on the way are copies; ``request`` is left as it is."""
    if root not in ROOT_KEYS[:3]:
        raise ValueError(f"a candidate stands in identity, action or resource, not {root!r}")
    if not isinstance(request, dict):
        return request  # parse_request says what is wrong with it
    entity = request.get(root)
    if entity is None:
        entity = {}
    elif isinstance(entity, str) and root == "action":
        entity = {"name": entity}
    if not isinstance(entity, dict):
        return request
    probe = dict(request)
    probe[root] = {**entity, key: "x"}
    return probe


def candidate_value(root: str, key: str, value: object) -> str | None:
    """The exact string a candidate stands for at ``root.key``, or None when it is never allowed:
    not a string (search candidates are ids and names, even where a request could carry a
    number), or a string no valid request carries there (empty where a non-empty one is
    required, a lone surrogate)."""
    if type(value) is not str:
        if not isinstance(value, str):
            return None
        value = str.__str__(value)
    if not value and (root, key) in REQUIRED:
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return value
