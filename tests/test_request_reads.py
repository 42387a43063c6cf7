"""The compiled evaluator's request reads in C: str keys looked up in place in CPython's dict
tables (paths, switch branches, data tables, rows of atoms), and RFC 3339 times parsed in C
(``age``, ``time``, ``context.time``): the same values as dict.get and values.parse_time, and
the same decisions, reasons and errors as the reference evaluator."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp import reference, runtime
from pdp.compile import compile_program, ir
from pdp.request import parse_request

from strategies import load_policy_set
from test_differential import _check_all, _view
from test_tabulate import _nodes

_ceval = pytest.importorskip("pdp.runtime._ceval")

_KEYS = st.text(alphabet="abkxé€😀0_", min_size=0, max_size=4)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(_KEYS, max_size=120, unique=True), removed=st.sets(st.integers(0, 119)),
       probes=st.lists(_KEYS, max_size=30))
def test_keys_read_in_place_are_what_dict_get_finds(keys, removed, probes):
    """Every key of a dict of str keys (its own object, an equal copy), removed keys and other
    strings: found in place as dict.get finds them, or left to it (never a wrong answer)."""
    d = {k: i for i, k in enumerate(keys)}
    for i in sorted(removed):
        if i < len(keys):
            del d[keys[i]]
    copies = [json.loads(json.dumps(k)) for k in keys]  # equal, not the same object
    for key in keys + copies + probes + [k + "!" for k in keys]:
        got, value = _ceval._read_in_place(d, key)
        if _ceval.DICTS_READ_IN_PLACE:
            assert got != -1, key
        if got == 1:
            assert key in d and value is d[key], key
        elif got == 0:
            assert key not in d, key
    class Sub(str):
        pass
    assert _ceval._read_in_place(d, Sub("a"))[0] == -1  # a str subclass: dict.get's lookup
    assert _ceval._read_in_place({1: 2, "a": 3}, "a")[0] == -1  # a table of other keys


#: Rules reading paths into maps of many keys, switching on request values, indexing data by
#: them (the index's switches and the tabulated lookups), whatever the hash order puts where.
_RULES = """
policy p {
  permit a when identity.k7 == "v7" and identity.m.k3 == 3 reason "{identity.k40} {identity.m.k99}"
  forbid b when context.x[identity.key] == "bad" reason "{context.x[identity.key]}"
  permit c when data.table[identity.key].level > 1 and data.table[identity.key].name == identity.k7
  forbid d when resource.type == identity.key and resource.k5 == 5
}
policy q {
  target resource.type == "t1"
  permit e when identity.key in ["k1", "k2", "k3"] and data.table[resource.k5].level == 2
}
"""
_TABLE = {f"k{i}": {"level": i % 4, "name": f"v{i}"} for i in range(0, 60, 3)}


def _many(n: int, holes: bool) -> dict:
    out = {}
    for i in range(n):
        if holes:
            out[f"gone{i}"] = 0
        out[f"k{i}"] = f"v{i}" if i % 2 else i
    if holes:
        for i in range(n):
            del out[f"gone{i}"]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.tuples(st.integers(0, 130), st.booleans(), st.integers(0, 140)), min_size=1, max_size=6),
       as_json=st.booleans())
def test_paths_switches_and_tables_over_maps_of_many_keys(sizes, as_json):
    engine = load_policy_set([_RULES], {"table": _TABLE})
    reqs = []
    for n, holes, key in sizes:
        identity = {"type": "w", "id": "x", **_many(n, holes), "m": _many(n // 2, not holes), "key": f"k{key}"}
        reqs.append({"identity": identity, "action": "read",
                     "resource": {"type": f"t{key % 3}", **_many(n // 3, holes)},
                     "context": {"x": {f"k{i}": "bad" if i % 5 == 0 else i for i in range(n)}}})
    if as_json:
        reqs = [json.loads(json.dumps(r)) for r in reqs]
    _check_all(engine, reqs)


#: Characters each place of a time's text is drawn from: the ones that belong there and the
#: ones that break it (other digits, separators, a Latin-1 letter, a non-ASCII digit).
_DIGIT = st.sampled_from("0123456789") | st.sampled_from("0123456789/:-é٢")
_TIME_TEXT = st.tuples(
    st.tuples(_DIGIT, _DIGIT, _DIGIT, _DIGIT).map("".join) | st.sampled_from(["2026", "2024", "1900", "0000", "0001"]),
    st.sampled_from("-") | st.sampled_from("-/ "),
    st.sampled_from(["01", "02", "04", "11", "12", "00", "13"]) | st.tuples(_DIGIT, _DIGIT).map("".join),
    st.sampled_from("-") | st.sampled_from("-:"),
    st.sampled_from(["01", "28", "29", "30", "31", "00", "32"]) | st.tuples(_DIGIT, _DIGIT).map("".join),
    st.sampled_from("Tt x"),
    st.sampled_from(["00", "10", "23", "24"]) | st.tuples(_DIGIT, _DIGIT).map("".join),
    st.sampled_from(":") | st.sampled_from(":-"),
    st.sampled_from(["00", "05", "59", "60"]),
    st.sampled_from(":") | st.sampled_from(":."),
    st.sampled_from(["00", "30", "59", "60", "61"]) | st.tuples(_DIGIT, _DIGIT).map("".join),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+01:00", "+24:00", "-01:60", "+0100", "+01:0", "", "ZZ", "Q"]),
).map("".join)

_TIME_RULES = """
policy p {
  forbid old when age(identity.t) > 3600 reason "{age(identity.t)}"
  forbid at when time(identity.t) < time(identity.u) reason "{time(identity.t)} {time(identity.u)}"
  permit young when age(identity.u) <= 86400 reason "{age(identity.u)}"
  permit clock when now > 0 and hour(now, "UTC") >= 0 and minute(identity.t, "UTC") >= 0 reason "{now}"
}
"""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(times=st.lists(st.tuples(_TIME_TEXT, _TIME_TEXT, _TIME_TEXT | st.sampled_from([1795773900, 1795773900.5])),
                      min_size=1, max_size=6),
       arrival=st.sampled_from([1795773900, 1795773900.25, 1795770000.5]), skew=st.sampled_from([None, 0, 30, 10**9]))
def test_generated_times_agree(times, arrival, skew):
    """Times near the common RFC 3339 shape (parsed in C) and off it (left to
    values.parse_time), in age(), time() and context.time, with a clock bound and without:
    the reference's values, decisions and messages."""
    engine = load_policy_set([_TIME_RULES], None)
    reqs = [{"identity": {"type": "w", "id": "x", "t": t, "u": u}, "action": "r", "resource": {"type": "t"},
             "context": {"time": now}} for t, u, now in times]
    if skew is None:
        _check_all(engine, reqs)
        return
    flat = compile_program(engine.policy_set, engine.revision, indexed=False)
    evaluators = {(name, kind): runtime.EVALUATORS[name](program, skew)
                  for name in sorted(runtime.EVALUATORS) for kind, program in (("indexed", engine.program), ("flat", flat))}
    for raw in reqs:
        parsed = parse_request(raw, arrival)
        want = _view(reference.decide(engine.policy_set, parsed, engine.revision, skew))
        for key, evaluator in evaluators.items():
            assert _view(evaluator.decide_parsed(parsed.attrs, arrival)) == want, f"{key} differs for {raw!r}"


def _copy(text: str) -> str:
    """An equal str that is another object (the table keys times by their text)."""
    return "".join(list(text)) if len(text) > 1 else text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(times=st.lists(st.tuples(_TIME_TEXT, _TIME_TEXT), min_size=1, max_size=40), order=st.randoms(use_true_random=False))
def test_times_kept_by_text_agree(times, order):
    """The times parsed in C are kept by their text (a table of 64): texts decided, then
    again as equal copies in another order (read back from the table), as context.time too:
    the reference's values, decisions and messages."""
    engine = load_policy_set([_TIME_RULES], None)
    reqs = [{"identity": {"type": "w", "id": "x", "t": t, "u": u}, "action": "r", "resource": {"type": "t"},
             "context": {"time": u}} for t, u in times]
    again = [{"identity": {"type": "w", "id": "x", "t": _copy(t), "u": _copy(u)}, "action": "r",
              "resource": {"type": "t"}, "context": {"time": _copy(t)}} for t, u in times]
    order.shuffle(again)
    _check_all(engine, reqs + again + reqs)


def test_times_one_character_apart_are_told_apart():
    """Families of texts that differ only in the characters one 8-byte word of the table's
    key covers alone (the year and month; the day and the hour's first digit; the hour's
    second digit and the minutes; the offset), each more than the table keeps, so texts of a
    family meet in the same places: each reads its own time, as the reference (an entry
    compared on less than the whole text would give a neighbour's)."""
    families = [
        [f"{y}-06-15T10:20:30Z" for y in range(1950, 2050)],
        [f"2026-06-{d:02d}T{h}0:20:30+01:00" for d in range(1, 29) for h in range(3)],
        [f"2026-06-15T1{h}:{m:02d}:30-05:30" for h in range(10) for m in range(0, 60, 6)],
        [f"2026-06-15T10:20:30{sign}{hh:02d}:{mm:02d}" for sign in "+-" for hh in range(24) for mm in (0, 15, 30, 45)],
    ]
    engine = load_policy_set([_TIME_RULES], None)
    for texts in families:
        assert len(texts) > 64
        reqs = [{"identity": {"type": "w", "id": "x", "t": t, "u": _copy(texts[(7 * i) % len(texts)])}, "action": "r",
                 "resource": {"type": "t"}, "context": {"time": _copy(t)}} for i, t in enumerate(texts)]
        _check_all(engine, reqs + reqs[::-1])


_BRANCH_KEYS = st.text(alphabet="ab1é€😀", max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(_BRANCH_KEYS, min_size=2, max_size=40, unique=True), probes=st.lists(_BRANCH_KEYS, max_size=12))
def test_switch_tables_find_every_branch(keys, probes):
    """A tree switching on context.kind over 2 to 40 values (one-, two- and four-byte
    strs, the empty str, keys sharing places in the switch's C table): each value, as an
    equal copy, reaches its own leaf; values not among them the default's: as the reference."""
    texts = [f'policy p{i} {{\n  target context.kind == {json.dumps(k)}\n'
             f'  permit r{i} when identity.id != "nobody" reason "{{context.kind}} {i}"\n}}\n' for i, k in enumerate(keys)]
    texts.append('policy open {\n  permit any when identity.id == "x" reason "open"\n}\n')
    engine = load_policy_set(texts, None)
    assert engine.program.permit_tree[0] == "switch"
    reqs = [{"identity": {"type": "w", "id": who}, "action": "r", "resource": {"type": "t"}, "context": {"kind": _copy(t)}}
            for t in keys + probes for who in ("x", "y")]
    reqs += [{"identity": {"type": "w", "id": "x"}, "action": "r", "resource": {"type": "t"}, "context": c}
             for c in ({}, {"kind": 1}, {"kind": ["a"]})]  # the default and error branches
    _check_all(engine, reqs)


#: Rules reading two-key paths on every request root (the compiled evaluator's _Path2): as
#: tests, under defined(), in reasons, as a switch (identity.m.kind is every rule's guard in
#: policy s) and as a data table's key; beside a one-key and a three-key path on the same maps.
_TWO_KEY_RULES = """
policy p {
  forbid f when identity.m.k == "bad" or context.tls.peer == identity.m.k reason "{identity.m.k} {context.tls.peer}"
  permit a when defined(identity.m.k) and resource.m.k != 3 reason "{resource.m.k}"
  permit b when identity.m.n.k == "deep" and defined(identity.m) reason "{identity.m.n.k}"
  permit c when data.t[identity.m.k] == "row" reason "{data.t[identity.m.k]}"
}
policy s {
  target identity.m.kind == "x"
  permit x1 when action.m.k in ["r", "w"] reason "x1 {action.m.k}"
  forbid x2 when not defined(context.tls.peer) reason "x2"
}
policy t {
  target identity.m.kind == "y"
  permit y1 when context.tls.peer startswith "p" reason "y1 {identity.m.kind}"
}
policy u {
  forbid i1 when defined(identity.m["k"]) and identity.m["k"] == "bad" reason "i1"
  forbid i2 when context.tls["peer"] == 7 or identity.m.n["k"] == "no" reason "i2"
  forbid i3 when identity.m["kind"] == "z" reason "i3"
}
"""

#: Values a path's maps may hold: maps with and without the key (and the key of the wrong
#: type below it), and values that are not maps at all.
_MAP_VALUES = st.one_of(
    st.fixed_dictionaries({}, optional={"k": st.sampled_from(["bad", "ok", "row", "p1", 3, 2.5, None, ["bad"], {"k": 1}]),
                                        "kind": st.sampled_from(["x", "y", "z", 1, ["x"]]),
                                        "n": st.sampled_from([{"k": "deep"}, {"k": "no"}, {}, "deep", [1]]),
                                        "peer": st.sampled_from(["p1", "bad", 7])}),
    st.sampled_from(["text", 3, 2.5, True, None, ["k"], []]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=st.lists(st.tuples(_MAP_VALUES, _MAP_VALUES, _MAP_VALUES, _MAP_VALUES, st.booleans()), min_size=1, max_size=8),
       as_json=st.booleans())
def test_two_key_paths_agree(reqs, as_json):
    """Two-key paths (a map and a key below it) on the four roots, and maps indexed by a
    constant key (``identity.m["k"]``), with the map missing, not a map, without the key, or
    holding a value of any type: the reference's values, decisions, reasons and errors
    (``identity.m is a string, not a map``, ``context.tls.peer is missing``)."""
    engine = load_policy_set([_TWO_KEY_RULES], {"t": {"row": "row", "ok": "no", "bad": "row"}})
    raw = []
    for m, n, o, tls, present in reqs:
        identity = {"type": "w", "id": "x"}
        if present:
            identity["m"] = m
        raw.append({"identity": identity, "action": {"name": "r", "m": n}, "resource": {"type": "t", "m": o},
                    "context": {"tls": tls} if present else {}})
    if as_json:
        raw = [json.loads(json.dumps(r)) for r in raw]
    _check_all(engine, raw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(_BRANCH_KEYS, min_size=1, max_size=80, unique=True), probes=st.lists(_BRANCH_KEYS, max_size=12))
def test_lookup_tables_find_every_case(keys, probes):
    """A data table tabulated per key (compile/tabulate.py; the compiled evaluator keeps its
    cases in a C table): 1 to 80 keys (one-, two- and four-byte strs, the empty str, keys
    sharing places), each looked up as an equal copy, and values not among them, of other
    types or missing: the reference's decisions, reasons and errors."""
    table = {k: {"level": i % 3, "name": f"n{i}"} for i, k in enumerate(keys)}
    rules = ["policy p {",
             '  permit a when data.t[identity.key].level > 0 reason "{data.t[identity.key].name}"',
             '  forbid b when data.t[identity.key].level == 2 and identity.id == "x" reason "b {identity.key}"',
             "}"]
    engine = load_policy_set(["\n".join(rules) + "\n"], {"t": table})
    lookups = [n for n in _nodes(engine.program) if n[0] == ir.LOOKUP]
    assert lookups and all(len(n[2]) == len(keys) for n in lookups)
    reqs = [{"identity": {"type": "w", "id": who, "key": _copy(k)}, "action": "r", "resource": {"type": "t"},
             "context": {}} for k in keys + probes for who in ("x", "y")]
    reqs += [{"identity": {"type": "w", "id": "x", **extra}, "action": "r", "resource": {"type": "t"}, "context": {}}
             for extra in ({}, {"key": 1}, {"key": ["a"]}, {"key": None})]
    _check_all(engine, reqs)

