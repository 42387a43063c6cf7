"""Differential tests: every evaluator of the compiled program — the Cython extension and its
pure-Python twin, with the decision-tree index and without — returns exactly the reference
evaluator's decision, reasons (ids, order, messages, annotations) and errors, on generated
policy sets and requests (evaluation errors, missing attributes and type mismatches included).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import reference, runtime
from pdp.compile import compile_program
from pdp.request import Request, parse_request

from strategies import TOKEN_VIEWS, load_policy_set, policy_sets, requests

EVALUATORS = sorted(runtime.EVALUATORS)  # "compiled" (when built) and "python"


def _view(decision) -> tuple:
    return (decision.decision,
            [(r.rule, r.effect, r.message, dict(r.annotations)) for r in decision.reasons],
            [(e.rule, e.message) for e in decision.errors],
            decision.revision)


def _check_all(engine, reqs) -> None:
    indexed = engine.program
    flat = compile_program(engine.policy_set, engine.revision, indexed=False)
    evaluators = {(name, kind): runtime.EVALUATORS[name](program)
                  for name in EVALUATORS for kind, program in (("indexed", indexed), ("flat", flat))}
    for item in reqs:
        raw, token = item if type(item) is tuple else (item, None)  # token: the root ``token``
        parsed = parse_request(raw)
        want = _view(reference.decide(engine.policy_set, Request(parsed.attrs, parsed.arrival, token), engine.revision))
        for key, evaluator in evaluators.items():
            got = _view(evaluator.decide_parsed(parsed.attrs, parsed.arrival, token))
            assert got == want, f"{key} differs from the reference for {raw!r} with token {token!r}"
            # The raw-dict entry point validates (fast path or reference path) and agrees too.
            assert _view(evaluator.decide(raw, token)) == want, f"{key}.decide differs for {raw!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(), reqs=st.lists(st.tuples(requests(), TOKEN_VIEWS), min_size=1, max_size=8))
def test_compiled_evaluators_agree_with_the_reference(texts, reqs):
    _check_all(load_policy_set(texts), reqs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(min_policies=4, max_policies=8),
       reqs=st.lists(st.tuples(requests(), TOKEN_VIEWS), min_size=4, max_size=12))
def test_index_agrees_on_larger_policy_sets(texts, reqs):
    _check_all(load_policy_set(texts), reqs)


#: Server clocks around FIXED_TIMES (strategies.py): 2026-11-27T10:05:00Z is 1795773900.
_ARRIVALS = [1795773900, 1795773900.25, 1795773930, 1795773930.25, 1795773869.75, 1795773870, 1795773900 - 86400]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(), reqs=st.lists(requests(), min_size=1, max_size=6),
       arrival=st.sampled_from(_ARRIVALS), skew=st.sampled_from([0, 0.25, 30, 3600]))
def test_evaluators_agree_with_a_clock_bound(texts, reqs, arrival, skew):
    """With a clock bound every evaluator refuses the same context.times with the same
    message, at the edges of the bound too (pdp.clock)."""
    engine = load_policy_set(texts)
    flat = compile_program(engine.policy_set, engine.revision, indexed=False)
    evaluators = {(name, kind): runtime.EVALUATORS[name](program, skew)
                  for name in EVALUATORS for kind, program in (("indexed", engine.program), ("flat", flat))}
    for raw in reqs:
        parsed = parse_request(raw, arrival)
        want = _view(reference.decide(engine.policy_set, parsed, engine.revision, skew))
        for key, evaluator in evaluators.items():
            assert _view(evaluator.decide_parsed(parsed.attrs, arrival)) == want, f"{key} differs for {raw!r}"


TARGETED = """
policy p{n} {{
  target resource.type == "t{m}" and action.name in ["read", "write"]
  permit r when identity.env == "prod" and resource.owner == identity.id
  forbid f when identity.env == "dev" and context.source_ip in cidr("10.0.0.0/8")
  permit g when resource.tags contains "public" reason "tags {{resource.tags}} of {{resource.id}}"
}}
"""


@pytest.mark.parametrize("backend", EVALUATORS)
def test_index_keeps_errors_of_unresolvable_guard_paths(backend, tmp_path):
    """A guard on a path that may be missing must not hide the error the rule meets there."""
    from strategies import write_policy_set
    import pdp

    texts = ["""
policy a {
  forbid missing_env_fails_closed when identity.env == "prod" and resource.type == "doc"
  forbid other when identity.env == "dev"
  forbid third when identity.env in ["qa", "prod"]
  permit p when resource.type == "doc"
}"""]
    engine = pdp.load(write_policy_set(tmp_path / "s", texts, None), backend=backend)
    base = {"identity": {"type": "workload", "id": "x"}, "action": "read", "resource": {"type": "doc"}}
    d = engine.decide(base)
    assert d.decision == "DENY"
    assert [r.rule for r in d.reasons] == ["a.missing_env_fails_closed", "a.other", "a.third"]
    assert all(r.message == "failed closed: identity.env is missing" for r in d.reasons)
    d = engine.decide({**base, "identity": {"type": "workload", "id": "x", "env": "test"}})
    assert d.decision == "ALLOW" and d.errors == ()


def test_many_targeted_policies_agree(tmp_path):
    from strategies import write_policy_set
    import pdp

    texts = ["".join(TARGETED.format(n=n, m=n % 7) for n in range(40))]
    engine = pdp.load(write_policy_set(tmp_path / "s", texts, None), backend="reference")
    reqs = [{"identity": {"type": "workload", "id": who, **({"env": env} if env else {})},
             "action": action, "resource": {"type": f"t{t}", "id": "r", "owner": "bob",
                                            **({"tags": tags} if tags is not None else {})},
             "context": {"source_ip": ip}}
            for who in ("bob", "eve") for env in ("prod", "dev", None) for action in ("read", "delete")
            for t in (0, 3, 9) for tags in (["public"], None, "oops") for ip in ("10.1.2.3", "nope")]
    _check_all(engine, reqs)


def test_integer_comparisons_at_the_64_bit_edges(tmp_path):
    """The compiled evaluator compares integers that fit in C directly, others in Python."""
    from strategies import write_policy_set
    import pdp

    edges = [0, 1, -1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) + 1, 1.5, True]
    rules = "\n".join(f"  permit {name} when identity.a {op} identity.b"
                      for name, op in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")))
    engine = pdp.load(write_policy_set(tmp_path / "s", [f"policy p {{\n{rules}\n}}\n"], None), backend="reference")
    _check_all(engine, [{"identity": {"type": "w", "id": "x", "a": a, "b": b}, "action": "r", "resource": {"type": "t"}}
                        for a in edges for b in edges])


def test_one_star_globs_at_their_edges(tmp_path):
    """The compiled evaluator matches "prefix*suffix" globs in C: prefix and suffix may not
    overlap, and the run between them may not hold a '/'."""
    from strategies import write_policy_set
    import pdp

    patterns = ["ab*ba", "*", "a*", "*a", "spiffe://acme/ns/*/sa/x", "a/*", "*/b", "é*ü"]
    rules = "\n".join(f'  permit g{i} when identity.id matches "{p}"' for i, p in enumerate(patterns))
    engine = pdp.load(write_policy_set(tmp_path / "s", [f"policy p {{\n{rules}\n}}\n"], None), backend="reference")
    texts = ["aba", "abba", "ab/ba", "abxba", "a", "b", "a/", "/a", "x/b", "a/b", "a//b",
             "spiffe://acme/ns/pay/sa/x", "spiffe://acme/ns/p/q/sa/x", "spiffe://acme/ns//sa/x", "éü", "é/ü", "éxü"]
    _check_all(engine, [{"identity": {"type": "w", "id": t}, "action": "r", "resource": {"type": "t"}} for t in texts])


_TIMES = ["2026-11-27T10:00:00Z", "2026-11-27t10:00:00z", "2026-11-27 10:00:00Z", "2026-11-27T10:00:00+05:30",
          "2026-11-27T10:00:00-23:59", "2026-11-27T10:00:00+24:00", "2026-11-27T10:00:00+01:60", "2024-02-29T00:00:00Z",
          "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-31T23:59:60Z", "0001-01-01T00:00:00Z",
          "9999-12-31T23:59:59-23:59", "2026-11-27T24:00:00Z", "2026-11-27T10:00:00.5Z", "2026-11-27T10:00:00",
          "2026-11-27T10:00:00ZZ", "٢٠٢٦-11-27T10:00:00Z", 1795773000, 1795773000.5, 2**63 - 1, -5, True, "x"]


def test_times_and_ages_at_their_edges(tmp_path):
    """The compiled evaluator reads the common RFC 3339 shape in C and subtracts ages in C:
    the values (int or float, as reasons render them), decisions and errors are the
    reference's, whatever the request time (a string, an int, a float, one past C's range)."""
    from strategies import write_policy_set
    import pdp

    rules = ('  forbid old when age(identity.t) > 3600 reason "{age(identity.t)}"\n'
             '  forbid at when time(identity.t) > 0 reason "{time(identity.t)}"\n'
             '  permit young when age(identity.t) <= 3600\n')
    engine = pdp.load(write_policy_set(tmp_path / "s", [f"policy p {{\n{rules}}}\n"], None), backend="reference")
    nows = ["2026-11-27T10:05:00Z", "2026-11-27T11:05:00+01:00", 1795773900, 1795773900.25, 2**62, -(2**62), "bad"]
    _check_all(engine, [{"identity": {"type": "w", "id": "x", "t": t}, "action": "r", "resource": {"type": "t"},
                         "context": {"time": now}} for t in _TIMES for now in nows])


_NETWORKS = 'cidr("10.0.0.0/8", "192.168.1.0/24", "0.0.0.0/32", "fd00::/8", "2001:db8::/32", "::/128", "::ffff:0:0/96")'
_IP_TEXTS = [
    "10.1.2.3", "10.0.0.0", "10.255.255.255", "11.0.0.0", "9.255.255.255", "192.168.1.255", "192.168.2.0",
    "0.0.0.0", "0.0.0.1", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3",
    ".1.2.3", "1.2.3.", "1.2.3.04", "1.2.3.400", "1.2.3.1000", "١.2.3.4", "1.2.3.4 ", " 1.2.3.4", "",
    "fd00::1", "FD00::1", "fd00:0:0:0:0:0:0:1", "fe80::1", "fe80::1%eth0", "::", "::1", "1::", "::ffff:10.1.2.3",
    "::ffff:a01:203", "::FFFF:0a01:0203", "::ffff:c0a8:1ff", "2001:db8::", "2001:0db8:0000::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db9::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1::2::3",
    ":1::2", "1::2:", ":::", "1:2:3:4:5:6:7", "12345::", "g::1", "fd00::1:", "::ffff:1.2.3.4.5", "fd00::00001",
]


def test_ip_membership_at_its_edges(tmp_path):
    """The compiled evaluator parses IPv4 and plain IPv6 texts in C: whatever it accepts,
    refuses or leaves to ipaddress, decisions and error messages are the reference's."""
    from strategies import write_policy_set
    import pdp

    rules = (f"  permit inside when context.source_ip in {_NETWORKS}\n"
             f"  permit outside when context.source_ip not in {_NETWORKS}\n")
    engine = pdp.load(write_policy_set(tmp_path / "s", [f"policy p {{\n{rules}}}\n"], None), backend="reference")
    _check_all(engine, [{"identity": {"type": "w", "id": "x"}, "action": "r", "resource": {"type": "t"},
                         "context": {"source_ip": ip}} for ip in _IP_TEXTS])


@settings(max_examples=200, deadline=None)
@given(ips=st.lists(st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=40)), min_size=1, max_size=20))
def test_generated_ip_texts_agree(ips):
    texts = [f"policy p {{\n  permit inside when context.source_ip in {_NETWORKS}\n}}\n"]
    _check_all(load_policy_set(texts, None), [
        {"identity": {"type": "w", "id": "x"}, "action": "r", "resource": {"type": "t"}, "context": {"source_ip": ip}}
        for ip in ips])


#: Seventy untargeted policies, each with a `let` its two rules share: a CACHED slot each, so
#: a request fills slots past the ones a context holds inline (the _Slots the compiled
#: evaluator keeps between requests).
MANY_SLOTS = "".join(f"""
policy many{i} {{
  let mine = resource.owner == identity.id or resource.tags contains "t{i}"
  forbid f when mine and context.source_ip in cidr("10.{i}.0.0/16")
  permit p when mine or identity.env == "{('prod', 'dev', 'staging')[i % 3]}" reason "mine is {{mine}}"
}}
""" for i in range(70))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(), reqs=st.lists(requests(), min_size=2, max_size=10))
def test_slots_past_the_inline_ones_agree_with_the_reference(texts, reqs):
    """Requests decided one after another reuse the evaluator's slot arrays: a value left
    from an earlier request would show as a wrong decision, reason or error."""
    engine = load_policy_set([MANY_SLOTS, *texts])
    assert engine.program.slots > 64  # past the inline slots (_INLINE_SLOTS in _ceval.pyx)
    _check_all(engine, reqs)
    for name in EVALUATORS:
        evaluator = runtime.EVALUATORS[name](engine.program)
        want = [_view(reference.decide(engine.policy_set, parse_request(r), engine.revision)) for r in reqs]
        assert [_view(d) for d in evaluator.decide_many(reqs)] == want


#: Values of every JSON type, nested, with the pairs pdp equality must tell apart or join:
#: 1 and 1.0 (equal), 1 and true (not), lists and maps by their items, lists and maps in lists.
_VALUES = st.recursive(
    st.one_of(st.booleans(), st.sampled_from([0, 1, -1, 2**63, 1.0, 0.0, -0.0, 2.5, 1e300]),
              st.sampled_from(["", "a", "b", "1", "true", "é"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)),
    max_leaves=8)

_EQUALITY_RULES = "\n".join(f"  permit {name} when {cond}" for name, cond in (
    ("eq", "context.a == context.b"), ("ne", "context.a != context.b"),
    ("eq_data", "context.a == data.values.b"), ("in_list", "context.a in context.b"),
    ("not_in_list", "context.a not in context.b"), ("in_data", "context.a in data.values.list"),
    ("has", "context.b contains context.a"), ("has_any", "context.b contains_any context.c"),
    ("has_all", "context.b contains_all context.c"), ("lt", "context.a < context.b"),
    ("ge", "context.a >= context.b")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data_values=st.fixed_dictionaries({"b": _VALUES, "list": st.lists(_VALUES, max_size=4)}),
       contexts=st.lists(st.fixed_dictionaries({"a": _VALUES, "b": _VALUES, "c": _VALUES}), min_size=1, max_size=6))
def test_equality_and_membership_of_any_values_agree(data_values, contexts):
    """The compiled evaluator compares values of the JSON types in C (values.equal, member,
    contains, contains_any/all); values of every type and nesting against each other and
    against data constants decide, and fail, as in the reference."""
    engine = load_policy_set([f"policy p {{\n{_EQUALITY_RULES}\n}}\n"], {"values": data_values})
    _check_all(engine, [{"identity": {"type": "w", "id": "x"}, "action": "r", "resource": {"type": "t"},
                         "context": c} for c in contexts])


def test_paths_read_in_dicts_of_every_shape(tmp_path):
    """The compiled evaluator reads path keys in place where CPython's dict layout allows
    (``_ceval.DICTS_READ_IN_PLACE``), else as a dict lookup: keys of JSON-parsed requests (equal,
    not the same objects), maps with removed entries, maps large enough for wider hash indices,
    split tables, and keys that are absent: the reference's decisions, reasons and errors."""
    import json

    from strategies import write_policy_set
    import pdp

    rules = ('  permit a when identity.a == "yes" reason "{identity.a} {identity.m.b} {identity.m.c}"\n'
             '  forbid b when identity.m.b == "no" reason "{identity.m.b}"\n'
             '  forbid c when context.x.y.z == 1 reason "{context.x.y.z} {context.x.w}"\n'
             '  permit d when identity.k299 == 299 or identity.k7 == 7\n')
    engine = pdp.load(write_policy_set(tmp_path / "s", [f"policy p {{\n{rules}}}\n"], None), backend="reference")

    class Attrs:
        pass

    def split(**entries):
        obj = Attrs()
        obj.__dict__.update(entries)
        return vars(obj)

    def holed(entries):
        out = {}
        for i, (k, v) in enumerate(entries.items()):
            out[f"gone{i}"] = 0
            out[k] = v
        for i in range(len(entries)):
            del out[f"gone{i}"]
        return out

    identities = [{"type": "w", "id": "x", "a": "yes", "m": {"b": "no", "c": 3}},
                  {"type": "w", "id": "x", "a": "no", "m": {"c": [1]}},
                  {"type": "w", "id": "x", "m": "not a map"},
                  {"type": "w", "id": "x", **{f"k{i}": i for i in range(300)}},
                  {"type": "w", "id": "x", **{f"k{i}": i for i in range(300) if i % 2}, "a": "yes", "m": {}}]
    identities += [holed(i) for i in identities] + [split(type="w", id="x", a="yes", m=split(b="no"))]
    contexts = [{}, {"x": {"y": {"z": 1}, "w": "w"}}, {"x": {"y": {}}}, {"x": {"y": "z"}}, holed({"x": holed({"y": {"z": 1}})})]
    reqs = [{"identity": i, "action": "r", "resource": {"type": "t"}, "context": c} for i in identities for c in contexts]
    reqs += [json.loads(json.dumps(r)) for r in reqs]  # keys equal to the policy's, not the same objects
    _check_all(engine, reqs)


ORDERED_ERRORS = """
policy order {
  permit list_items when [cidr(identity.env), action.name == "read", [][0]][0]
  permit call_args when context.source_ip in cidr(identity.env, [][0])
  permit constant_first when [1, [][0], cidr(identity.env)][0]
}
"""


@pytest.mark.parametrize("env", ["prod", "10.0.0.0/8", None])
def test_an_error_known_at_load_comes_after_the_operands_read_before_it(tmp_path, env):
    """A list's items and a call's arguments are evaluated in order: an operand known at load
    to fail (``[][0]``) is not the error when an operand before it, read per request, fails
    first (a missing ``identity.env``; in a list, ``cidr`` of an environment name, where a
    call reads all its arguments before it runs); with only constants before it, it is."""
    from strategies import write_policy_set
    engine = pdp.load(write_policy_set(tmp_path / "s", [ORDERED_ERRORS], None), backend="reference")
    identity = {"type": "workload", "id": "a"} | ({} if env is None else {"env": env})
    req = {"identity": identity, "action": "read", "resource": {"type": "t"}, "context": {"source_ip": "10.1.2.3"}}
    _check_all(engine, [req])
    errors = {e.rule: e.message for e in engine.decide(req).errors}
    assert errors["order.constant_first"] == "[][0] is out of range (length 0)"
    if env == "prod":
        assert errors["order.list_items"] == "'prod' is not an IP network"
        assert errors["order.call_args"] == "[][0] is out of range (length 0)"
    if env is None:
        assert errors["order.list_items"] == errors["order.call_args"] == "identity.env is missing"
