"""SPEC §1.1: a value from a Python caller that is an instance of a subclass of a JSON type (an
``enum.StrEnum`` member, an ``IntEnum``, an ``OrderedDict`` ...) is the JSON value of its base
type, on every backend, in conditions, targets, ``in``, reasons and error messages."""

from __future__ import annotations

import collections
import enum

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import reference, runtime, wire
from pdp.request import parse_request

from strategies import Items, Real, Text, Whole, dressed, load_policy_set, policy_sets, requests, write_policy_set

BACKENDS = ["reference", *sorted(runtime.EVALUATORS)]

Env = enum.StrEnum("Env", {"DEV": "dev", "PROD": "prod"})
Kind = enum.StrEnum("Kind", {"DOC": "doc"})


class Color(str, enum.Enum):  # str() is "Color.RED", the value is "red"
    RED = "red"


class Mixed(int, enum.Enum):  # str() is "Mixed.V", the value is 5
    V = 5


class Level(enum.IntEnum):
    HIGH = 3


POLICIES = """
policy p {
  permit not_dev when identity.env != "dev"
  permit red when identity.color == "red" reason "color {identity.color}, level {identity.level}, n {identity.n}"
  permit listed when identity.env in ["dev", "qa"] reason "env {identity.env} of {identity}"
  permit high when identity.level >= 3 and identity.level == 3
  permit at when time(identity.at) > 0
  permit ratio when identity.ratio > 0.25 reason "ratio {identity.ratio}"
  permit tagged when identity.tags contains "x" reason "tags {identity.tags}"
}
policy targeted {
  target resource.type == "doc"
  permit doc reason "doc {resource.type}"
}
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = write_policy_set(tmp_path_factory.mktemp("pv") / "s", [POLICIES], None)
    return {b: pdp.load(root, backend=b) for b in BACKENDS}


def view(d) -> tuple:
    return (d.decision, [(r.rule, r.message) for r in d.reasons], [(e.rule, e.message) for e in d.errors])


def request(identity: dict, resource_type: object = "todo") -> dict:
    return {"identity": {"type": "w", "id": "x", **identity}, "action": "read", "resource": {"type": resource_type}}


CASES = {
    "StrEnum in !=": ({"env": Env.DEV}, {"env": "dev"}),
    "StrEnum in in": ({"env": Env.DEV, "color": "blue"}, {"env": "dev", "color": "blue"}),
    "(str, Enum) in == and reasons": ({"color": Color.RED, "level": Level.HIGH, "n": Mixed.V, "env": "dev"},
                                      {"color": "red", "level": 3, "n": 5, "env": "dev"}),
    "(int, Enum) in a comparison": ({"level": Mixed.V, "env": "dev"}, {"level": 5, "env": "dev"}),
    "IntEnum equal to 3": ({"level": Level.HIGH, "env": "dev"}, {"level": 3, "env": "dev"}),
    "str subclass in an error message": ({"at": Text("yesterday"), "env": "dev"}, {"at": "yesterday", "env": "dev"}),
    "float and list subclasses": ({"ratio": Real(0.5), "tags": Items([Text("x")]), "env": "dev"},
                                  {"ratio": 0.5, "tags": ["x"], "env": "dev"}),
    "subclassed keys and maps": (collections.OrderedDict([(Text("env"), Env.PROD), ("m", {Text("k"): Whole(1)})]),
                                 {"env": "prod", "m": {"k": 1}}),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CASES)
def test_subclass_values_decide_as_their_json_values(engines, backend, name):
    fancy, plain = CASES[name]
    engine = engines[backend]
    want = view(engine.decide(request(plain)))
    assert view(engine.decide(request(fancy))) == want
    assert view(engine.decide_many([request(fancy)])[0]) == want
    assert want == view(engines["reference"].decide(request(plain)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_examples_of_the_issue(engines, backend):
    engine = engines[backend]
    d = engine.decide(request({"env": Env.DEV}))
    assert "p.not_dev" not in [r.rule for r in d.reasons], "identity.env is the string dev"
    d = engine.decide(request({"env": "qa"}, Kind.DOC))
    assert ("targeted.doc", "doc doc") in [(r.rule, r.message) for r in d.reasons]
    d = engine.decide(request({"color": Color.RED, "level": Level.HIGH, "n": Mixed.V, "env": "dev"}))
    assert ("p.red", "color red, level 3, n 5") in [(r.rule, r.message) for r in d.reasons]
    d = engine.decide(request({"env": Env.DEV, "at": Text("yesterday")}))
    assert ("p.at", "'yesterday' is not an RFC 3339 time") in [(e.rule, e.message) for e in d.errors]
    d = engine.decide(request({"env": Env.DEV}))
    assert ("p.listed", 'env dev of {"env":"dev","id":"x","type":"w"}') in [(r.rule, r.message) for r in d.reasons]


def test_explain_sees_json_values(engines):
    explanation = engines["reference"].explain(request({"env": Env.DEV, "n": Mixed.V}))
    assert explanation.decision == engines["reference"].decide(request({"env": "dev", "n": 5}))


def test_request_values_are_exact_json_types():
    attrs = parse_request(request({"env": Env.DEV, "n": Mixed.V, "l": Items([Real(1.5)]),
                                   Text("k"): collections.OrderedDict(a=Color.RED)}, Kind.DOC)).attrs

    def exact(v):
        if type(v) is dict:
            return all(type(k) is str and exact(x) for k, x in v.items())
        if type(v) is list:
            return all(map(exact, v))
        return type(v) in (str, int, float, bool)

    assert exact(attrs)
    assert attrs["identity"] == {"type": "w", "id": "x", "env": "dev", "n": 5, "l": [1.5], "k": {"a": "red"}}


@pytest.mark.parametrize("form", ["value", "msgpack"])
def test_the_wire_carries_json_values(form):
    fancy = request({"env": Env.DEV, "n": Mixed.V, "c": Color.RED, Text("k"): Items([Whole(2), Real(0.5)])}, Kind.DOC)
    plain = request({"env": "dev", "n": 5, "c": "red", "k": [2, 0.5]}, "doc")
    assert wire.pb_to_request(wire.request_to_pb(fancy, form=form)) == wire.pb_to_request(
        wire.request_to_pb(plain, form=form))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(), data=st.data())
def test_generated_python_values_agree_with_their_json_values(texts, data):
    """Every backend decides a request holding subclass values (at any depth, keys included)
    exactly as the reference decides the same request in plain JSON values."""
    engine = load_policy_set(texts)
    evaluators = {name: runtime.EVALUATORS[name](engine.program) for name in runtime.EVALUATORS}
    for plain in data.draw(st.lists(requests(), min_size=1, max_size=5)):
        fancy = data.draw(dressed(plain))
        want = view(reference.decide(engine.policy_set, parse_request(plain), engine.revision))
        assert view(reference.decide(engine.policy_set, parse_request(fancy), engine.revision)) == want
        for name, evaluator in evaluators.items():
            assert view(evaluator.decide(fancy)) == want, (name, fancy)
            assert view(evaluator.decide_many([fancy])[0]) == want, (name, fancy)
