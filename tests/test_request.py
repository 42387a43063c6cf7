"""Requests (SPEC §3): the shape a request must have, the exact ``RequestError`` (path and
message) for every way it can be wrong, JSON values with integers and floats kept apart, and
batches (``decide_many``)."""

from __future__ import annotations

import copy
import datetime
import math
from collections import OrderedDict

import pytest

import pdp
from conftest import request
from pdp.request import parse_request

POLICIES = """\
policy p {
  permit typed
    when identity.type == "workload" and action.name == "read" and resource.type == "doc"
    reason "{identity.id} may {action.name} {resource.type}"
}
"""


@pytest.fixture
def engine(make_engine):
    return make_engine(POLICIES)


def request_error(engine, req) -> pdp.RequestError:
    with pytest.raises(pdp.RequestError) as info:
        engine.decide(req)
    return info.value


def assert_rejected(engine, req, path: str, message: str) -> None:
    err = request_error(engine, req)
    assert (err.path, err.message) == (path, message)
    assert str(err) == (f"{path}: {message}" if path else message)
    # explain validates the same way.
    with pytest.raises(pdp.RequestError) as info:
        engine.explain(req)
    assert (info.value.path, info.value.message) == (path, message)


# ---- the valid shape ---------------------------------------------------------------------


def test_the_spec_example_request_is_valid(make_engine):
    engine = make_engine("policy p {\n  permit r when true\n}\n")
    spec_request = {
        "identity": {"type": "workload", "id": "billing", "spiffe_id": "spiffe://acme.prod/ns/billing/sa/api",
                     "env": "prod", "scopes": ["payments:write"], "credential": {"issued_at": "2026-11-27T10:00:00Z"}},
        "action": {"name": "charge"},
        "resource": {"type": "payment", "id": "pay-42", "env": "prod"},
        "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3"},
    }
    assert engine.decide(spec_request).allowed


def test_a_minimal_request_has_the_four_required_strings(engine):
    decision = engine.decide({"identity": {"type": "workload", "id": "svc"}, "action": {"name": "read"},
                              "resource": {"type": "doc"}})
    assert decision.allowed
    assert decision.reasons[0].message == "svc may read doc"


def test_resource_id_is_not_required(engine):
    assert engine.decide({"identity": {"type": "workload", "id": "a"}, "action": "read", "resource": {"type": "doc"}}).allowed


def test_action_may_be_a_bare_string(engine):
    decision = engine.decide({"identity": {"type": "workload", "id": "svc"}, "action": "read", "resource": {"type": "doc"}})
    assert decision.allowed and decision.reasons[0].message == "svc may read doc"
    assert parse_request(request(action="read")).attrs["action"] == {"name": "read"}


def test_context_is_optional_and_null_context_is_absent():
    assert parse_request(request()).attrs["context"] == {}
    assert parse_request({**request(), "context": None}).attrs["context"] == {}


def test_everything_else_inside_the_four_objects_is_an_attribute(make_engine):
    engine = make_engine('policy p {\n  permit r when identity.team == "billing" and action.verb == "POST"\n'
                         '    and resource.tags contains "pci" and context.region == "eu"\n}\n')
    req = request(identity={"team": "billing"}, action={"name": "charge", "verb": "POST"},
                  resource={"tags": ["pci"]}, context={"region": "eu"})
    assert engine.decide(req).allowed


# ---- required fields ---------------------------------------------------------------------


@pytest.mark.parametrize("root", ["identity", "action", "resource"])
def test_a_missing_root_is_required(engine, root):
    req = request()
    del req[root]
    assert_rejected(engine, req, root, "is required")


@pytest.mark.parametrize("root", ["identity", "action", "resource"])
def test_a_null_root_is_absent_so_required(engine, root):
    assert_rejected(engine, {**request(), root: None}, root, "is required")


@pytest.mark.parametrize("root, value, got", [
    ("identity", "svc", "a string"),
    ("identity", ["svc"], "a list"),
    ("resource", 42, "a number"),
    ("resource", True, "a boolean"),
    ("context", "now", "a string"),
    ("context", [], "a list"),
    ("action", 3.5, "a number"),
    ("action", ["read"], "a list"),
])
def test_a_root_must_be_an_object(engine, root, value, got):
    assert_rejected(engine, {**request(), root: value}, root, f"must be an object, got {got}")


@pytest.mark.parametrize("root, field", [("identity", "type"), ("identity", "id"), ("action", "name"),
                                         ("resource", "type")])
def test_required_strings_missing(engine, root, field):
    req = request(action={"name": "read"})
    del req[root][field]
    assert_rejected(engine, req, f"{root}.{field}", "a non-empty string is required, got missing")


@pytest.mark.parametrize("root, field", [("identity", "type"), ("identity", "id"), ("action", "name"),
                                         ("resource", "type")])
def test_required_strings_null_counts_as_missing(engine, root, field):
    req = request(action={"name": "read"})
    req[root][field] = None
    assert_rejected(engine, req, f"{root}.{field}", "a non-empty string is required, got missing")


@pytest.mark.parametrize("root, field", [("identity", "type"), ("identity", "id"), ("action", "name"),
                                         ("resource", "type")])
def test_required_strings_empty(engine, root, field):
    req = request(action={"name": "read"})
    req[root][field] = ""
    assert_rejected(engine, req, f"{root}.{field}", "a non-empty string is required, got empty")


@pytest.mark.parametrize("value, got", [(7, "a number"), (1.5, "a number"), (True, "a boolean"),
                                        (["workload"], "a list"), ({"kind": "workload"}, "an object")])
def test_identity_type_must_be_a_string(engine, value, got):
    assert_rejected(engine, request(identity={"type": value}), "identity.type",
                    f"a non-empty string is required, got {got}")


def test_a_bare_empty_action_string_is_an_empty_name(engine):
    assert_rejected(engine, request(action=""), "action.name", "a non-empty string is required, got empty")


def test_a_blank_but_non_empty_string_is_accepted(engine):
    # Non-empty is the rule; " " is a string someone chose (the policy decides what it means).
    assert not engine.decide(request(identity={"id": " "}, action=" ")).allowed


def test_the_first_problem_in_a_fixed_order_is_reported(engine):
    # Unknown keys first, then the roots in order identity, action, resource, context, then the
    # required fields.
    assert request_error(engine, {"identity": 1, "subject": {}}).path == "subject"
    assert request_error(engine, {"identity": 1, "action": 2}).path == "identity"
    assert request_error(engine, {"identity": {}, "action": 2, "resource": {}}).path == "action"
    assert request_error(engine, {"identity": {}, "action": {}, "resource": {}}).path == "identity.type"
    assert request_error(engine, {"identity": {"type": "w", "id": "i"}, "action": {}, "resource": {}}).path == "action.name"
    assert request_error(engine, {**request(), "context": 1}).path == "context"


# ---- unknown top-level keys --------------------------------------------------------------


@pytest.mark.parametrize("key", ["subject", "Identity", "contexts", "ctx", "", "resource "])
def test_an_unknown_top_level_key_is_an_error(engine, key):
    assert_rejected(engine, {**request(), key: {}}, key,
                    "unknown top-level key; a request has identity, action, resource and context")


def test_an_unknown_top_level_key_is_an_error_even_when_null(engine):
    # null means absent for values, but a misspelt key is still a typo worth reporting.
    assert_rejected(engine, {**request(), "contxt": None}, "contxt",
                    "unknown top-level key; a request has identity, action, resource and context")


def test_a_non_string_top_level_key_is_an_unknown_key(engine):
    assert_rejected(engine, {**request(), 1: {}}, "1",
                    "unknown top-level key; a request has identity, action, resource and context")


# ---- not a request at all ----------------------------------------------------------------


@pytest.mark.parametrize("value, got", [([], "a list"), ("{}", "a string"), (None, "null"), (3, "a number"),
                                        (True, "a boolean"), ((), "a list"), (b"{}", "bytes")])
def test_a_request_must_be_an_object(engine, value, got):
    assert_rejected(engine, value, "", f"a request must be a JSON object, got {got}")


def test_an_empty_object_misses_identity(engine):
    assert_rejected(engine, {}, "identity", "is required")


# ---- JSON values -------------------------------------------------------------------------


def test_null_attributes_are_absent(make_engine):
    engine = make_engine(
        "policy p {\n"
        "  permit no_team when not defined(identity.team)\n"
        "  forbid team_read when identity.team == \"x\"\n"
        "}\n")
    req = request(identity={"team": None}, resource={"owner": None}, context={"time": None})
    decision = engine.decide(req)
    # A forbid reading a missing attribute fails closed: team is absent, not null.
    assert decision.decision == "DENY"
    assert [r.rule for r in decision.reasons] == ["p.team_read"]
    assert decision.errors[0].message == "identity.team is missing"
    attrs = parse_request(req).attrs
    assert "team" not in attrs["identity"] and "owner" not in attrs["resource"] and attrs["context"] == {}


def test_null_is_absent_in_nested_maps_too():
    attrs = parse_request(request(identity={"claims": {"sub": "a", "aud": None, "x": {"y": None}}})).attrs
    assert attrs["identity"]["claims"] == {"sub": "a", "x": {}}


def test_null_inside_a_list_is_an_error(engine):
    assert_rejected(engine, request(identity={"scopes": ["a", None]}), "identity.scopes[1]",
                    "null is not allowed inside a list")


def test_the_callers_request_is_not_changed(engine):
    req = request(identity={"team": None, "scopes": ("a", "b")}, action="read")
    before = copy.deepcopy(req)
    engine.decide(req)
    engine.explain(req)
    engine.decide_many([req, req])
    assert req == before


def test_integers_and_floats_are_kept_apart():
    attrs = parse_request(request(resource={"i": 1, "f": 1.0, "big": 2**53 + 1, "neg": -0.0,
                                            "list": [1, 1.0]})).attrs["resource"]
    assert type(attrs["i"]) is int and type(attrs["f"]) is float
    assert attrs["big"] == 2**53 + 1 and type(attrs["big"]) is int
    assert [type(v) for v in attrs["list"]] == [int, float]
    assert math.copysign(1, attrs["neg"]) == -1


def test_booleans_stay_booleans_not_integers():
    attrs = parse_request(request(resource={"t": True, "one": 1})).attrs["resource"]
    assert attrs["t"] is True and attrs["one"] == 1 and type(attrs["one"]) is int


@pytest.mark.parametrize("value", [2**63 - 1, 2**63, 2**64 - 1, -(2**63), 0, -1])
def test_integers_are_exact_to_64_bits(value):
    assert parse_request(request(resource={"n": value})).attrs["resource"]["n"] == value


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30, -(10**30)])
def test_integers_beyond_64_bits_are_rejected(engine, value):
    assert_rejected(engine, request(resource={"n": value}), "resource.n", "integer does not fit in 64 bits")


def test_integer_comparisons_are_exact_in_decisions(make_engine):
    engine = make_engine(
        "policy p {\n"
        "  permit same when resource.a == resource.b\n"
        "  permit less when resource.a < resource.b\n"
        "  permit limit when resource.a == 9223372036854775807\n"
        "}\n")

    def applied(a, b):
        return [r.rule for r in engine.decide(request(resource={"a": a, "b": b})).reasons]

    # Neighbours that one float cannot tell apart.
    assert applied(2**64 - 2, 2**64 - 1) == ["p.less"]
    assert applied(2**63, 2**63 + 1) == ["p.less"]
    assert applied(2**53 + 1, 2**53 + 1) == ["p.same"]
    assert applied(2**63 - 1, 2**63 - 1) == ["p.same", "p.limit"]
    assert applied(2**63 - 2, 0) == ["default"]


def test_large_integers_render_exactly_in_reasons(make_engine):
    engine = make_engine('policy p {\n  permit r reason "{resource.n} {resource.f} {resource.m}"\n}\n')
    decision = engine.decide(request(resource={"n": 2**64 - 1, "f": 2.5, "m": -(2**63)}))
    assert decision.reasons[0].message == "18446744073709551615 2.5 -9223372036854775808"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_rejected(engine, value):
    assert_rejected(engine, request(context={"score": value}), "context.score",
                    "numbers must be finite (no NaN or infinity)")


def test_nan_is_rejected_inside_lists_and_nested_maps(engine):
    assert_rejected(engine, request(identity={"a": {"b": [1.0, float("nan")]}}), "identity.a.b[1]",
                    "numbers must be finite (no NaN or infinity)")


@pytest.mark.parametrize("key, shown", [(1, "int 1"), (None, "NoneType None"), (("a",), "tuple ('a',)"),
                                        (b"k", "bytes b'k'"), (1.5, "float 1.5")])
def test_map_keys_must_be_strings(engine, key, shown):
    assert_rejected(engine, request(identity={key: "x"}), "identity", f"map keys must be strings, got {shown}")


def test_non_string_keys_are_found_in_nested_maps(engine):
    assert_rejected(engine, request(resource={"labels": {"ok": 1, 2: "two"}}), "resource.labels",
                    "map keys must be strings, got int 2")


@pytest.mark.parametrize("value, kind", [
    ({1, 2}, "set"), (b"bytes", "bytes"), (object(), "object"), (datetime.datetime(2026, 1, 1), "datetime"),
    (1 + 2j, "complex"), (frozenset(), "frozenset"), (bytearray(b"x"), "bytearray"),
])
def test_values_that_are_not_json_are_rejected(engine, value, kind):
    assert_rejected(engine, request(context={"x": value}), "context.x", f"{kind} is not a JSON value")


def test_tuples_count_as_lists_and_dict_subclasses_as_maps(engine):
    attrs = parse_request(request(identity={"scopes": ("a", "b"), "claims": OrderedDict(sub="s")})).attrs
    assert attrs["identity"]["scopes"] == ["a", "b"] and type(attrs["identity"]["scopes"]) is list
    assert attrs["identity"]["claims"] == {"sub": "s"}


def test_deeply_nested_values_are_refused_not_a_crash(engine):
    value: object = "leaf"
    for _ in range(10_000):
        value = {"a": value}
    err = request_error(engine, request(context={"deep": value}))
    assert err.path.startswith("context.deep.a.a")
    assert err.message.startswith("nested deeper than")
    listy: object = 1
    for _ in range(10_000):
        listy = [listy]
    err = request_error(engine, request(context={"deep": listy}))
    assert err.path.startswith("context.deep[0][0]")


def test_moderately_nested_values_are_fine(engine):
    value: object = "leaf"
    for _ in range(20):
        value = {"a": value}
    assert engine.decide(request(context={"deep": value})).allowed


def test_lone_surrogates_are_rejected_and_real_characters_are_not(engine):
    assert_rejected(engine, request(identity={"name": "a\ud800b"}), "identity.name",
                    "string holds a lone surrogate U+D800, which is not a character")
    assert_rejected(engine, request(identity={"\udc00": 1}), "identity",
                    "string holds a lone surrogate U+DC00, which is not a character")
    decision = engine.decide(request(identity={"id": "żółw 🐢", "name": "\u00e9"}))
    assert decision.reasons[0].message == "żółw 🐢 may read doc"


def test_an_unknown_top_level_key_with_a_lone_surrogate_is_shown_escaped(engine):
    err = request_error(engine, {**request(), "\ud800x": 1})
    assert err.path == "\\ud800x"
    str(err).encode("utf-8")  # printable


# ---- context.time is evaluation, not validation ------------------------------------------


def test_a_malformed_context_time_is_an_evaluation_error_not_a_request_error(make_engine):
    engine = make_engine(
        "policy p {\n"
        "  permit timed when now > 0\n"
        "  permit untimed when true\n"
        "}\n")
    for bad in ("yesterday", "2026-13-01T00:00:00Z", True, ["2026-11-27T10:00:00Z"], {"t": 1}):
        decision = engine.decide(request(context={"time": bad}))
        assert decision.allowed
        assert [r.rule for r in decision.reasons] == ["p.untimed"]
        assert [e.rule for e in decision.errors] == ["p.timed"]
        assert decision.errors[0].message.startswith("context.time: ")


def test_context_time_may_be_rfc3339_or_epoch_seconds(make_engine):
    engine = make_engine("policy p {\n  permit r when now == 1764237600\n}\n")
    assert engine.decide(request(context={"time": "2025-11-27T10:00:00Z"})).allowed
    assert engine.decide(request(context={"time": 1764237600})).allowed
    assert engine.decide(request(context={"time": 1764237600.0})).allowed


# ---- batches -----------------------------------------------------------------------------


def test_decide_many_keeps_the_order(engine):
    requests = [request(), request(action="write"), request(identity={"id": "x"}), request(resource={"type": "img"})]
    decisions = engine.decide_many(requests)
    assert [d.decision for d in decisions] == ["ALLOW", "DENY", "ALLOW", "DENY"]
    assert decisions[2].reasons[0].message == "x may read doc"
    assert [d.to_dict() | {"eval_ns": 0} for d in decisions] == [
        engine.decide(r).to_dict() | {"eval_ns": 0} for r in requests]


def test_decide_many_of_nothing_is_nothing(engine):
    assert engine.decide_many([]) == []


def test_decide_many_accepts_any_iterable(engine):
    decisions = engine.decide_many(request(identity={"id": f"s{i}"}) for i in range(3))
    assert [d.reasons[0].message for d in decisions] == ["s0 may read doc", "s1 may read doc", "s2 may read doc"]


def test_decide_many_names_the_index_of_the_first_malformed_request(engine):
    bad = request()
    bad["identity"]["type"] = ""
    with pytest.raises(pdp.RequestError) as info:
        engine.decide_many([request(), request(), bad, {"subject": 1}])
    err = info.value
    assert (err.path, err.message) == ("[2].identity.type", "a non-empty string is required, got empty")
    assert str(err) == "[2].identity.type: a non-empty string is required, got empty"


@pytest.mark.parametrize("item, path, message", [
    ([], "[1]", "a request must be a JSON object, got a list"),
    (None, "[1]", "a request must be a JSON object, got null"),
    ({"subject": {}}, "[1].subject", "unknown top-level key; a request has identity, action, resource and context"),
    ({**request(), "context": {"x": float("nan")}}, "[1].context.x", "numbers must be finite (no NaN or infinity)"),
    (request(identity={"scopes": [None]}), "[1].identity.scopes[0]", "null is not allowed inside a list"),
])
def test_decide_many_error_paths(engine, item, path, message):
    with pytest.raises(pdp.RequestError) as info:
        engine.decide_many([request(), item, request()])
    assert (info.value.path, info.value.message) == (path, message)


def test_request_error_is_a_value_error_and_a_pdp_error():
    err = pdp.RequestError("identity.type", "is required")
    assert isinstance(err, ValueError) and isinstance(err, Exception)
    assert str(err) == "identity.type: is required"
    assert str(pdp.RequestError("", "a request must be a JSON object, got a list")) == \
        "a request must be a JSON object, got a list"
