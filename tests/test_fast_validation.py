"""The compiled evaluator's fast request check (``_ceval``, "request validation") against the
reference: on edge cases and generated requests, the compiled engine answers exactly as the
reference engine (decision and reasons, or the RequestError's path and message, from ``decide``
and ``decide_many``), and whenever the fast check accepts a request on its own (without calling
``parse_request``), ``parse_request`` accepts it too and returns it unchanged, type for type.
"""

from __future__ import annotations

import collections
import enum
import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pdp
from pdp import runtime
from pdp.request import MAX_DEPTH, MAX_LIST_ITEMS, MAX_VALUES, parse_request

pytestmark = pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the compiled evaluator is not built")

# The reason renders all four roots, so a value passed on un-normalized would show in it.
POLICY = 'policy p {\n  permit all reason "{identity}|{action}|{resource}|{context}"\n}\n'


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    (root / "p.pdl").write_text(POLICY, encoding="utf-8")
    return {b: pdp.load(root, backend=b) for b in ("compiled", "reference")}


@pytest.fixture
def slow_calls(monkeypatch):
    """Counts the compiled evaluator's calls of the reference validation (its slow path)."""
    from pdp.runtime import _ceval

    calls = []
    for name in ("parse_request", "indexed_request"):
        real = getattr(_ceval, name)
        monkeypatch.setattr(_ceval, name, lambda *args, _real=real: calls.append(1) or _real(*args))
    return calls


def outcome(engine, raw, many: bool = False):
    try:
        d = engine.decide_many([raw])[0] if many else engine.decide(raw)
        return ("decision", d.decision, [(r.rule, r.effect, r.message) for r in d.reasons],
                [(e.rule, e.message) for e in d.errors])
    except pdp.RequestError as err:
        return ("RequestError", err.path, err.message)


def same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (True is not 1, a tuple is not a list, a
    dict subclass is not a dict, map keys in the same order)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return (len(a) == len(b) and all(same(k, l) for k, l in zip(a, b))
                and all(same(v, b[k]) for k, v in a.items()))
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    return a == b


def check(engines, slow_calls, raw) -> bool:
    """Both engines answer alike; True when the compiled one took its fast path."""
    want = outcome(engines["reference"], raw)
    slow_calls.clear()
    assert outcome(engines["compiled"], raw) == want, raw
    fast = not slow_calls
    want_many = outcome(engines["reference"], raw, many=True)
    slow_calls.clear()
    assert outcome(engines["compiled"], raw, many=True) == want_many, raw
    assert fast == (not slow_calls), "decide and decide_many validate alike"
    if fast:
        # The fast path hands on the caller's own objects: parse_request must leave them as is.
        attrs = parse_request(raw).attrs
        action = raw["action"]
        assert same(attrs, {"identity": raw["identity"],
                            "action": {"name": action} if type(action) is str else action,
                            "resource": raw["resource"], "context": raw.get("context", {})}), raw
    return fast


def request(identity: dict | None = None, action: object = "read", resource: dict | None = None,
            **more: object) -> dict:
    return {"identity": {"type": "workload", "id": "svc", **(identity or {})}, "action": action,
            "resource": {"type": "doc", "id": "d1", **(resource or {})}, **more}


def nest(levels: int, kind: str = "map", leaf: object = "x") -> object:
    for _ in range(levels):
        leaf = {"a": leaf} if kind == "map" else [leaf]
    return leaf


def fresh(text: str) -> str:
    """An equal string that is not the interned literal (as keys decoded from JSON are)."""
    made = "".join([text[:1], text[1:]])
    assert made == text and (made is not text or not text)
    return made


class Text(str):
    pass


class Number(int):
    pass


class Color(enum.IntEnum):
    RED = 1


class Map(dict):
    pass


class Items(list):
    pass


# identity {type, id}, action {name} and resource {type, id} of request(): 5 values.
BASE_VALUES = 5

FAST = {
    "minimal": request(),
    "action map": request(action={"name": "read", "extra": [1, 2]}),
    "with context": request(context={"time": "2026-11-27T10:05:00Z", "ip": "10.1.2.3"}),
    "empty context": request(context={}),
    "nested": request(identity={"a": {"b": [{"c": ["d", 1, 2.5, True, False]}]}}),
    "ints at the edges": request(context={"v": [0, -1, 1, 2**30 - 1, 2**30, -(2**30), -(2**30) - 1, 2**31, 2**62,
                                                2**63 - 1, 2**63, 2**64 - 1, -(2**63)]}),
    "floats": request(context={"v": [0.0, -0.0, 1.5, 1e308, -1e-308, 5e-324]}),
    "bools": request(identity={"admin": True, "banned": False}),
    "non-ASCII text": request(identity={"name": "Zoë", "city": "東京", "emoji": "😀", "private": "\ue000",
                                        "last": "\uffff", "ucs2 high": "\ud7ff"}),
    "non-ASCII keys": request(identity={"clé": 1, "東京": 2, "😀": 3, "tÿpe": "x", "typ\u0100": "y", "ïd": "z"}),
    "keys like the required ones": request(identity={"typ": "a", "types": "b", "Type": "c", "i": "d", "ids": "e"}),
    "decoded JSON": json.loads(json.dumps(request(identity={"nested": {"type": "x"}}, context={"a": [1, "b"]}))),
    "fresh root and field names": {fresh("identity"): {fresh("type"): "w", fresh("id"): "x"},
                                   fresh("action"): {fresh("name"): "read"},
                                   fresh("resource"): {fresh("type"): "doc"}, fresh("context"): {}},
    "fresh bare action": {fresh("identity"): {fresh("id"): "x", fresh("type"): "w"}, fresh("action"): "read",
                          fresh("resource"): {fresh("type"): "doc"}},
    "required fields last": {"context": {}, "resource": {"x": 1, "type": "doc"}, "action": {"v": 2, "name": "r"},
                             "identity": {"a": [], "b": {}, "id": "x", "type": "w"}},
    "blank but not empty": request(identity={"type": " ", "id": "\t"}, action=" "),
    "empty key and values": request(identity={"": "", "l": [], "m": {}}),
    "depth at the limit (map)": request(context={"d": nest(MAX_DEPTH - 1)}),
    "depth at the limit (list)": request(context={"d": nest(MAX_DEPTH - 1, "list")}),
    "depth at the limit in identity": request(identity={"d": nest(MAX_DEPTH - 1)}),
    "depth at the limit, scalar leaf": request(context={"d": nest(MAX_DEPTH - 1, leaf=1)}),
    "list at the limit": request(context={"l": ["s"] * MAX_LIST_ITEMS}),
    "values at the limit": request(context={"m": dict.fromkeys(map(str, range(MAX_VALUES - BASE_VALUES - 1)), 1)}),
    "values at the limit, action map": request(action={"name": "read"}, context={
        "m": dict.fromkeys(map(str, range(MAX_VALUES - BASE_VALUES - 1)), 1)}),
    "values at the limit in a root": request(context=dict.fromkeys(map(str, range(MAX_VALUES - BASE_VALUES)), 1)),
}

SLOW = {  # the reference rejects or normalizes these (or the fast check is not sure)
    "lone surrogate value": request(identity={"a": {"b": ["x", "x\ud800"]}}),
    "lone low surrogate value": request(resource={"a": "\udfff"}),
    "lone surrogate in non-BMP text": request(resource={"a": "😀\udc00"}),
    "lone surrogate key": request(identity={"a": {"b\udbff": 1}}),
    "lone surrogate key at the root of identity": request(identity={"\ud800": 1}),
    "lone surrogate required field": request(identity={"type": "w\ud800"}),
    "lone surrogate bare action": request(action="r\ud800"),
    "lone surrogate top-level key": {**request(), "\ud800": 1},
    "null in a list": request(context={"l": ["a", None]}),
    "null map value": request(identity={"a": {"b": None}}),
    "null attribute": request(identity={"x": None}),
    "null required field": request(identity={"type": None}),
    "null context": request(context=None),
    "null identity": {**request(), "identity": None},
    "null action": request(action=None),
    "int over 64 bits": request(context={"v": 2**64}),
    "int under 64 bits": request(context={"v": -(2**63) - 1}),
    "huge int": request(context={"v": [10**40]}),
    "NaN": request(context={"v": math.nan}),
    "infinity": request(context={"v": [math.inf]}),
    "minus infinity": request(identity={"v": {"w": -math.inf}}),
    "tuple": request(context={"t": (1, 2)}),
    "nested tuple": request(context={"t": [(1,)]}),
    "tuple identity": {**request(), "identity": ("type", "w")},
    "int key": request(identity={"a": {1: "x"}}),
    "None key": request(context={None: 1}),
    "bytes key": request(context={b"k": 1}),
    "bool key": request(resource={True: 1}),
    "int top-level key": {**request(), 5: 1},
    "str subclass value": request(identity={"a": Text("x")}),
    "str subclass required field": request(identity={"type": Text("w")}),
    "str subclass bare action": request(action=Text("read")),
    "str subclass key": request(identity={Text("a"): 1}),
    "int subclass": request(identity={"a": Number(1)}),
    "IntEnum": request(identity={"a": Color.RED}),
    "dict subclass root": {**request(), "identity": Map(type="w", id="x")},
    "OrderedDict value": request(context={"m": collections.OrderedDict(a=1)}),
    "list subclass": request(context={"l": Items([1])}),
    "bytes value": request(context={"b": b"x"}),
    "set value": request(context={"s": {1}}),
    "object value": request(context={"o": object()}),
    "depth over the limit (map)": request(context={"d": nest(MAX_DEPTH)}),
    "depth over the limit (list)": request(context={"d": nest(MAX_DEPTH, "list")}),
    "depth over the limit, empty": request(identity={"d": nest(MAX_DEPTH - 1, leaf={})}),
    "list over the limit": request(context={"l": ["s"] * (MAX_LIST_ITEMS + 1)}),
    "values over the limit": request(context={"m": dict.fromkeys(map(str, range(MAX_VALUES - BASE_VALUES)), 1)}),
    "values over the limit, action map": request(action={"name": "read"}, context={
        "m": dict.fromkeys(map(str, range(MAX_VALUES - BASE_VALUES)), 1)}),
    "values over the limit in a root": request(context=dict.fromkeys(map(str, range(MAX_VALUES - 4)), 1)),
    "values over the limit in a root, action map": request(action={"name": "read"}, context=dict.fromkeys(
        map(str, range(MAX_VALUES - 4)), 1)),
    "values over the limit across roots": request(identity={f"l{i}": ["s"] * MAX_LIST_ITEMS for i in range(9)},
                                                  context={"last": ["s"] * MAX_LIST_ITEMS}),
    "empty identity.type": request(identity={"type": ""}),
    "missing identity.type": {**request(), "identity": {"id": "x"}},
    "identity.type a number": request(identity={"type": 5}),
    "identity.type a list": request(identity={"type": ["w"]}),
    "empty identity.id": request(identity={"id": ""}),
    "missing identity.id": {**request(), "identity": {"type": "w"}},
    "empty action.name": request(action={"name": ""}),
    "missing action.name": request(action={"names": "read"}),
    "action.name a bool": request(action={"name": True}),
    "empty bare action": request(action=""),
    "action a number": request(action=5),
    "action a list": request(action=["read"]),
    "empty resource.type": request(resource={"type": ""}),
    "missing resource.type": {**request(), "resource": {"id": "d"}},
    "missing identity": {"action": "read", "resource": {"type": "d"}},
    "missing action": {"identity": {"type": "w", "id": "x"}, "resource": {"type": "d"}},
    "missing resource": {"identity": {"type": "w", "id": "x"}, "action": "read"},
    "empty request": {},
    "extra top-level key": {**request(), "extra": 1},
    "extra null top-level key": {**request(), "extra": None},
    "top-level key in another case": {**request(), "Identity": {}},
    "top-level key of the same length": {**request(), "identitÿ": {}},
    "context a list": request(context=[]),
    "context a string": request(context="x"),
    "resource a string": {**request(), "resource": "doc"},
    "not a map": ["identity"],
    "None": None,
    "dict subclass request": Map(request()),
}


@pytest.mark.parametrize("name", FAST)
def test_valid_normal_requests_take_the_fast_path(engines, slow_calls, name):
    assert check(engines, slow_calls, FAST[name]), f"{name}: the fast check should accept it"


@pytest.mark.parametrize("name", SLOW)
def test_other_requests_go_to_the_reference(engines, slow_calls, name):
    assert not check(engines, slow_calls, SLOW[name]), f"{name}: the fast check should leave it to the reference"


def test_a_bare_action_is_decided_as_a_name_and_counts_one_value(engines):
    for backend, engine in engines.items():
        assert engine.decide(request(action="read")).reasons[0].message.split("|")[1] == '{"name":"read"}', backend


def test_the_callers_request_is_left_as_it_was(engines):
    raw = request(action="read")
    copy = json.loads(json.dumps(raw))
    engines["compiled"].decide(raw)
    engines["compiled"].decide_many([raw])
    assert same(raw, copy)


# ---- generated requests ----------------------------------------------------------------------


def mostly(good, bad, odds: int = 16):
    """``good``, and one time in ``odds`` ``bad``: many generated requests are valid, so the fast
    path (and what it lets through) is exercised, and most invalid ones are invalid in one place."""
    return st.sampled_from(range(odds)).flatmap(lambda i: bad if i == odds - 1 else good)


_good_text = st.text(st.characters(codec="utf-8"), max_size=5) | st.sampled_from(["é", "東京", "😀", "\ue000", "\uffff"])
_bad_text = st.sampled_from(["\ud800", "x\udfff", "😀\udbff", Text("t")])
_text = mostly(_good_text, _bad_text, 50)
_scalars = mostly(st.booleans() | st.integers(-(2**63), 2**64 - 1) | _good_text
                  | st.floats(allow_nan=False, allow_infinity=False)
                  | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63), 2**30, -(2**30) - 1]),
                  st.none() | _bad_text | st.sampled_from([2**64, -(2**63) - 1, 10**30, math.nan, math.inf, -math.inf,
                                                           Number(3), Color.RED, b"b", object()]), 50)
_keys = mostly(_good_text | st.sampled_from(["type", "id", "name"]),
               _bad_text | st.integers(0, 2) | st.none(), 50)
_values = st.recursive(_scalars, lambda inner: mostly(
    st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    st.tuples(inner) | st.dictionaries(_keys, inner, max_size=2).map(Map) | st.lists(inner, max_size=2).map(Items),
    50), max_leaves=16)
_fields = mostly(_good_text.filter(bool), st.sampled_from(["", None, 5, True, ["w"], Text("w"), "\ud800"]))


def _root(extra: dict, fields: dict, dropped: list, fields_first: bool) -> dict:
    out = {**fields, **extra} if fields_first else {**extra, **fields}
    for field in dropped:
        del out[field]
    return out


def roots(*required: str):
    """A root map: its required fields (now and then dropped or replaced) among other attributes."""
    return st.builds(_root, st.dictionaries(_keys, _values, max_size=5), st.fixed_dictionaries(dict.fromkeys(
        required, _fields)), mostly(st.just([]), st.lists(st.sampled_from(required or ("x",)), max_size=1)
                                    .map(lambda fields: [f for f in fields if f in required])), st.booleans())


_not_a_root = st.none() | _text | st.lists(_text, max_size=1) | roots().map(Map)
_requests = st.tuples(
    st.fixed_dictionaries({"identity": mostly(roots("type", "id"), _not_a_root),
                           "action": mostly(roots("name") | _fields, _not_a_root),
                           "resource": mostly(roots("type"), _not_a_root)},
                          optional={"context": mostly(roots(), _not_a_root)}),
    mostly(st.just({}), st.dictionaries(_keys, _values, min_size=1, max_size=1)),  # an unknown key
    st.permutations(range(5))).map(lambda t: {k: v for _, (k, v) in sorted(zip(t[2], [*t[0].items(), *t[1].items()]))})


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(_requests)
def test_generated_requests(engines, slow_calls, raw):
    event("fast path" if check(engines, slow_calls, raw) else "reference path")


def _holed(entries: dict, junk: object) -> dict:
    """A dict of ``entries`` whose entry array has holes: a removed key before each of them."""
    out: dict = {}
    for i, (key, value) in enumerate(entries.items()):
        out[f"gone{i}"] = junk
        out[key] = value
    for i in range(len(entries)):
        del out[f"gone{i}"]
    return out


class _Attrs:
    pass


def _split(**entries) -> dict:
    """An exact dict that CPython keeps as a split table: an instance's __dict__."""
    obj = _Attrs()
    obj.__dict__.update(entries)
    return vars(obj)


def test_maps_with_removed_entries_and_split_tables(engines):
    """Validation reads the entries of exact dicts in place where CPython's layout allows
    (3.11, 3.12: checked at import); removed entries, split tables and keys of other types
    are read as PyDict_Next reads them: the same answers as the reference."""
    import sys

    from pdp.runtime import _ceval

    assert _ceval.DICTS_READ_IN_PLACE == (sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 12))
    cases = []
    for junk in ("x", float("nan"), None):
        for extra in ({}, {"bad": float("nan")}, {"bad": None}, {"n": [1, 2]}, {f"k{i}": i for i in range(40)}):
            identity = _holed({"type": "w", "id": "svc", **extra}, junk)
            cases.append({"identity": identity, "action": _holed({"name": "read"}, junk), "resource": {"type": "t"},
                          "context": _holed({"tls": _holed({"peer": "p", **extra}, junk)}, junk)})
    cases.append({"identity": _split(type="w", id="svc"), "action": "read", "resource": _split(type="t", env="prod")})
    cases.append({"identity": _split(type="w", id="svc", bad=float("inf")), "action": "read", "resource": {"type": "t"}})
    cases.append({"identity": {"type": "w", "id": "svc", 1: "x"}, "action": "read", "resource": {"type": "t"}})
    for raw in cases:
        want = outcome(engines["reference"], raw)
        assert outcome(engines["compiled"], raw) == want, raw
        assert outcome(engines["compiled"], raw, many=True) == outcome(engines["reference"], raw, many=True), raw
