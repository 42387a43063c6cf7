"""Every limit on what pdp reads, each at its boundary and one past it, with its clear error,
on every backend (README "Limits"; SECURITY.md). Limits tested elsewhere are listed here and
not repeated: the policy file size, 10,000-deep nesting and parentheses, 5,000-term chains
(tests/test_bad_input.py), YAML depth and alias expansion (tests/test_yamlio.py), and the
server's message size, attribute count and batch size (tests/test_server.py::test_limits).
"""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pdp
from conftest import request
from pdp import glob, loader, runtime, values
from pdp.glob import MAX_GLOB_CHARS
from pdp.decision import MAX_REASON_CHARS, REASON_CUT
from pdp.request import MAX_DEPTH, MAX_LIST_ITEMS, MAX_VALUES
from pdp.syntax.parser import MAX_NESTING

BACKENDS = [*sorted(runtime.EVALUATORS), "reference"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    (root / "p.pdl").write_text('policy p {\n  permit r when identity.id == "svc"\n}\n', encoding="utf-8")
    return {b: pdp.load(root, backend=b) for b in BACKENDS}


def outcome(engine, raw, many: bool = False):
    """The decision, or ("RequestError", path, message)."""
    try:
        return engine.decide_many([raw])[0].decision if many else engine.decide(raw).decision
    except pdp.RequestError as err:
        return ("RequestError", err.path, err.message)


def refused(engine, raw) -> pdp.RequestError:
    with pytest.raises(pdp.RequestError) as info:
        engine.decide(raw)
    # The batch form names the same path behind the index.
    with pytest.raises(pdp.RequestError) as batch:
        engine.decide_many([request(), raw])
    assert (batch.value.path, batch.value.message) == (f"[1].{info.value.path}", info.value.message)
    return info.value


# ---- policy files ----------------------------------------------------------------------------


def test_a_data_file_over_its_size_limit_is_refused(tmp_path, monkeypatch):
    (tmp_path / "p.pdl").write_text("policy p {\n  permit r when data.big.x == 1\n}\n", encoding="utf-8")
    content = '{"x": 1, "pad": "' + "y" * 2000 + '"}'
    (tmp_path / "big.data.json").write_text(content, encoding="utf-8")
    monkeypatch.setattr(loader, "MAX_DATA_BYTES", 1000)
    with pytest.raises(pdp.PolicyError) as info:
        pdp.load(tmp_path)
    assert str(info.value) == f"{info.value.file}: file is {len(content)} bytes; the limit is 1000 bytes"
    monkeypatch.setattr(loader, "MAX_DATA_BYTES", len(content))
    assert pdp.load(tmp_path).decide(request()).allowed


def test_the_file_limits_are_the_documented_ones():
    assert loader.MAX_POLICY_BYTES == 4 * 1024 * 1024 and loader.MAX_DATA_BYTES == 64 * 1024 * 1024
    assert MAX_NESTING == 100 and MAX_DEPTH == 32 and MAX_VALUES == 100_000 and MAX_LIST_ITEMS == 10_000
    assert MAX_REASON_CHARS == 4096 and MAX_GLOB_CHARS == 1024


NESTINGS = {
    "not": lambda n: "not " * n + "true",
    "calls": lambda n: "lower(" * n + "identity.id" + ")" * n + ' == "svc"',
    "attributes": lambda n: "identity" + ".a" * n + " == 1",
    "indexes": lambda n: "identity" + '["a"]' * n + " == 1",
    "lists": lambda n: "[" * n + "1" + "]" * n + " == 1",
    "defined": lambda n: "defined(" * n + "identity.id" + ")" * n,
}


def _deepest(tmp_path, expr) -> int:
    """The most levels of ``expr`` that still load (the file's own levels count too)."""
    low, high = 1, MAX_NESTING + 1  # loads at ``low``; not at ``high``
    while high - low > 1:
        mid = (low + high) // 2
        (tmp_path / "p.pdl").write_text(f"policy p {{\n  permit r when {expr(mid)}\n}}\n", encoding="utf-8")
        try:
            pdp.load(tmp_path, backend="reference")
            low = mid
        except pdp.PolicyError as err:
            assert err.code == "pdl_nesting", err
            high = mid
    return low


@pytest.mark.parametrize("form", list(NESTINGS))
def test_expressions_nested_to_the_limit_load_and_decide_on_every_backend(tmp_path, form):
    """At the deepest nesting that loads every backend evaluates (no recursion limit is
    near), also on a thread (gRPC serves on threads) and through explain; one level more is
    a load error."""
    expr = NESTINGS[form]
    deepest = _deepest(tmp_path, expr)
    assert deepest >= MAX_NESTING // 4  # the limit leaves room for real expressions
    (tmp_path / "p.pdl").write_text(f"policy p {{\n  permit r when {expr(deepest)}\n}}\n", encoding="utf-8")
    engines = {b: pdp.load(tmp_path, backend=b) for b in BACKENDS}
    raw = request(identity={"id": "SVC", "a": {"a": 1}})
    decisions = {b: e.decide(raw) for b, e in engines.items()}
    assert len(set(decisions.values())) == 1, decisions
    on_thread: dict = {}
    worker = threading.Thread(target=lambda: on_thread.update({b: e.decide(raw) for b, e in engines.items()}))
    worker.start()
    worker.join(30)
    assert on_thread == decisions
    engines["reference"].explain(raw).render()


@pytest.mark.parametrize("place", ["call", "list", "reason", "let", "index"])
def test_deep_parentheses_anywhere_are_no_nesting(tmp_path, place):
    deep = 5_000

    def wrap(e: str) -> str:
        return "(" * deep + e + ")" * deep

    text = {
        "call": f"policy p {{\n  permit r when lower({wrap('identity.id')}) == \"svc\"\n}}\n",
        "list": f"policy p {{\n  permit r when identity.id in [{wrap(chr(34) + 'svc' + chr(34))}]\n}}\n",
        "reason": f"policy p {{\n  permit r reason \"{{{wrap('identity.id')}}}\"\n}}\n",
        "let": f"policy p {{\n  let x = {wrap('identity.id')}\n  permit r when x == \"svc\"\n}}\n",
        "index": f"policy p {{\n  permit r when identity[{wrap(chr(34) + 'id' + chr(34))}] == \"svc\"\n}}\n",
    }[place]
    (tmp_path / "p.pdl").write_text(text, encoding="utf-8")
    for backend in BACKENDS:
        assert pdp.load(tmp_path, backend=backend).decide(request()).allowed, backend


# ---- requests --------------------------------------------------------------------------------


def nest(levels: int, leaf: object = "x", kind: str = "map") -> object:
    value = leaf
    for _ in range(levels):
        value = {"a": value} if kind == "map" else [value]
    return value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["map", "list"])
def test_request_depth(engines, backend, kind):
    engine = engines[backend]
    # context is level 1, so MAX_DEPTH - 1 more levels fill the limit.
    assert engine.decide(request(context={"d": nest(MAX_DEPTH - 1, kind=kind)})).allowed
    err = refused(engine, request(context={"d": nest(MAX_DEPTH, kind=kind)}))
    assert err.message == f"nested deeper than {MAX_DEPTH} levels"
    assert err.path == "context.d" + (".a" if kind == "map" else "[0]") * (MAX_DEPTH - 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_list_length(engines, backend):
    engine = engines[backend]
    assert engine.decide(request(context={"l": ["s"] * MAX_LIST_ITEMS})).allowed
    err = refused(engine, request(context={"l": ["s"] * (MAX_LIST_ITEMS + 1)}))
    assert str(err) == f"context.l: a list of {MAX_LIST_ITEMS + 1} items; the limit is {MAX_LIST_ITEMS} per list"
    # A tuple is a list; a list deep inside is checked too.
    err = refused(engine, request(identity={"deep": {"x": [tuple(range(MAX_LIST_ITEMS + 1))]}}))
    assert err.path == "identity.deep.x[0]"


# identity {type, id}, action {name} and resource {type, id} of conftest.request: 5 values.
BASE_VALUES = 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_count(engines, backend):
    engine = engines[backend]
    # context holds "m", and "m" holds the rest: exactly MAX_VALUES in all.
    fill = MAX_VALUES - BASE_VALUES - 1
    assert engine.decide(request(context={"m": {str(i): i for i in range(fill)}})).allowed
    err = refused(engine, request(context={"m": {str(i): i for i in range(fill + 1)}}))
    assert str(err) == (f"context.m: the request carries more than {MAX_VALUES} values "
                        "(items of maps and lists, at any depth)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_count_adds_up_over_every_root_and_level(engines, backend):
    engine = engines[backend]
    lists = MAX_VALUES // MAX_LIST_ITEMS  # this many full lists pass the limit with the rest
    raw = request(identity={f"l{i}": ["s"] * MAX_LIST_ITEMS for i in range(lists - 1)},
                  context={"last": ["s"] * MAX_LIST_ITEMS})
    err = refused(engine, raw)
    assert err.path == "context.last"
    # Nulls in maps count (they are values the caller sent), though they are dropped.
    fill = MAX_VALUES - BASE_VALUES - 1
    nulls = request(context={"m": {str(i): (None if i % 2 else i) for i in range(fill + 1)}})
    assert refused(engine, nulls).path == "context.m"


# Request shapes near every limit at once: the compiled fast path may only be stricter than
# parse_request, falling back to it, so every backend must answer alike.
_sizes = st.sampled_from([0, 1, 2, MAX_LIST_ITEMS - 1, MAX_LIST_ITEMS, MAX_LIST_ITEMS, MAX_LIST_ITEMS, 5_000, 5_000,
                          MAX_LIST_ITEMS + 1])
_shape = st.fixed_dictionaries({
    "lists": st.lists(_sizes, max_size=11),
    "map": st.sampled_from([0, 10, MAX_VALUES - 40_000, MAX_VALUES - 100, MAX_VALUES]),
    "depth": st.sampled_from([0, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH]),
    "null": st.sampled_from([None, "map", "list", "first"]),
    "tuple": st.booleans(),
    "root": st.sampled_from(["identity", "resource", "context"]),
})


def _build(shape: dict) -> dict:
    attrs: dict = {"l-null": [1, None]} if shape["null"] == "first" else {}
    attrs.update({f"l{i}": (tuple if shape["tuple"] and i == 0 else list)(range(n))
                   for i, n in enumerate(shape["lists"])})
    attrs["m"] = dict.fromkeys(map(str, range(shape["map"])), 1)
    attrs["deep"] = nest(shape["depth"])
    if shape["null"] == "map":
        attrs["gone"] = None
    elif shape["null"] == "list":
        attrs["l-null"] = [1, None]
    return request(**{shape["root"]: attrs}) if shape["root"] != "context" else request(context=attrs)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_shape, st.booleans())
def test_every_backend_draws_the_same_line(engines, shape, many):
    raw = _build(shape)
    outcomes = {b: outcome(e, raw, many) for b, e in engines.items()}
    event(outcomes["reference"][2].split(";")[0] if isinstance(outcomes["reference"], tuple) else "decided")
    assert len(set(map(repr, outcomes.values()))) == 1, outcomes


# ---- reasons ---------------------------------------------------------------------------------


def reason_engines(tmp_path, reason: str) -> dict:
    (tmp_path / "p.pdl").write_text(f'policy p {{\n  permit r reason "{reason}"\n}}\n', encoding="utf-8")
    return {b: pdp.load(tmp_path, backend=b) for b in BACKENDS}


def messages(engines: dict, raw: dict) -> str:
    """The reason message, the same from every backend, ``decide_many`` and ``explain``."""
    got = {b: (e.decide(raw).reasons[0].message, e.decide_many([raw])[0].reasons[0].message)
           for b, e in engines.items()}
    assert len(set(got.values())) == 1, {b: [len(m) for m in ms] for b, ms in got.items()}
    message = got["reference"][0]
    assert engines["reference"].explain(raw).to_dict()["rules"][0]["message"] == message
    return message


def cut(text: str) -> str:
    return text[:MAX_REASON_CHARS - len(REASON_CUT)] + REASON_CUT


def test_a_reason_is_cut_at_the_limit_on_every_backend(tmp_path):
    engines = reason_engines(tmp_path, "id={identity.blob}")
    fits = "a" * (MAX_REASON_CHARS - 3)
    assert messages(engines, request(identity={"blob": fits})) == "id=" + fits
    over = "a" * (MAX_REASON_CHARS - 2)
    assert messages(engines, request(identity={"blob": over})) == cut("id=" + over)
    huge = "b" * 1_000_000
    message = messages(engines, request(identity={"blob": huge}))
    assert len(message) == MAX_REASON_CHARS and message == cut("id=" + huge)


def test_a_rendered_list_or_map_is_cut_too(tmp_path):
    engines = reason_engines(tmp_path, "{context.items} and {context.map}")
    items = [f"item-{i}" for i in range(MAX_LIST_ITEMS)]
    raw = request(context={"items": items, "map": {"k": 1}})
    assert messages(engines, raw) == cut(json.dumps(items, separators=(",", ":")))  # cut inside the list


def test_a_long_static_reason_is_cut_alike(tmp_path):
    engines = reason_engines(tmp_path, "s" * (MAX_REASON_CHARS + 10))
    assert messages(engines, request()) == cut("s" * (MAX_REASON_CHARS + 10))


@pytest.mark.parametrize("backend", BACKENDS)
def test_parts_past_the_cut_are_not_rendered(tmp_path, monkeypatch, backend):
    """A thousand interpolations of a large value render only until the message is full."""
    module = {"compiled": "pdp.runtime._ceval", "python": "pdp.runtime.pyeval", "reference": "pdp.reference"}[backend]
    engine = reason_engines(tmp_path, "{context.items}" * 1000)[backend]
    calls = []
    real = values.render
    monkeypatch.setattr(f"{module}.render", lambda v: calls.append(1) or real(v))
    # Maps: every evaluator hands them to values.render (the compiled one writes lists of
    # plain strings itself), so the calls can be counted.
    message = engine.decide(request(context={"items": [{"k": "x" * 100}] * 100})).reasons[0].message
    assert len(message) == MAX_REASON_CHARS and len(calls) == 1


# ---- globs, and what request data may leave in memory ---------------------------------------


def test_a_literal_glob_over_the_limit_is_a_load_error(tmp_path):
    long = "a/" + "?" * (MAX_GLOB_CHARS - 2)
    (tmp_path / "p.pdl").write_text(f'policy p {{\n  permit r when resource.path matches "{long}"\n}}\n')
    assert pdp.load(tmp_path).decide(request(resource={"path": "a/" + "x" * (MAX_GLOB_CHARS - 2)})).allowed
    (tmp_path / "p.pdl").write_text(f'policy p {{\n  permit r when resource.path matches "{long}?"\n}}\n')
    with pytest.raises(pdp.PolicyError) as info:
        pdp.load(tmp_path)
    assert (info.value.line, info.value.column) == (2, len("  permit r when resource.path matches ") + 1)
    assert info.value.message == f"a glob may be at most {MAX_GLOB_CHARS} characters, got {MAX_GLOB_CHARS + 1}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_data_does_not_fill_the_caches(tmp_path, backend):
    """Globs and times from requests are cached only when short, so a stream of large
    distinct ones cannot grow memory (a cached compiled glob takes ~250 bytes a character)."""
    (tmp_path / "p.pdl").write_text("policy p {\n  permit r when resource.path matches identity.glob"
                                    " and time(context.t) > 0\n}\n", encoding="utf-8")
    engine = pdp.load(tmp_path, backend=backend)
    globs, times = glob.compile_glob.cache_info().currsize, values._parse_rfc3339.cache_info().currsize
    for i in range(50):
        raw = request(identity={"glob": f"*{i}?" + "x" * 500}, resource={"path": f"a{i}b" + "x" * 500},
                      context={"t": f"2026-01-01T00:00:00.{i:04d}" + "0" * 1000 + "Z"})
        assert engine.decide(raw).allowed
    assert glob.compile_glob.cache_info().currsize == globs
    assert values._parse_rfc3339.cache_info().currsize == times
