"""Leaf specialization (pdp/compile/specialize.py): what a branch of the decision tree proved is
folded into the conditions of the rules in its leaves. Folding must never change a decision,
a reason or an error, wherever the proved comparisons sit (nested in not/or/and, negated, in
targets, in `unless`), and it must actually take the work away.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp.compile import ir

from strategies import conditions, requests, write_policy_set
from test_differential import _check_all

NESTED = """
policy a {
  target resource.type == "doc" and action.name in ["read", "write", "delete"]
  permit plain when action.name == "read"
  permit negated when action.name != "write" and identity.env == "prod"
  permit in_or when (action.name == "delete" or identity.env == "dev") and resource.owner == identity.id
  forbid notted when not (action.name in ["read", "write"]) and identity.level < 2
  permit unless_proved when identity.env == "prod" unless action.name == "write"
  forbid first_false_after_error when identity.level > 1 and action.name == "nope"
  permit error_then_true when identity.level >= 0 and action.name in ["read"] and identity.env != "x"
}
policy b {
  target resource.type == "todo"
  permit r when action.name == "read" and resource.tags contains "public"
  permit w when action.name == "write" and identity.level
  forbid d when action.name == "delete" or identity.env == "dev"
  permit any when resource.type == "todo" and action.name in ["read", "write"]
}
"""


def _grid():
    for rtype in ("doc", "todo", "other"):
        for action in ("read", "write", "delete", "nope"):
            for env in ("prod", "dev", None, 3):
                for level in (0, 2, "high", None):
                    identity = {"type": "workload", "id": "bob"}
                    if env is not None:
                        identity["env"] = env
                    if level is not None:
                        identity["level"] = level
                    yield {"identity": identity, "action": action,
                           "resource": {"type": rtype, "id": "r1", "owner": "bob", "tags": ["public"]}}


def test_folded_conditions_decide_as_the_reference(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [NESTED], None), backend="reference")
    _check_all(engine, list(_grid()))


def _leaf(tree: tuple, *values: str) -> tuple:
    for value in values:
        assert tree[0] == "switch"
        tree = tree[2][value]
    assert tree[0] == "leaf"
    return tree[1]


def test_proved_targets_and_guards_are_not_evaluated_again(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [NESTED], None))
    program = engine.program
    ids = [r.id for r in program.rules]

    def entries(*values):
        return {ids[rule]: (target, when, unless) for rule, target, when, unless in _leaf(program.permit_tree, *values)}

    # resource.type, then action.name, then identity.env (a guard behind the safe
    # `action.name != "write"` of a.negated, and the head of a.unless_proved).
    read = entries("doc", "read", "prod")
    # The target (resource.type and action.name) is proved by the branches taken.
    assert all(target is None for target, _, _ in read.values())
    # `action.name == "read"` is the whole condition: nothing is left to check.
    assert read["a.plain"] == (None, None, None)
    # `action.name != "write"` and `identity.env == "prod"` both fold to true.
    assert read["a.negated"] == (None, None, None)
    # `unless action.name == "write"` is false on the read branch: no unless to check.
    assert read["a.unless_proved"] == (None, None, None)
    # Where identity.env cannot be read, a.negated still evaluates it, to meet its error
    # (cached: it is also the condition of a.unless_proved there).
    missing_env = {ids[rule]: clauses for rule, *clauses in program.permit_tree[2]["doc"][2]["read"][4][1]}
    when = missing_env["a.negated"][1]
    assert when[0] == ir.CACHED and when[2][0] == ir.EQ_STR and when[2][2] == "prod"
    # On the write branch, the same unless is proved true: the rule can never apply there.
    # Where its `when` is proved too it is gone; where the `when` may still fail it stays
    # (with a constant unless).
    assert "a.unless_proved" not in entries("doc", "write", "prod")
    write_missing_env = {ids[rule]: clauses for rule, *clauses in program.permit_tree[2]["doc"][2]["write"][4][1]}
    assert write_missing_env["a.unless_proved"][2] == (ir.CONST, True)


def test_rules_proved_false_leave_the_leaf(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [NESTED], None))
    program = engine.program
    ids = [r.id for r in program.rules]
    read = [ids[rule] for rule, *_ in _leaf(program.permit_tree, "todo", "read")]
    # b.w needs action.name == "write": false on the read branch, before anything could fail.
    assert "b.w" not in read and "b.r" in read and "b.any" in read


def test_shared_conditions_of_rules_that_never_meet_are_not_cached(tmp_path):
    """The same condition in policies on different resource types is never evaluated twice
    for one request: caching it would only cost."""
    text = "".join(f'policy p{i} {{\n  target resource.type == "t{i}"\n'
                   f'  forbid x when identity.env != resource.env and identity.level < 2\n}}\n' for i in range(5))
    engine = pdp.load(write_policy_set(tmp_path / "s", [text], None))
    assert engine.program.slots == 0
    # Within one leaf, a `let` used twice is still cached.
    text = 'policy p {\n  let who = lower(identity.id)\n  permit x when who startswith "a" and who != "ab"\n}\n'
    engine = pdp.load(write_policy_set(tmp_path / "t", [text], None))
    assert engine.program.slots == 1
    assert engine.decide({"identity": {"type": "w", "id": "Ax"}, "action": "r",
                          "resource": {"type": "t"}}).decision == "ALLOW"


_GUARDS = st.sampled_from([
    'action.name == "read"', 'action.name != "write"', 'action.name in ["read", "delete"]',
    'action.name not in ["charge"]', 'resource.type == "doc"', 'identity.env == "prod"',
    'identity.env in ["dev", "staging"]', 'identity.type == "workload"',
])


@st.composite
def _guarded_conditions(draw):
    """Conditions that mix provable comparisons (at the head, nested, negated) with any other."""
    def atom():
        return draw(st.one_of(_GUARDS, conditions()))
    shape = draw(st.integers(0, 4))
    a, b, c = atom(), atom(), atom()
    return [f"{a} and {b}", f"not ({a}) and {b}", f"({a} or {b}) and {c}", f"{a} and ({b} or not ({c}))",
            f"{a}"][shape]


@st.composite
def _guarded_policy_sets(draw):
    lines = []
    for p in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(['resource.type == "doc"', 'resource.type in ["doc", "todo"]',
                                       'action.name == "read" and resource.type == "payment"', None]))
        lines.append(f"policy p{p} {{")
        if target:
            lines.append(f"  target {target}")
        for r in range(draw(st.integers(1, 5))):
            effect = draw(st.sampled_from(["permit", "forbid"]))
            rule = f"  {effect} r{r} when {draw(_guarded_conditions())}"
            if draw(st.booleans()):
                rule += f" unless {draw(_GUARDS)}"
            lines.append(rule)
        lines.append("}")
    return ["\n".join(lines) + "\n"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_guarded_policy_sets(), reqs=st.lists(requests(), min_size=2, max_size=10))
def test_generated_guarded_sets_agree_with_the_reference(texts, reqs):
    from strategies import load_policy_set
    _check_all(load_policy_set(texts), reqs)


@st.composite
def _dags(draw):
    """Random expression DAGs (AND/OR/NOT over shared sub-nodes) and, per tree, leaves of roots."""
    nodes: list[tuple] = [(ir.EQ_STR, (ir.PATH, "identity", ("k",), ("identity", "identity.k")), f"v{i}", False)
                          for i in range(3)]
    for _ in range(draw(st.integers(0, 12))):
        kids = draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=3))
        op = draw(st.sampled_from([ir.AND, ir.OR, ir.NOT]))
        nodes.append((ir.NOT, kids[0]) if op == ir.NOT else (op, tuple(kids)))
    leaf = st.lists(st.sampled_from(nodes), min_size=0, max_size=5)
    return [draw(st.lists(leaf, min_size=1, max_size=4)) for _ in range(2)]


@settings(max_examples=300, deadline=None)
@given(trees=_dags())
def test_per_request_uses_counts_as_walking_every_leaf(trees):
    """The pruned count equals the plain one: for every tree, the most uses one leaf makes of
    each node (a full walk of every leaf), summed over the two trees."""
    from pdp.compile.cse import count_uses, per_request_uses

    want: dict[int, int] = {}
    for leaves in trees:
        most: dict[int, int] = {}
        for roots in leaves:
            for key, n in count_uses(roots).items():
                most[key] = max(most.get(key, 0), n)
        for key, n in most.items():
            want[key] = want.get(key, 0) + n
    assert per_request_uses(trees) == want


#: Conjuncts no request can make fail: the index looks past them for a guard.
_SAFE = st.sampled_from([
    'defined(identity.env)', 'defined(resource.owner)', 'not defined(identity.level)',
    '(defined(identity.scopes) or action.name == "read")', 'identity.type == "workload"',
    'not (action.name in ["read"])', 'true',
])
#: Guards on paths a request may lack, or hold as another type.
_OPTIONAL_GUARDS = st.sampled_from([
    'identity.env == "prod"', 'identity.env in ["dev", "staging"]', 'resource.owner == "alice"',
    'identity.level == "high"', 'resource.env in ["prod"]',
])


@st.composite
def _safe_prefixed_policy_sets(draw):
    """Rules whose guards stand behind safe conjuncts, directly or through a `let` (an `and`
    nested in the `and`), followed by anything (errors included)."""
    lines = []
    for p in range(draw(st.integers(1, 4))):
        lines.append(f"policy p{p} {{")
        lines.append(f"  let k = {draw(_SAFE)} and {draw(_OPTIONAL_GUARDS)}")
        if draw(st.booleans()):
            lines.append(f"  target {draw(st.one_of(_SAFE, _GUARDS))}")
        for r in range(draw(st.integers(1, 5))):
            effect = draw(st.sampled_from(["permit", "forbid"]))
            head = draw(st.sampled_from(["k", f"{draw(_SAFE)} and {draw(_OPTIONAL_GUARDS)}",
                                         f"{draw(_SAFE)} and {draw(_SAFE)} and {draw(_GUARDS)}", "not k"]))
            rule = f"  {effect} r{r} when {head} and ({draw(conditions())})"
            if draw(st.booleans()):
                rule += f" unless {draw(st.one_of(_SAFE, _OPTIONAL_GUARDS))}"
            lines.append(rule)
        lines.append("}")
    return ["\n".join(lines) + "\n"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_safe_prefixed_policy_sets(), reqs=st.lists(requests(), min_size=2, max_size=10))
def test_guards_behind_safe_conjuncts_agree_with_the_reference(texts, reqs):
    from strategies import load_policy_set
    _check_all(load_policy_set(texts), reqs)


def test_a_guard_behind_defined_prunes(tmp_path):
    """`defined(x) and x == "v"` (a `let`, as the library's api_key) is a guard on x: requests
    with another x never evaluate the rules it heads, and the branch where x holds "v" folds
    both conjuncts away."""
    text = """
policy keys {
  let api_key = defined(identity.kind) and identity.kind == "api_key"
  forbid stale when api_key and identity.level > 2
  forbid ci when api_key and identity.env == "ci"
  forbid other when api_key and identity.level < 0
  forbid token when not api_key and identity.level > 5
}
"""
    engine = pdp.load(write_policy_set(tmp_path / "s", [text], None))
    tree = engine.program.forbid_tree
    ids = [r.id for r in engine.program.rules]
    path = tree[1][2] if tree[1][0] == ir.CACHED else tree[1]  # (cached: several rules read it)
    assert tree[0] == "switch" and path[0] == ir.PATH and path[2] == ("kind",)
    entries = {ids[rule]: clauses for rule, *clauses in tree[2]["api_key"][1]}
    assert sorted(entries) == ["keys.ci", "keys.other", "keys.stale"]  # keys.token: proved false
    assert entries["keys.stale"][1][0] == ir.COMPARE  # only `identity.level > 2` is left
    # The default (a kind other than "api_key") and the error branch (no kind) prove api_key
    # false: the rules it heads are gone, and keys.token only compares identity.level.
    for leaf in (tree[3], tree[4]):
        assert [(ids[rule], when[0]) for rule, _, when, _ in leaf[1]] == [("keys.token", ir.COMPARE)]
    base = {"identity": {"type": "workload", "id": "x", "level": 3}, "action": "read", "resource": {"type": "t"}}
    for kind in ("api_key", "jwt", 7, None):
        request = dict(base, identity=dict(base["identity"], **({} if kind is None else {"kind": kind})))
        want = pdp.load(write_policy_set(tmp_path / "r", [text], None), backend="reference").decide(request)
        assert engine.decide(request) == want
