"""pdp.wire and the generated pdp.v1 modules: requests and decisions on the gRPC wire.

Both request forms (the canonical Value tree and the MessagePack fast path) must carry every
SPEC §3 request exactly, integers apart from floats and exact to 64 bits, and reject what they
cannot carry with a RequestError naming the path. The generated code must match the proto.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import msgpack
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp import wire
from pdp.errors import RequestError
from pdp.v1 import decision_pb2 as pb
from pdp.v1 import decision_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
FORMS = ["value", "msgpack"]

SPEC_EXAMPLE = {
    "identity": {"type": "workload", "id": "billing", "spiffe_id": "spiffe://acme.prod/ns/billing/sa/api",
                 "env": "prod", "scopes": ["payments:write"], "credential": {"issued_at": "2026-11-27T10:00:00Z"}},
    "action": {"name": "charge"},
    "resource": {"type": "payment", "id": "pay-42", "env": "prod"},
    "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3"},
}


def same(a, b) -> bool:
    """Equal, and of the same types all the way down: 3 is not 3.0, True is not 1."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is float and math.copysign(1.0, a) != math.copysign(1.0, b):
        return False
    return a == b


def round_trip(request, form: str = "value", **kw) -> dict:
    """Client encode, bytes on the wire, server decode."""
    data = wire.request_to_pb(request, "rid", form=form).SerializeToString()
    return wire.pb_to_request(pb.CheckRequest.FromString(data), **kw)


def request_with(**identity_attrs) -> dict:
    return {"identity": {"type": "workload", "id": "x", **identity_attrs}, "action": {"name": "a"},
            "resource": {"type": "r"}}


def encode_error(request, form: str = "value") -> RequestError:
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(pb.CheckRequest.FromString(
            wire.request_to_pb(request, form=form).SerializeToString()))
    return info.value


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("form", FORMS)
def test_spec_example_round_trips(form):
    assert same(round_trip(SPEC_EXAMPLE, form), SPEC_EXAMPLE)


@pytest.mark.parametrize("form", FORMS)
def test_integers_and_floats_stay_apart_and_exact(form):
    values = {
        "int3": 3, "float3": 3.0, "neg_zero": -0.0, "half": -0.5, "tiny": 5e-324, "huge": 1.7976931348623157e308,
        "int64_max": 2**63 - 1, "int64_min": -(2**63), "uint64_max": 2**64 - 1, "above_int64": 2**63,
        "beyond_double": 2**53 + 1, "true": True, "false": False, "zero": 0, "one": 1,
        "mixed": [1, 1.0, True, 0, 0.0, False, 2**64 - 1],
    }
    back = round_trip(request_with(**values), form)
    assert same(back["identity"], {"type": "workload", "id": "x", **values})


def test_value_form_uses_uint_value_only_above_int64():
    msg = wire.request_to_pb(request_with(a=2**63 - 1, b=2**63, c=-1))
    assert msg.identity["a"].WhichOneof("kind") == "int_value"
    assert msg.identity["b"].WhichOneof("kind") == "uint_value"
    assert msg.identity["c"].WhichOneof("kind") == "int_value"


@pytest.mark.parametrize("form", FORMS)
def test_unicode_keys_and_values(form):
    attrs = {"naïve": "café ☕", "日本語": "東京", "emoji 🔐": "🚀" * 3, "": "empty key", "combining": "e\u0301",
             "nul": "a\x00b", "astral": "\U0001f600"}
    assert same(round_trip(request_with(**attrs), form)["identity"], {"type": "workload", "id": "x", **attrs})


@pytest.mark.parametrize("form", FORMS)
def test_nested_and_empty_lists_and_maps(form):
    attrs = {
        "empty_list": [], "empty_map": {}, "nested": {"a": {"b": {"c": [1, [2, [3, []]], {"d": {}}]}}},
        "list_of_maps": [{"k": 1}, {}, {"k": [True, "x", 2.5]}], "scopes": [f"s{i}" for i in range(20)],
    }
    assert same(round_trip(request_with(**attrs), form)["identity"], {"type": "workload", "id": "x", **attrs})


@pytest.mark.parametrize("form", FORMS)
def test_bare_string_action_becomes_name(form):
    request = {"identity": {"type": "w", "id": "i"}, "action": "charge", "resource": {"type": "r"}}
    assert round_trip(request, form)["action"] == {"name": "charge"}


def test_bare_string_action_travels_as_a_map_in_the_value_form():
    msg = wire.request_to_pb({"identity": {}, "action": "charge", "resource": {}})
    assert msg.action["name"].string_value == "charge"


@pytest.mark.parametrize("form", FORMS)
def test_nulls_are_absent_in_maps(form):
    request = {
        "identity": {"type": "w", "id": "i", "gone": None, "m": {"gone": None, "kept": 1, "deep": {"x": None}}},
        "action": {"name": "a", "gone": None},
        "resource": {"type": "r"},
        "context": None,
    }
    assert same(round_trip(request, form), {
        "identity": {"type": "w", "id": "i", "m": {"kept": 1, "deep": {}}},
        "action": {"name": "a"},
        "resource": {"type": "r"},
    })


@pytest.mark.parametrize("form", FORMS)
def test_missing_objects_decode_empty_and_context_only_when_present(form):
    # The engine, not the wire, reports the missing required attributes.
    assert same(round_trip({}, form), {"identity": {}, "action": {}, "resource": {}})
    assert same(round_trip({"identity": None, "context": {}}, form), {"identity": {}, "action": {}, "resource": {}})
    assert round_trip({"context": {"t": 1}}, form)["context"] == {"t": 1}


@pytest.mark.parametrize("form", FORMS)
def test_tuples_and_subclasses_encode_as_their_json_type(form):
    import collections
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    request = request_with(t=(1, "a"), o=collections.OrderedDict(b=2), e=Level.HIGH, n=Name("x"))
    back = round_trip(request, form)["identity"]
    assert same({k: back[k] for k in "toen"}, {"t": [1, "a"], "o": {"b": 2}, "e": 3, "n": "x"})


def test_request_id_is_carried():
    msg = wire.request_to_pb(SPEC_EXAMPLE, "req-42")
    assert pb.CheckRequest.FromString(msg.SerializeToString()).request_id == "req-42"
    assert wire.request_to_pb(SPEC_EXAMPLE, "req-43", form="msgpack").request_id == "req-43"


def test_msgpack_form_sets_only_the_bytes_field():
    msg = wire.request_to_pb(SPEC_EXAMPLE, form="msgpack")
    assert msg.request_msgpack and not (msg.identity or msg.action or msg.resource or msg.context)
    assert msgpack.unpackb(msg.request_msgpack) == SPEC_EXAMPLE


def test_unknown_form_is_a_programming_error():
    with pytest.raises(ValueError):
        wire.request_to_pb(SPEC_EXAMPLE, form="json")


def test_grpcurl_json_example_in_the_proto_decodes():
    """The protobuf-JSON example in decision.proto's header is valid and means what it says."""
    text = (REPO / "proto" / "pdp" / "v1" / "decision.proto").read_text(encoding="utf-8")
    block = text[text.index("//   {\n"):text.index("syntax = ")]
    example = "\n".join(line[2:] for line in block.splitlines() if line.startswith("//"))
    msg = json_format.Parse(example, pb.CheckRequest())
    assert msg.request_id == "req-1"
    assert same(wire.pb_to_request(msg), {
        "identity": {"type": "workload", "id": "billing", "scopes": ["payments:write"],
                     "credential": {"issued_at": "2026-11-27T10:00:00Z"}},
        "action": {"name": "charge"},
        "resource": {"type": "payment", "amount": 1250},
        "context": {"time": "2026-11-27T10:05:00Z"},
    })


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children.filter(lambda x: x is not None), max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


def drop_nulls(x):
    if type(x) is dict:
        return {k: drop_nulls(v) for k, v in x.items() if v is not None}
    if type(x) is list:
        return [drop_nulls(v) for v in x]
    return x


@settings(max_examples=200, deadline=None)
@given(attrs=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_any_json_attributes_round_trip_in_both_forms(attrs):
    request = {"identity": attrs, "action": {"name": "a"}, "resource": {"type": "r"}}
    expected = drop_nulls(attrs)
    for form in FORMS:
        assert same(round_trip(request, form)["identity"], expected)


# --------------------------------------------------------------------------------------------
# encoding errors name the path


BAD_VALUES = [
    # (request, path, words in the message)
    ({"identity": {"n": 2**64}}, "identity.n", "does not fit in 64 bits"),
    ({"identity": {"n": -(2**63) - 1}}, "identity.n", "does not fit in 64 bits"),
    ({"resource": {"l": [1, {"x": float("nan")}]}}, "resource.l[1].x", "finite"),
    ({"context": {"inf": float("inf")}}, "context.inf", "finite"),
    ({"context": {"headers": {"user-agent": -float("inf")}}}, 'context.headers["user-agent"]', "finite"),
    ({"identity": {"scopes": ["a", None]}}, "identity.scopes[1]", "null is not allowed inside a list"),
    ({"resource": {"m": {1: "x"}}}, "resource.m", "keys must be strings"),
    ({"identity": {"s": {1, 2}}}, "identity.s", "set is not a JSON value"),
    ({"identity": {"o": object()}}, "identity.o", "object is not a JSON value"),
    ({"identity": {"deep": json.loads("[" * 31 + "]" * 31)}}, None, None),  # 31 levels: fine
    ({"identity": {"deep": json.loads("[" * 32 + "]" * 32)}}, "identity.deep" + "[0]" * 31, "nested deeper than 31"),
    ({"identity": {"deep": json.loads('{"a":' * 32 + "1" + "}" * 32)}}, "identity.deep" + ".a" * 31, "nested deeper"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("request_, path, words", BAD_VALUES)
def test_bad_values_name_the_path_in_both_forms(form, request_, path, words):
    """The value form refuses on the client; the msgpack form on the server, with the same error."""
    if path is None:
        round_trip(request_, form)
        return
    err = encode_error(request_, form)
    assert err.path == path
    assert words in err.message
    assert str(err) == f"{path}: {err.message}"


@pytest.mark.parametrize("request_, path, words", [r for r in BAD_VALUES if r[1]])
def test_value_form_refuses_bad_values_before_sending(request_, path, words):
    with pytest.raises(RequestError) as info:
        wire.request_to_pb(request_)
    assert info.value.path == path and words in info.value.message


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("request_, path, words", [
    ([1, 2], "", "a request must be an object"),
    ({"identty": {}}, "identty", "unknown top-level key"),
    ({1: {}}, "1", "unknown top-level key"),
    ({"identity": "billing"}, "identity", "must be an object, not a string"),
    ({"action": 3}, "action", "must be an object or a string"),
    ({"context": [1]}, "context", "must be an object, not a list"),
])
def test_bad_top_level_is_refused_on_the_client(form, request_, path, words):
    with pytest.raises(RequestError) as info:
        wire.request_to_pb(request_, form=form)
    assert info.value.path == path and words in info.value.message


def test_lone_surrogates_are_refused_with_the_path():
    for attrs, path in [({"s": "a\ud800"}, "identity.s"), ({"\udfff": 1}, "identity"),
                        ({"l": ["ok", "\ud800"]}, "identity.l[1]")]:
        for form in FORMS:
            with pytest.raises(RequestError) as info:
                wire.request_to_pb({"identity": attrs}, form=form)
            assert info.value.path.startswith(path), (form, info.value)
            assert "Unicode" in info.value.message


def test_msgpack_form_refuses_what_msgpack_cannot_carry_with_the_path():
    with pytest.raises(RequestError) as info:
        wire.request_to_pb({"identity": {"a": {"b": [1, object()]}}}, form="msgpack")
    assert info.value.path == "identity.a.b[1]"


def test_request_id_must_be_a_string():
    with pytest.raises(RequestError) as info:
        wire.request_to_pb(SPEC_EXAMPLE, 42)
    assert info.value.path == "request_id"


# --------------------------------------------------------------------------------------------
# decoding errors name the path


def test_value_with_no_kind_names_the_path():
    msg = wire.request_to_pb(request_with(a=[1, {"b": 2}], c={"d": [0, 1, 2]}))
    msg.identity["a"].list_value.values[1].map_value.fields["b"].Clear()
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(msg)
    assert info.value.path == "identity.a[1].b"
    assert "no kind set" in info.value.message

    msg = wire.request_to_pb(request_with(c={"d": [0, 1, 2]}))
    msg.identity["c"].map_value.fields["d"].list_value.values[2].Clear()
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(msg)
    assert info.value.path == "identity.c.d[2]"

    msg = pb.CheckRequest()
    msg.context["time"].SetInParent()  # an empty Value
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(msg)
    assert info.value.path == "context.time"


def test_non_finite_float_on_the_wire_is_refused():
    msg = pb.CheckRequest()
    msg.resource["x"].list_value.values.add().float_value = float("nan")
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(msg)
    assert info.value.path == "resource.x[0]"


def test_both_forms_at_once_is_refused():
    msg = wire.request_to_pb(SPEC_EXAMPLE, form="msgpack")
    msg.identity["type"].string_value = "workload"
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(msg)
    assert info.value.path == "request_msgpack" and "not both" in info.value.message


@pytest.mark.parametrize("payload, words", [
    (b"\xc1", "not valid MessagePack"),
    (b"\x81\xa1a", "not valid MessagePack"),  # truncated
    (msgpack.packb({"identity": {}}) + b"\x00", "extra bytes"),
    (msgpack.packb([1, 2]), "must hold a map"),
    (msgpack.packb("identity"), "must hold a map"),
    (b"\x81\xa2\xff\xfe\x01", "not valid UTF-8"),
    (b"\x91" * 5000 + b"\x01", "nested too deeply"),
    (b"\x81\x91\x01\x02", "not valid MessagePack"),  # a list as a map key
])
def test_malformed_msgpack_is_refused(payload, words):
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(pb.CheckRequest(request_msgpack=payload))
    assert info.value.path == "request_msgpack"
    assert words in info.value.message


@pytest.mark.parametrize("obj, path, words", [
    ({"identity": {"b": b"raw"}}, "identity.b", "binary data"),
    ({"identity": {"e": msgpack.ExtType(5, b"x")}}, "identity.e", "not a JSON value"),
    ({"resource": {"m": {b"k": 1}}}, "resource.m", "keys must be strings"),
    ({"context": {"n": 2**64 - 1, "x": [None]}}, "context.x[0]", "null is not allowed inside a list"),
    ({"identity": {}, "extra": {}}, "extra", "unknown top-level key"),
    ({"action": 7}, "action", "must be an object or a string"),
])
def test_msgpack_content_is_checked_like_the_value_form(obj, path, words):
    msg = pb.CheckRequest(request_msgpack=msgpack.packb(obj, use_bin_type=True))
    with pytest.raises(RequestError) as info:
        wire.pb_to_request(msg)
    assert info.value.path == path and words in info.value.message


def test_msgpack_unchecked_returns_what_was_sent():
    raw = {"identity": {"a": None, "b": [1]}, "action": "x", "extra": 1}
    msg = pb.CheckRequest(request_msgpack=msgpack.packb(raw))
    assert wire.pb_to_request(msg, check=False) == raw
    with pytest.raises(RequestError):
        wire.pb_to_request(pb.CheckRequest(request_msgpack=msgpack.packb([1])), check=False)


# --------------------------------------------------------------------------------------------
# decisions


ALLOW = {
    "decision": "ALLOW",
    "reasons": [{"rule": "payments.billing_may_charge", "effect": "permit",
                 "message": "billing workload charges with a fresh, scoped credential",
                 "annotations": {"owner": "payments-security", "control": "OWASP-NHI7"}}],
    "errors": [],
    "revision": "3f2a9c",
    "eval_ns": 12_345,
}
DENY = {
    "decision": "DENY",
    "reasons": [{"rule": "default", "effect": "forbid", "message": "no permit rule matched", "annotations": {}},
                {"rule": "p.r", "effect": "forbid", "message": "", "annotations": {}}],
    "errors": [{"rule": "p.r", "message": "failed closed: identity.credential: missing attribute"},
               {"rule": "q.s", "message": "ünïcode ✓"}],
    "revision": "",
    "eval_ns": 2**62,
}


@pytest.mark.parametrize("decision", [ALLOW, DENY], ids=["allow", "deny"])
def test_decision_round_trips(decision):
    msg = wire.decision_to_pb(decision, request_id="req-7")
    back = pb.CheckResponse.FromString(msg.SerializeToString())
    assert back.request_id == "req-7"
    assert not back.HasField("error")
    assert same(wire.pb_to_decision_dict(back), decision)


def test_decision_enum_values():
    assert pb.Decision.Value("DECISION_UNSPECIFIED") == 0
    assert wire.decision_to_pb(ALLOW).decision == pb.DECISION_ALLOW
    assert wire.decision_to_pb(DENY).decision == pb.DECISION_DENY


def test_anything_but_allow_reads_as_deny():
    assert wire.pb_to_decision_dict(pb.CheckResponse())["decision"] == "DENY"  # UNSPECIFIED, an empty message
    unknown = pb.CheckResponse.FromString(b"\x10\x63")  # decision = 99, from a newer server
    assert wire.pb_to_decision_dict(unknown)["decision"] == "DENY"


def test_item_error_round_trips_as_request_error():
    err = RequestError("identity.type", "a non-empty string is required, got missing")
    msg = pb.CheckResponse.FromString(wire.error_to_pb(err, "req-9").SerializeToString())
    assert msg.request_id == "req-9"
    assert msg.error.code == 3 and msg.error.path == "identity.type"
    assert msg.error.message == "identity.type: a non-empty string is required, got missing"
    assert msg.decision == pb.DECISION_UNSPECIFIED
    with pytest.raises(RequestError) as info:
        wire.pb_to_decision_dict(msg)
    assert (info.value.path, info.value.message) == (err.path, err.message)

    plain = wire.error_to_pb("internal failure", code=13)
    with pytest.raises(RequestError) as info:
        wire.pb_to_decision_dict(plain)
    assert str(info.value) == "internal failure"


def test_batch_messages_keep_order():
    batch = pb.CheckBatchRequest(requests=[wire.request_to_pb(SPEC_EXAMPLE, str(i)) for i in range(3)])
    back = pb.CheckBatchRequest.FromString(batch.SerializeToString())
    assert [r.request_id for r in back.requests] == ["0", "1", "2"]
    answers = pb.CheckBatchResponse(responses=[wire.decision_to_pb(ALLOW, "0"), wire.error_to_pb("bad", "1")])
    assert [r.HasField("error") for r in answers.responses] == [False, True]


# --------------------------------------------------------------------------------------------
# the generated code


def test_service_shape():
    service = pb.DESCRIPTOR.services_by_name["DecisionService"]
    assert service.full_name == "pdp.v1.DecisionService"
    methods = {m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
               for m in service.methods}
    assert methods == {
        "Check": ("CheckRequest", "CheckResponse", False, False),
        "CheckBatch": ("CheckBatchRequest", "CheckBatchResponse", False, False),
        "CheckStream": ("CheckRequest", "CheckResponse", True, True),
    }
    assert hasattr(pb_grpc, "DecisionServiceStub") and hasattr(pb_grpc, "add_DecisionServiceServicer_to_server")


GENERATED = ["decision_pb2.py", "decision_pb2_grpc.py", "decision_pb2.pyi"]


def test_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed; cannot regenerate the proto")
    spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path)
    for name in GENERATED:
        committed = (REPO / "pdp" / "v1" / name).read_bytes()
        fresh = (tmp_path / "pdp" / "v1" / name).read_bytes()
        assert fresh == committed, (
            f"pdp/v1/{name} is stale: run `python proto/generate.py` and commit the result "
            f"(the generated code embeds the protoc version: {_protoc_line(committed)!r} committed, "
            f"{_protoc_line(fresh)!r} now)")


def _protoc_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if "Protobuf Python Version" in line or "GRPC_GENERATED_VERSION =" in line:
            return line.strip("# ")
    return "?"


def test_a_decision_and_its_dict_encode_alike(tmp_path):
    """One encoding: a Decision (the server's case) and its to_dict() give the same message."""
    import pdp
    from pdp.server.convert import decision_to_pb as server_encoding

    assert server_encoding is wire.decision_to_pb
    (tmp_path / "p.pdl").write_text('@owner("o")\npolicy p {\n  @control("c")\n  permit r when identity.ok '
                                    'reason "ok {identity.id}"\n  forbid f when identity.bad\n}\n')
    engine = pdp.load(tmp_path)
    for identity in ({"ok": True}, {"ok": False}, {"ok": "x", "bad": False}, {"bad": "x"}):
        d = engine.decide({"identity": {"type": "w", "id": "x", **identity}, "action": "r", "resource": {"type": "t"}})
        assert wire.decision_to_pb(d, "r1").SerializeToString(deterministic=True) == \
            wire.decision_to_pb(d.to_dict(), "r1").SerializeToString(deterministic=True)
        assert wire.pb_to_decision_dict(wire.decision_to_pb(d)) == d.to_dict()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=__import__("test_fast_validation")._requests)
def test_the_wire_and_the_engine_agree_on_what_a_request_is(raw):
    """Generated requests, valid and not (subclass values, nulls, tuples, bad keys, depth, ...):
    what the wire carries parses as the request itself does, and what it refuses, the engine
    refuses too (the wire checks only what it cannot carry; the engine checks the rest)."""
    from pdp.request import parse_request

    def engine_view(request):
        try:
            return parse_request(request, 0.0).attrs
        except RequestError as err:
            return ("RequestError", err.path)

    want = engine_view(raw)
    for form in FORMS:
        try:
            carried = wire.pb_to_request(pb.CheckRequest.FromString(
                wire.request_to_pb(raw, form=form).SerializeToString()))
        except RequestError:
            assert type(want) is tuple, (form, raw)
            continue
        got = engine_view(carried)
        if type(want) is dict:
            assert got == want, (form, raw)
        else:
            assert type(got) is tuple, (form, raw)
