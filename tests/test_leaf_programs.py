"""A leaf's rules run as one program (``leaf_programs`` in pdp/compile/branches.py, run by
``_Skeleton.leaf`` in pdp/runtime/_ceval.pyx): each rule's target, when and unless chained,
a clause read by one rule inlined, rules in a row that share a target (a policy's) reading
it once (false: past them all; an error: all of them fail with it). Every rule's outcome,
the reasons in order and the errors (text and order) must be those of the rules checked one
by one, and the compiled evaluator must decide exactly as the reference evaluator.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import runtime
from pdp.compile import branches

from test_skeleton import _TREES, _WORD, _agree, _by_program, _by_tree, _flat, _numbered

# ---- the programs against the rules checked one by one (compile/branches.py) ----------------


def _expected(entries, leaf, kinds, kids, atom_of, values):
    """Each rule of ``leaf`` checked one by one, as _applies does: (place, "applies") or
    (place, ("fails", clause, error)); rules that do not apply are left out."""
    out = []
    for i, e in enumerate(leaf):
        for clause, n in enumerate(entries[e][:3]):
            if n < 0:
                continue
            v = _by_tree(kinds, kids, atom_of, values, n)
            if type(v) is not bool:
                out.append((i, ("fails", clause, v if type(v) is tuple else ("clause", clause))))
                break
            if v != (clause < 2):  # a false target or when, a true unless
                break
        else:
            out.append((i, "applies"))
    return out


def _run_step(step, starts, steps, kinds, atom_of, values, out):
    """One leaf step as _Skeleton.leaf runs it (whole nodes by their own programs): its
    outcomes appended to ``out``; returns its move (next step or distance, shifted, with the
    applies bit)."""
    node, on_true, on_false, parent, entry, last, clause, fail = step
    if node < 0:
        v = True
    elif kinds[node] is None:
        v = values[atom_of[node]]
        if type(v) is not bool:
            v = ("clause", clause) if parent is None else ("error", _WORD[parent])
    else:
        v = _by_program(starts, steps, kinds, atom_of, values, node)
    if type(v) is not bool:
        out.extend((e, ("fails", clause, v)) for e in range(entry, last + 1))
        return fail
    move = on_true if v else on_false
    if move & 1:
        out.append((entry, "applies"))
    return move


def _run_leaf(start, lsteps, starts, steps, kinds, atom_of, values):
    """A leaf's program as _Skeleton.leaf runs it."""
    out = []
    pc = start
    while pc >= 0:
        pc = _run_step(lsteps[pc], starts, steps, kinds, atom_of, values, out) >> 1
    return out


@st.composite
def _leaves(draw):
    trees = draw(st.lists(_TREES, min_size=1, max_size=6))
    kinds, kids, atom_of, roots = _numbered(trees)
    clause = st.one_of(st.just(-1), st.sampled_from(roots))
    entries = []
    for _ in range(draw(st.integers(1, 8))):  # policies: a target (or none) and a few rules
        target = draw(clause)
        forbid = draw(st.booleans())
        for _ in range(draw(st.integers(1, 4))):
            entries.append((target, draw(clause), draw(clause), draw(st.booleans()) and forbid))
    leaves = [draw(st.lists(st.sampled_from(range(len(entries))), max_size=12, unique=True).map(sorted))
              for _ in range(draw(st.integers(1, 3)))]
    return kinds, kids, atom_of, entries, leaves


@settings(max_examples=400, deadline=None)
@given(leaf=_leaves(), values=st.fixed_dictionaries({i: st.sampled_from([True, False, 5]) for i in range(4)}))
def test_leaf_programs_give_the_rules_outcomes(leaf, values):
    """Per leaf, the program's outcomes (rules that apply, rules that fail: on which clause,
    with which error, in which order) are those of the rules checked one by one; shared
    targets in a row, shared clauses, clauses that are atoms, rules with nothing to check."""
    kinds, kids, atom_of, entries, leaves = leaf
    starts, steps, leaf_starts, lsteps = branches.leaf_programs(kinds, kids, entries, leaves)
    assert len(leaf_starts) == len(leaves)
    for start, mine in zip(leaf_starts, leaves):
        assert (start == -1) == (not mine)
        assert _run_leaf(start, lsteps, starts, steps, kinds, atom_of, values) == \
            _expected(entries, mine, kinds, kids, atom_of, values)


def _run_relative(start, rsteps, starts, steps, kinds, atom_of, values):
    """A leaf's program of relative_steps as _Skeleton.leaf runs it: moves as distances."""
    out = []
    pc = start
    while True:
        move = _run_step(rsteps[pc], starts, steps, kinds, atom_of, values, out)
        if move >> 1 == 0:
            return out
        assert 0 < move >> 1 <= branches.REACH
        pc += move >> 1


@settings(max_examples=300, deadline=None)
@given(leaf=_leaves(), values=st.fixed_dictionaries({i: st.sampled_from([True, False, 5]) for i in range(4)}),
       reach=st.sampled_from([1, 2, 3, 5, 8, branches.REACH]))
def test_relative_steps_give_the_rules_outcomes(leaf, values, reach):
    """The leaf programs with their moves as forward distances (16-bit steps) give the
    outcomes of the rules checked one by one; a leaf with a move past ``reach`` is marked
    (decided rule by rule), and only such a leaf."""
    kinds, kids, atom_of, entries, leaves = leaf
    starts, steps, leaf_starts, lsteps = branches.leaf_programs(kinds, kids, entries, leaves)
    rsteps, far = branches.relative_steps(lsteps, leaf_starts, reach)
    assert len(rsteps) == len(lsteps)
    assert [s[0] for s in rsteps] == [s[0] for s in lsteps] and [s[3:7] for s in rsteps] == [s[3:7] for s in lsteps]
    ends = sorted(s for s in leaf_starts if s >= 0) + [len(lsteps)]
    for start, mine in zip(leaf_starts, leaves):
        if start < 0:
            continue
        end = ends[ends.index(start) + 1]
        longest = max(t >> 1 if t >> 1 != branches.END else pc
                      for pc in range(start, end) for t in (lsteps[pc][1], lsteps[pc][2], lsteps[pc][7])) \
            if end > start else start
        moves = [(t >> 1) - pc for pc in range(start, end) for t in (lsteps[pc][1], lsteps[pc][2], lsteps[pc][7])
                 if t >> 1 != branches.END]
        assert longest < end
        assert (start in far) == any(d > reach for d in moves)
        if start not in far:
            assert _run_relative(start, rsteps, starts, steps, kinds, atom_of, values) == \
                _expected(entries, mine, kinds, kids, atom_of, values)


def test_a_shared_target_is_read_once_and_skips_its_rules():
    """Three rules of a policy target (an and of two atoms) in a row: one read of it (a whole
    node: the forbid reads it too), and when it is false the program goes past all three."""
    kinds, kids = [None, None, branches.AND, None, None], [[], [], [0, 1], [], []]
    entries = [(2, 3, -1, False), (2, 4, -1, False), (2, -1, 3, False), (-1, 4, -1, False), (2, 3, -1, True)]
    starts, steps, leaf_starts, lsteps = branches.leaf_programs(kinds, kids, entries, [[0, 1, 2, 3], [4]])
    program = lsteps[leaf_starts[0]:leaf_starts[1]]
    assert [s[0] for s in program] == [2, 3, 4, 3, 4]  # the target once, then when / unless
    assert program[0][2] >> 1 == leaf_starts[0] + 4  # false: to rule 3's when
    assert program[0][4:6] == (0, 2)  # an error fails rules 0 to 2
    assert 2 in starts


# ---- the evaluator against the reference --------------------------------------------------

#: Values a context attribute takes: booleans (targets true and false), non-booleans (a
#: clause or an operand that is not a boolean), and missing (an error).
_VALUES = [True, False, 1, 3, "x", ["x"], None]

_ATTRS = ("a", "b", "c", "d")


@st.composite
def _condition(draw, depth=2):
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        attr = "context." + draw(st.sampled_from(_ATTRS))
        form = draw(st.integers(0, 5))
        if form == 0:
            return attr  # a bare attribute: not a boolean when it holds 1 or "x"
        if form == 1:
            return f'{attr} == {draw(st.sampled_from(["true", "1", chr(34) + "x" + chr(34)]))}'
        if form == 2:
            return f"{attr} > 2"  # fails on strings, lists, booleans
        if form == 3:
            return f'{attr} in ["x", "y"]'
        if form == 4:
            return f"defined({attr})"
        return f'resource.kind == "{draw(st.sampled_from(["k1", "k2"]))}"'
    if draw(st.integers(0, 4)) == 0:
        return f"not ({draw(_condition(depth - 1))})"
    op = draw(st.sampled_from(["and", "or"]))
    return f" {op} ".join(f"({draw(_condition(depth - 1))})" for _ in range(draw(st.integers(2, 3))))


@st.composite
def _policy_sets(draw):
    """Policies with a target drawn from a few (so the same target serves several policies,
    and a policy's permits and forbids), many rules each, reasons that quote a value."""
    targets = draw(st.lists(_condition(), min_size=1, max_size=3))
    clauses = draw(st.lists(_condition(), min_size=2, max_size=8))
    texts = []
    for p in range(draw(st.integers(2, 6))):
        lines = [f"policy p{p} {{"]
        target = draw(st.one_of(st.none(), st.sampled_from(targets)))
        if target is not None:
            lines.append(f"  target {target}")
        for r in range(draw(st.integers(1, 8))):
            effect = "forbid" if draw(st.integers(0, 3)) == 0 else "permit"
            lines.append(f"  {effect} r{r}")
            if draw(st.integers(0, 4)):
                lines.append(f"    when {draw(st.sampled_from(clauses))}")
            if draw(st.integers(0, 3)) == 0:
                lines.append(f"    unless {draw(st.sampled_from(clauses))}")
            if draw(st.integers(0, 3)) == 0:
                lines.append(f'    reason "r{r} of p{p}: {{context.a}}"')
        lines.append("}")
        texts.append("\n".join(lines))
    return texts


#: Untargeted rules enough for the evaluator to decide on the skeleton, before and after.
_PAD = "policy pad {\n" + "\n".join(f"  permit pad{i} when context.a == {i + 10}" for i in range(34)) + "\n}\n"

_REQUESTS = st.lists(
    st.tuples(st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(["doc", "img"]),
              *[st.sampled_from(_VALUES) for _ in _ATTRS]),
    min_size=1, max_size=6)


def _request(kind, rtype, *values):
    return {"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": rtype, "kind": kind},
            "context": {k: v for k, v in zip(_ATTRS, values) if v is not None}}


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(texts=_policy_sets(), reqs=_REQUESTS)
def test_leaves_decide_as_the_reference(texts, reqs, tmp_path_factory):
    """Many rules a leaf, targets shared by policies and by a policy's permits and forbids,
    targets true, false, failing and not booleans, forbids failing closed, reasons quoting
    values: decisions, reasons (their order) and errors (text, order) as the reference."""
    root = tmp_path_factory.mktemp("leaf")
    (root / "p.pdl").write_text("\n".join([_PAD, *texts, _PAD.replace("pad", "tail")]))
    engine = pdp.load(root)
    _flat(engine)
    _agree(engine, [_request(*r) for r in reqs] * 2)


@pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the compiled evaluator is not built")
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(texts=_policy_sets(), reqs=_REQUESTS, reach=st.sampled_from([1, 3, 12]))
def test_leaves_past_the_reach_decide_as_the_reference(texts, reqs, reach, tmp_path_factory, monkeypatch):
    """Leaves whose programs move farther than a step reaches (lowered here from 32,767 to
    a few steps) are decided rule by rule, beside leaves decided by their programs: the
    same decisions, reasons and errors as the reference."""
    from pdp.runtime import _ceval

    monkeypatch.setattr(_ceval, "_LEAF_REACH", reach)
    root = tmp_path_factory.mktemp("reach")
    (root / "p.pdl").write_text("\n".join([_PAD, *texts, _PAD.replace("pad", "tail")]))
    engine = pdp.load(root)
    _flat(engine)
    _agree(engine, [_request(*r) for r in reqs] * 2)


def test_targets_on_resource_types_split_leaves(tmp_path):
    """Targets on the resource type put the policies' rules in leaves of their own (entries
    specialised per leaf, the untargeted rules in every leaf): each leaf's program agrees."""
    policies = [_PAD]
    for i, (rtype, cond) in enumerate([("doc", "context.a"), ("img", "context.b > 2"), ("doc", "context.c == 1"),
                                        (None, 'context.d in ["x"]'), ("img", "context.a or context.b")]):
        target = f'resource.type == "{rtype}" and {cond}' if rtype else cond
        policies.append(f"policy q{i} {{\n  target {target}\n  permit a when context.b == true\n"
                        f"  forbid b when context.c > 2 unless context.d\n  permit c\n}}\n")
    (tmp_path / "p.pdl").write_text("\n".join(policies))
    engine = pdp.load(tmp_path)
    _flat(engine)
    reqs = [_request(k, t, a, b, c, d) for k in ("k1",) for t in ("doc", "img", "pdf")
            for a in (True, 1, None) for b in (True, 3, "x") for c in (1, 3, None) for d in (True, "x")]
    _agree(engine, reqs)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
