"""The compiled evaluator's flat skeleton (``_Skeleton`` in pdp/runtime/_ceval.pyx): rules'
and/or/not evaluated over numbered nodes, and the atoms fixed by one request path kept per
value of the path (pdp/compile/atoms.py). Requests that repeat values (table hits), values
equal across types (1, 1.0, true), lists, missing paths and paths whose values never repeat
must all decide, give reasons and fail exactly as the reference evaluator.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import reference, runtime
from pdp.compile import atoms, branches, ir
from pdp.request import parse_request

from strategies import load_policy_set, policy_sets, requests
from test_differential import _check_all, _view

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import random_sets  # noqa: E402

EVALUATORS = sorted(runtime.EVALUATORS)

#: Untargeted rules enough for the compiled evaluator to decide on its skeleton (it decides
#: leaves of a few rules node by node): every request meets them.
PADDING = "policy padding {\n" + "\n".join(
    f'  permit pad{i} when identity.level > {i} or identity.env == "e{i}"' for i in range(40)) + "\n}\n"


def _flat(engine) -> None:
    if "compiled" in runtime.EVALUATORS:
        assert runtime.EVALUATORS["compiled"](engine.program).flat


def _agree(engine, reqs) -> None:
    """decide_many, twice (the second time from the tables), and decide agree with the reference."""
    want = [_view(reference.decide(engine.policy_set, parse_request(r), engine.revision)) for r in reqs]
    for name in EVALUATORS:
        evaluator = runtime.EVALUATORS[name](engine.program)
        for _ in range(2):
            assert [_view(d) for d in evaluator.decide_many(reqs)] == want, name
        assert [_view(evaluator.decide(r)) for r in reqs] == want, name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(min_policies=2, max_policies=6), reqs=st.lists(requests(), min_size=1, max_size=5))
def test_generated_sets_agree_when_requests_repeat(texts, reqs):
    """The same requests three times over: the later ones read the path tables filled by the first."""
    engine = load_policy_set([PADDING, *texts])
    _flat(engine)
    _check_all(engine, reqs * 3)


@pytest.mark.parametrize("seed", [3, 8])
def test_random_sets_agree(seed, tmp_path):
    """The benchmark's random sets (bench/random_sets.py: untargeted rules, random conditions,
    a few attributes missing so that some forbids fail closed)."""
    model = random_sets.policy_set(policies=12, rules=80, seed=seed)
    (tmp_path / "p.pdl").write_text(model.pdl())
    engine = pdp.load(tmp_path)
    _flat(engine)
    _agree(engine, [r.pdl() for r in random_sets.requests(60, seed=seed + 100)])


EQUAL_ACROSS_TYPES = """
policy p {
  permit eq_one when context.a == 1
  permit eq_true when context.a == true
  permit lt when context.a < 2
  permit in_list when context.a in [1, "1", true]
  permit truth when context.a
  permit not_truth when not context.a
  forbid big when context.a > 100 and context.a != 1000
  permit tags when context.a contains "x" or context.a contains_any ["y"]
  permit tags_not when not (context.a contains_all ["x", "y"])
}
"""


def test_values_equal_across_types_keep_their_own_results(tmp_path):
    """1, 1.0 and true hash alike but compare, and fail, differently: each keeps its own row
    (``true < 2`` fails, ``1 < 2`` holds); lists are kept by their items; a map and a missing
    path are evaluated as they are."""
    (tmp_path / "p.pdl").write_text(EQUAL_ACROSS_TYPES + PADDING)
    engine = pdp.load(tmp_path)
    _flat(engine)
    values = [1, 1.0, True, "1", 2, 1000, 101, False, 0, 0.0, ["x"], ["x", "y"], ["y"], [], {"x": 1}, None]
    reqs = [{"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": "t"},
             "context": {} if v is None else {"a": v}} for v in values]
    _agree(engine, reqs + reqs[::-1])


def test_paths_whose_values_never_repeat_still_agree(tmp_path):
    """A path of ids misses its table on every request: past a window it is evaluated atom by
    atom, with the same results."""
    (tmp_path / "p.pdl").write_text("""
policy p {
  permit a when identity.id matches "u-1*" or identity.id == "u-7"
  forbid b when identity.id in ["u-3", "u-30"] and identity.id != "x"
  permit c when not (identity.id startswith "u-2")
}
""" + PADDING)
    engine = pdp.load(tmp_path)
    _flat(engine)
    _agree(engine, [{"identity": {"type": "user", "id": f"u-{i}"}, "action": "read", "resource": {"type": "t"}} for i in range(600)])
    if "compiled" in runtime.EVALUATORS:
        evaluator = runtime.EVALUATORS["compiled"](engine.program)
        evaluator.decide_many([{"identity": {"type": "user", "id": f"u-{i}"}, "action": "read", "resource": {"type": "t"}}
                               for i in range(600)])
        assert evaluator.path_tables()["identity.id"] is None  # turned off: its values did not repeat


def test_atoms_of_one_path_are_grouped():
    def path(*keys):
        return (ir.PATH, "identity", keys, ("identity", *[f"identity.{'.'.join(keys[:i + 1])}" for i in range(len(keys))]))
    env, level = path("env"), path("level")
    eq = (ir.EQ_STR, env, "prod", False)
    glob = (ir.MATCH_GLOB, env, "p*")
    two = (ir.COMPARE, "==", env, level)
    timed = (ir.COMPARE, "<", (ir.CALL, "age", (env,)), (ir.CONST, 5))
    token = (ir.DEFINED, (ir.PATH, ir.TOKEN_ROOT, ("sub",), ("token", "token.sub")))
    assert atoms.request_path(eq) is env
    assert atoms.request_path(two) is None  # two paths
    assert atoms.request_path(timed) is None  # the clock
    assert atoms.request_path(token) is None  # the token root
    assert atoms.request_path(env) is None  # a bare path: not worth a table
    assert atoms.path_groups([eq, two, glob, timed, (ir.DEFINED, level)]) == [(env, [0, 2])]


# ---- branch programs (compile/branches.py) -------------------------------------------------

_TREES = st.recursive(
    st.integers(0, 3),  # an atom: its number
    lambda kids: st.one_of(st.tuples(st.just(ir.NOT), kids),
                           st.tuples(st.sampled_from([ir.AND, ir.OR]), st.lists(kids, min_size=1, max_size=4))),
    max_leaves=12)


def _numbered(trees):
    """kinds and kids of the trees' nodes, numbered as the skeleton does (an equal subtree is
    one node: shared), the atom of each atom node, and each tree's number."""
    kinds, kids, atom_of, numbers = [], [], {}, {}

    def add(t):
        if t in numbers:
            return numbers[t]
        if isinstance(t, int):
            mine, kind = [], None
        else:
            mine, kind = [add(k) for k in ((t[1],) if t[0] == ir.NOT else t[1])], t[0]
        n = len(kinds)
        kinds.append(kind)
        kids.append(mine)
        if kind is None:
            atom_of[n] = t
        numbers[t] = n
        return n

    roots = [add(_hashable(t)) for t in trees]
    return kinds, kids, atom_of, roots


def _hashable(t):
    if isinstance(t, int):
        return t
    if t[0] == ir.NOT:
        return (ir.NOT, _hashable(t[1]))
    return (t[0], tuple(_hashable(k) for k in t[1]))


_WORD = {ir.AND: "and", ir.OR: "or", ir.NOT: "not"}


def _by_tree(kinds, kids, atom_of, values, n):
    """A node's value walked node by node: True, False, or ("error", the operator whose words
    the error has) when an atom is not a boolean."""
    if kinds[n] is None:
        return values[atom_of[n]]
    for k in kids[n]:
        v = _by_tree(kinds, kids, atom_of, values, k)
        if v not in (True, False):
            return ("error", _WORD[kinds[n]]) if kinds[k] is None else v
        if kinds[n] == ir.NOT:
            return not v
        if v == (kinds[n] == ir.OR):
            return v
    return kinds[n] == ir.AND


def _by_program(starts, steps, kinds, atom_of, values, n):
    pc = starts[n]
    while True:
        node, on_true, on_false, parent = steps[pc]
        if kinds[node] is None:
            v = values[atom_of[node]]
            if v not in (True, False):
                return ("error", _WORD[parent])
        else:
            v = _by_program(starts, steps, kinds, atom_of, values, node)
            if v not in (True, False):
                return v
        pc = on_true if v else on_false
        if pc < 0:
            return pc == branches.TRUE


@settings(max_examples=300, deadline=None)
@given(trees=st.lists(_TREES, min_size=1, max_size=4),
       values=st.fixed_dictionaries({i: st.sampled_from([True, False, 5]) for i in range(4)}))
def test_branch_programs_evaluate_as_the_trees(trees, values):
    """Every and/or/not clause run as a branch program has the value of its tree walked node by
    node, and an atom that is not a boolean fails it in the words of the operator above it;
    subtrees shared between clauses (and within one) are programs of their own."""
    kinds, kids, atom_of, roots = _numbered(trees)
    clauses = {r for r in roots if kinds[r] is not None}
    starts, steps = branches.programs(kinds, kids, clauses)
    assert clauses <= set(starts)
    assert all(kinds[s[0]] is None or s[0] in starts for s in steps)  # steps read atoms or whole nodes
    for r in clauses:
        assert _by_program(starts, steps, kinds, atom_of, values, r) == _by_tree(kinds, kids, atom_of, values, r)


NOT_BOOLEANS = """
policy p {
  permit not_int when not context.a
  permit and_int when context.b == 1 and context.a
  permit or_int when context.b == 2 or context.a
  permit nested when not (context.b == 3 or (context.a and true))
  forbid fails when context.b == 4 and (context.a or context.b == 5)
  permit target_int when context.b == 6 unless context.a or false
}
"""


def test_non_booleans_fail_in_the_words_of_the_operator_above(tmp_path):
    """``not 5``, ``… and 5``, ``… or 5`` at any depth of a clause: the error names the operator
    right above the value, on the skeleton as node by node."""
    (tmp_path / "p.pdl").write_text(NOT_BOOLEANS + PADDING)
    engine = pdp.load(tmp_path)
    _flat(engine)
    reqs = [{"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": "t"},
             "context": {"a": a, "b": b}} for a in (5, "x", True, False, [1]) for b in range(8)]
    _agree(engine, reqs)


# ---- atoms of two paths (kept per pair of rows) ---------------------------------------------

#: context.a and context.b each have atoms of their own (so each is a path group) and atoms of
#: both: comparisons, memberships, either order.
TWO_PATHS = """
policy p {
  permit a1 when context.a == 1 or context.a == "x"
  permit a2 when context.a in ["x", "y"] or context.a > 2
  permit b1 when context.b == 1 or context.b contains "x"
  permit b2 when context.b == "y" and not (context.b < 0)
  permit eq when context.a == context.b
  permit ne when context.b != context.a and context.a != 2
  permit lt when context.a < context.b or context.b >= context.a
  permit member when context.a in context.b
  forbid not_member when context.a not in context.b and context.b contains "y"
  permit sizes when context.b contains_any context.a or context.a == context.b
}
"""

_PAIR_VALUES = st.sampled_from([1, 2, 3, 1.0, True, False, "x", "y", "1", ["x"], ["x", "y"], ["y", "x"], [],
                                [1], {"k": 1}, None])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(_PAIR_VALUES, min_size=1, max_size=4), second=st.lists(_PAIR_VALUES, min_size=1, max_size=4))
def test_atoms_of_two_paths_agree(first, second, tmp_path):
    """Atoms of two paths kept per pair of the paths' rows: values equal across types, lists,
    maps and missing paths (no row: evaluated); every pair of the values drawn, twice, so that
    a value meets several of the other path's and later requests read the pairs' rows."""
    (tmp_path / "p.pdl").write_text(TWO_PATHS + PADDING)
    engine = pdp.load(tmp_path)
    _flat(engine)
    reqs = [{"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": "t"},
             "context": {k: v for k, v in (("a", a), ("b", b)) if v is not None}} for a in first for b in second]
    _agree(engine, reqs * 2)


def test_atoms_of_two_paths_are_kept_per_pair(tmp_path):
    (tmp_path / "p.pdl").write_text(TWO_PATHS + PADDING)
    engine = pdp.load(tmp_path)
    if "compiled" not in runtime.EVALUATORS:
        pytest.skip("the compiled evaluator is not built")
    evaluator = runtime.EVALUATORS["compiled"](engine.program)
    reqs = [{"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": "t"},
             "context": {"a": a, "b": b}} for a in ("x", "y", 1) for b in (["x"], ["y"], 2)]
    evaluator.decide_many(reqs * 3)
    assert {frozenset(k): v for k, v in evaluator.pair_tables().items()} == {frozenset(("context.a", "context.b")): 9}


def test_pairs_whose_values_never_repeat_are_turned_off(tmp_path):
    """Two paths whose values repeat one by one but not together (ids against ids): past a
    window the pair's atoms are evaluated as they are, with the same results."""
    (tmp_path / "p.pdl").write_text("""
policy p {
  permit own when resource.owner == identity.name or identity.name == "n-3"
  permit other when resource.owner != identity.name and resource.owner != "n-1"
  permit o1 when resource.owner == "n-2"
  permit n1 when identity.name matches "n-1*"
}
""" + PADDING)
    engine = pdp.load(tmp_path)
    reqs = [{"identity": {"type": "user", "id": "u", "name": f"n-{i % 23}"}, "action": "read",
             "resource": {"type": "t", "owner": f"n-{i % 29}"}} for i in range(600)]
    _agree(engine, reqs)
    if "compiled" in runtime.EVALUATORS:
        evaluator = runtime.EVALUATORS["compiled"](engine.program)
        evaluator.decide_many(reqs)
        assert list(evaluator.pair_tables().values()) == [None]
        assert evaluator.path_tables()["identity.name"] == 23
