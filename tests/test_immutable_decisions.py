"""SPEC §2: decisions are immutable values. Nothing a caller does to a returned decision, its
reasons, their annotation maps or its errors changes it or any later decision, on any backend;
decisions still pickle, copy, hash and convert."""

from __future__ import annotations

import copy
import json
import pickle

import msgpack
import pytest

import pdp
from pdp import runtime
from pdp.decision import FrozenMap, Reason, RuleError

BACKENDS = ["reference", *sorted(runtime.EVALUATORS)]

POLICIES = """
@owner("payments")
policy p {
  @control("C-1")
  forbid blocked when defined(identity.blocked) and identity.blocked reason "blocked {identity.id}"
  @control("C-2")
  permit reader when action.name == "read" reason "reads {resource.type}"
  @control("C-3")
  permit static when action.name == "list" reason "lists"
}
"""


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("immutable")
    (root / "p.pdl").write_text(POLICIES, encoding="utf-8")
    return pdp.load(root, backend=request.param)


def ask(action: str, **identity) -> dict:
    return {"identity": {"type": "w", "id": "x", **identity}, "action": action, "resource": {"type": "doc"}}


REQUESTS = [ask("write"), ask("read"), ask("list"), ask("read", blocked=True), ask("read", blocked="oops")]


def snapshot(engine) -> list:
    return [json.dumps({k: v for k, v in engine.decide(r).to_dict().items() if k != "eval_ns"}, sort_keys=True)
            for r in REQUESTS]


def attempts(d):
    """Every way a caller might try to change a decision, as (name, callable)."""
    reason, = d.reasons[:1]
    yield "decision field", lambda: setattr(d, "decision", "ALLOW")
    yield "reasons field", lambda: setattr(d, "reasons", ())
    yield "reason message", lambda: setattr(reason, "message", "changed")
    yield "reason rule", lambda: setattr(reason, "rule", "changed")
    yield "reason effect", lambda: setattr(reason, "effect", "permit")
    yield "reason annotations", lambda: setattr(reason, "annotations", {"x": "y"})
    yield "delete a field", lambda: delattr(reason, "message")
    yield "new attribute", lambda: setattr(reason, "extra", 1)
    yield "annotation item", lambda: reason.annotations.__setitem__("control", "changed")
    yield "annotation new item", lambda: reason.annotations.__setitem__("new", "x")
    yield "annotation delete", lambda: reason.annotations.__delitem__("control")
    yield "annotation update", lambda: reason.annotations.update(control="changed")
    yield "annotation setdefault", lambda: reason.annotations.setdefault("new", "x")
    yield "annotation pop", lambda: reason.annotations.pop("control")
    yield "annotation popitem", lambda: reason.annotations.popitem()
    yield "annotation clear", lambda: reason.annotations.clear()
    yield "annotation |=", lambda: reason.annotations.__ior__({"new": "x"})
    yield "reasons tuple", lambda: d.reasons.__setitem__(0, reason)  # a tuple: TypeError
    if d.errors:
        yield "error message", lambda: setattr(d.errors[0], "message", "changed")
        yield "error rule", lambda: setattr(d.errors[0], "rule", "changed")


def test_mutation_attempts_fail_and_change_nothing(engine):
    before = snapshot(engine)
    for raw in REQUESTS:
        d = engine.decide(raw)
        for name, attempt in attempts(d):
            with pytest.raises((AttributeError, TypeError)):
                attempt()
            assert snapshot(engine) == before, name
    # Calling a constructor again on a built object refills nothing.
    d = engine.decide(ask("write"))
    d.reasons[0].__init__("x", "permit", "changed", {"a": "b"})
    d.reasons[0].annotations.__init__({"a": "b"})
    assert snapshot(engine) == before


def test_the_default_deny_keeps_its_message(engine):
    d = engine.decide(ask("write"))
    with pytest.raises(AttributeError):
        d.reasons[0].message = "changed"
    assert engine.decide(ask("write")).reasons[0].message == "no permit rule matched"


def test_copies_are_mutable_and_independent(engine):
    d = engine.decide(ask("read"))
    mine = dict(d.reasons[0].annotations)
    mine["control"] = "changed"
    as_dict = d.to_dict()
    as_dict["reasons"][0]["message"] = "changed"
    as_dict["reasons"][0]["annotations"]["control"] = "changed"
    assert d.reasons[0].annotations == {"owner": "payments", "control": "C-2"}
    assert engine.decide(ask("read")).reasons[0].message == "reads doc"


def test_decisions_pickle_copy_hash_and_serialize(engine):
    for raw in REQUESTS:
        d = engine.decide(raw)
        for clone in (pickle.loads(pickle.dumps(d)), copy.copy(d), copy.deepcopy(d)):
            assert clone == d and clone.to_dict() == d.to_dict()
            assert type(clone.reasons[0].annotations) is FrozenMap
        assert hash(d) == hash(pickle.loads(pickle.dumps(d)))
        assert {d: 1}[d] == 1
        assert json.loads(json.dumps(d.to_dict())) == d.to_dict()
        assert msgpack.unpackb(msgpack.packb(d.to_dict())) == d.to_dict()
        assert json.loads(json.dumps(d.reasons[0].annotations)) == dict(d.reasons[0].annotations)


def test_records_compare_by_value_whatever_map_they_were_given():
    a = Reason("r", "permit", "m", {"k": "v"})
    assert a == Reason("r", "permit", "m", FrozenMap({"k": "v"})) and hash(a) == hash(Reason("r", "permit", "m", {"k": "v"}))
    assert a.annotations == {"k": "v"} and a != Reason("r", "permit", "m")
    given = {"k": "v"}
    b = Reason("r", "permit", "m", given)
    given["k"] = "changed"
    assert b.annotations == {"k": "v"}, "the reason keeps its own copy"
    assert RuleError("r", "m") == RuleError("r", "m") and repr(RuleError("r", "m")) == "RuleError(rule='r', message='m')"


def test_the_server_converts_immutable_decisions(engine):
    from pdp.server.convert import decision_to_pb

    d = engine.decide(ask("read"))
    msg = decision_to_pb(d, "id-1")
    assert dict(msg.reasons[0].annotations) == {"owner": "payments", "control": "C-2"}
    assert msg.reasons[0].message == "reads doc"
