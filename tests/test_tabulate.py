"""Tabulated data lookups (pdp/compile/tabulate.py): a sub-expression that reads the request
only as keys into constant data is computed per key at load. Decisions, reasons and errors
must stay the reference's wherever the lookup sits (data rows missing, malformed networks and
patterns, keys of the wrong type, missing attributes), and the work must actually move to load.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp.compile import ir
from pdp.compile.program import decode, encode
from pdp.runtime import EVALUATORS

from strategies import load_policy_set, requests, write_policy_set
from test_differential import _check_all, _view

#: Tables keyed by the request vocabulary of strategies.py (env, who, rtype, action), with
#: rows missing, of the wrong type and malformed on purpose.
DATA = {
    "t": {
        "nets": {"prod": ["10.0.0.0/8", "fd00::/8"], "dev": ["192.168.0.0/16"], "staging": "10.1.2.3",
                 "bad": ["nope"]},
        "ids": {"alice": {"pattern": "a*", "networks": ["10.1.0.0/16"], "level": 3, "kind": "ci"},
                "bob": {"pattern": "b?b", "level": 1.5},
                "billing": {"pattern": "***", "networks": "fd00::/8", "kind": 7}},
        "api": {"doc": {"read": {"scope": "payments:read"}, "write": {"scope": "payments:write", "high": True}},
                "payment": {"charge": {"scope": "payments:write", "high": True}}, "todo": "not a map"},
    }
}

CONDITIONS = [
    "context.source_ip in cidr(data.t.nets[identity.env])",
    "context.source_ip not in cidr(data.t.nets[resource.env], \"172.16.0.0/12\")",
    "defined(data.t.ids[identity.id].networks) and context.source_ip in cidr(data.t.ids[identity.id].networks)",
    "identity.id matches data.t.ids[identity.id].pattern",
    "resource.owner matches data.t.ids[resource.owner].pattern",
    "defined(data.t.ids[identity.id].kind) and data.t.ids[identity.id].kind == \"ci\"",
    "data.t.ids[identity.id].level > identity.level",
    "identity.scopes contains data.t.api[resource.type][action.name].scope",
    "defined(data.t.api[resource.type][action.name])",
    "defined(data.t.api[resource.type][action.name].high) and data.t.api[resource.type][action.name].high == true",
    "not defined(data.t.ids[identity.id])",
    "len(data.t.nets[identity.env]) > 1 or lower(data.t.ids[identity.id].pattern) == \"a*\"",
    "data.t.nets[identity.env] contains \"10.0.0.0/8\"",
    "identity.env == \"prod\" and action.name in [\"read\", \"write\"]",
    "resource.type == \"doc\"",
]


@st.composite
def _sets(draw):
    lines = []
    for p in range(draw(st.integers(1, 4))):
        lines.append(f"policy p{p} {{")
        if draw(st.booleans()):
            lines.append(f"  let row = data.t.ids[identity.id]")
        if draw(st.integers(0, 2)) == 0:
            lines.append(f"  target {draw(st.sampled_from(CONDITIONS))}")
        for r in range(draw(st.integers(1, 5))):
            effect = draw(st.sampled_from(["permit", "permit", "forbid"]))
            when = " and ".join(draw(st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=3)))
            rule = f"  {effect} r{r} when {when}"
            if draw(st.booleans()):
                rule += f" unless {draw(st.sampled_from(CONDITIONS))}"
            if draw(st.booleans()):
                rule += ' reason "nets {data.t.nets[identity.env]} row {data.t.ids[identity.id].pattern}"'
            lines.append(rule)
        lines.append("}")
    return ["\n".join(lines) + "\n"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_sets(), reqs=st.lists(requests(), min_size=2, max_size=10))
def test_tabulated_lookups_agree_with_the_reference(texts, reqs):
    engine = load_policy_set(texts, DATA)
    _check_all(engine, reqs)
    _assert_specialized(engine.program)


def _assert_specialized(program):
    """No comparison is left generic that the lowering would have specialised: the ones whose
    operand a folded data row made constant (``x matches row.pattern``, ``row.kind == x``)
    become MATCH_GLOB, EQ_STR or IN_STRS too, evaluated without the generic operator."""
    from pdp.compile.lower import specialized_compare

    generic = [n for n in _nodes(program) if n[0] == ir.COMPARE and specialized_compare(n[1], n[2], n[3]) is not None]
    assert not generic, generic[:3]


def test_folded_comparisons_are_specialized_in_the_library():
    """The shipped library's `identity.spiffe_id matches registered.spiffe_id`, split on
    identity.id, is a MATCH_GLOB per identity (it was a generic `matches` of a constant)."""
    from pathlib import Path

    program = pdp.load(Path(__file__).resolve().parent.parent / "policies").program
    _assert_specialized(program)
    assert sum(n[0] == ir.MATCH_GLOB and n[1][-1][0] == ir.PATH and n[1][-1][2] == ("spiffe_id",)
               for n in _nodes(program)) >= 10


def _nodes(program):
    """Every node of the program's trees and reasons."""
    seen, stack = {}, []

    def tree(t):
        if t[0] == "leaf":
            for _, *clauses in t[1]:
                stack.extend(c for c in clauses if c is not None)
            return
        _, path, branches, default, error = t
        stack.append(path)
        for sub in (*branches.values(), default, error):
            if sub is not None:
                tree(sub)

    tree(program.forbid_tree)
    tree(program.permit_tree)
    from pdp.compile.cse import children
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            stack.extend(children(node))
    return list(seen.values())


def _key_text(lookup: tuple) -> str:
    key = lookup[1][2] if lookup[1][0] == ir.CACHED else lookup[1]
    return key[3][-1]


SOURCE = """
policy net {
  forbid outside when not (context.source_ip in cidr(data.t.nets[identity.env]))
    reason "{identity.id} outside {data.t.nets[identity.env]}"
  permit ci when defined(data.t.ids[identity.id].kind) and data.t.ids[identity.id].kind == "ci"
}
"""


def test_cidr_of_data_is_parsed_at_load(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [SOURCE], DATA))
    lookups = [n for n in _nodes(engine.program) if n[0] == ir.LOOKUP]
    by_key = {_key_text(n): n for n in lookups}
    # The networks of each environment are one cidr set made at load; no cidr() call is left
    # but in the default, for environments the table does not hold.
    nets = by_key["identity.env"]
    assert nets[2]["prod"][0] == ir.CIDR and nets[2]["dev"][0] == ir.CIDR
    assert nets[2]["bad"][0] == ir.ERROR and "nope" in nets[2]["bad"][1]
    assert nets[2]["staging"][0] == ir.CIDR
    # `defined(row.kind) and row.kind == "ci"` is one constant per identity.
    assert {k: v[1] for k, v in by_key["identity.id"][2].items()} == {"alice": True, "bob": False, "billing": False}
    base = {"identity": {"type": "w", "id": "alice", "env": "prod"}, "action": "read", "resource": {"type": "doc"},
            "context": {"source_ip": "10.9.9.9"}}
    reference = pdp.load(write_policy_set(tmp_path / "s", [SOURCE], DATA), backend="reference")
    for request in (base, {**base, "context": {"source_ip": "192.168.1.1"}},
                    {**base, "identity": {"type": "w", "id": "zed", "env": "bad"}},
                    {**base, "identity": {"type": "w", "id": "bob", "env": "qa"}},
                    {**base, "identity": {"type": "w", "id": "bob"}}):
        assert _view(engine.decide(request)) == _view(reference.decide(request))


def test_tabulated_programs_survive_a_bundle(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [SOURCE], DATA))
    program, _ = decode(encode(engine.program))
    assert any(n[0] == ir.LOOKUP for n in _nodes(program))
    reqs = [{"identity": {"type": "w", "id": who, "env": env}, "action": "read", "resource": {"type": "doc"},
             "context": {"source_ip": ip}}
            for who in ("alice", "bob", "zed") for env in ("prod", "dev", "bad", "qa") for ip in ("10.1.1.1", "x")]
    for name, evaluator in EVALUATORS.items():
        before, after = evaluator(engine.program), evaluator(program)
        assert [_view(before.decide(r)) for r in reqs] == [_view(after.decide(r)) for r in reqs], name


def test_large_tables_are_left_to_run_time(tmp_path, monkeypatch):
    from pdp.compile import tabulate
    monkeypatch.setattr(tabulate, "MAX_KEYS", 2)
    engine = pdp.load(write_policy_set(tmp_path / "s", [SOURCE], DATA))
    assert not any(n[0] == ir.LOOKUP and _key_text(n) == "identity.env" for n in _nodes(engine.program))
    reference = pdp.load(write_policy_set(tmp_path / "s", [SOURCE], DATA), backend="reference")
    request = {"identity": {"type": "w", "id": "alice", "env": "dev"}, "action": "read", "resource": {"type": "doc"},
               "context": {"source_ip": "192.168.1.1"}}
    assert _view(engine.decide(request)) == _view(reference.decide(request))


def test_index_by_of_loaded_data_is_built_at_load_and_tabulated(tmp_path):
    """index_by(data..., "field") is folded to a constant map when the policies load, so a request
    looks its key up like any data table (tabulated into a LOOKUP), never rebuilding the index."""
    identities = {f"svc{i}": {"spiffe_id": f"spiffe://acme/ns/svc{i}/sa/api", "env": "prod"} for i in range(50)}
    texts = ['policy p {\n  permit same_env when index_by(data.identities, "spiffe_id")[identity.id].env == resource.env\n}\n']
    engine = pdp.load(write_policy_set(tmp_path / "s", texts, {"identities": identities}))
    nodes = list(_all_nodes((engine.program.forbid_tree, engine.program.permit_tree)))
    assert not any(n[0] == ir.CALL for n in nodes)
    assert any(n[0] == ir.LOOKUP for n in nodes)
    d = engine.decide({"identity": {"type": "workload", "id": "spiffe://acme/ns/svc7/sa/api"}, "action": "GET",
                       "resource": {"type": "http", "env": "prod"}})
    assert d.decision == "ALLOW"


def _all_nodes(value, seen=None):
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, tuple) and value and isinstance(value[0], int) and not isinstance(value[0], bool) \
            and value[0] in ir.NAMES:
        yield value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        yield from _all_nodes(item, seen)


ROWS = """
policy inventory {
  let row = data.t.ids[identity.id]
  forbid unknown unless defined(row)
  forbid ci when defined(row.kind) and row.kind == "ci"
  forbid low when defined(row.level) and row.level < 2 reason "level {row.level}"
  permit known when defined(row)
}
"""


def test_leaves_split_on_the_key_of_their_tables(tmp_path):
    """Rules that look up one table by identity.id (compile/split.py): the forbid leaf becomes
    a switch on identity.id, each branch holding only the rules that can still apply to that
    identity, its row folded in; identities outside the table take the default, where the
    lookups run as before."""
    engine = pdp.load(write_policy_set(tmp_path / "s", [ROWS], DATA))
    ids = [r.id for r in engine.program.rules]
    tree = engine.program.forbid_tree
    path = tree[1][2] if tree[1][0] == ir.CACHED else tree[1]
    assert tree[0] == "switch" and path[3][-1] == "identity.id"
    assert {k: [(ids[rule], *clauses) for rule, *clauses in leaf[1]] for k, leaf in tree[2].items()} == {
        "alice": [("inventory.ci", None, None, None)], "bob": [("inventory.low", None, None, None)], "billing": []}
    assert [ids[rule] for rule, *_ in tree[3][1]] == ["inventory.unknown", "inventory.ci", "inventory.low"]
    reference = pdp.load(write_policy_set(tmp_path / "s", [ROWS], DATA), backend="reference")
    for who in ("alice", "bob", "billing", "zed"):
        request = {"identity": {"type": "w", "id": who}, "action": "read", "resource": {"type": "doc"}}
        assert _view(engine.decide(request)) == _view(reference.decide(request))


def test_split_trees_survive_a_bundle(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [ROWS], DATA))
    program, _ = decode(encode(engine.program))
    reqs = [{"identity": {"type": "w", "id": who}, "action": "read", "resource": {"type": "doc"}}
            for who in ("alice", "bob", "billing", "zed")]
    for name, evaluator in EVALUATORS.items():
        before, after = evaluator(engine.program), evaluator(program)
        assert [_view(before.decide(r)) for r in reqs] == [_view(after.decide(r)) for r in reqs], name
