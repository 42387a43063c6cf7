"""The path groups' row tables (``_Group`` in pdp/runtime/_ceval.pyx): a C table keyed by the
kind and value of a request path (strs, ints, bools, lists of at most 16 strs by their items),
bounded, turned off when values do not repeat, and no row made for a value that will not be
kept. Against the reference evaluator, one evaluator deciding request after request (the
later ones read rows the earlier ones filled): tables that fill up, values that never repeat,
lists equal, reordered, with duplicates, with other items, longer than 16, and lists mutated
between requests.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import reference, runtime
from pdp.request import parse_request

from test_differential import _view
from test_skeleton import PADDING

pytestmark = pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the compiled evaluator is not built")

#: Atoms on one list-or-scalar path (context.a) and on a second path (context.b), with pairs.
LISTS = """
policy p {
  permit has_x when context.a contains "x"
  permit any_yz when context.a contains_any ["y", "z"]
  permit all_xy when context.a contains_all ["x", "y"]
  permit eq_xy when context.a == ["x", "y"]
  permit eq_yx when context.a == ["y", "x"]
  permit eq_xx when context.a == ["x", "x"]
  permit eq_one when context.a == 1 or context.a == "1"
  permit truth when context.a and not (context.a == false)
  forbid lt when context.a < 2 and context.a != 0
  permit b_in when context.b in context.a
  permit b_eq when context.b == "x" or context.b == "y"
}
"""

ITEMS = st.sampled_from(["x", "y", "z", "", "é", "x" * 40])
VALUES = st.one_of(
    st.lists(ITEMS, max_size=5),
    st.lists(ITEMS, min_size=15, max_size=19),  # around the 16 items kept by their items
    st.lists(st.one_of(ITEMS, st.integers(0, 2), st.booleans(), st.floats(0, 2)), max_size=4),
    st.lists(st.lists(ITEMS, max_size=2), max_size=2),
    ITEMS, st.integers(-2, 3), st.booleans(), st.sampled_from([1.0, 0.0, 2.5]),
    st.dictionaries(ITEMS, st.integers(0, 1), max_size=2), st.none())


def _request(a, b="x"):
    context = {} if a is None else {"a": a}
    if b is not None:
        context["b"] = b
    return {"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": "t"}, "context": context}


def _engine(tmp_path, text):
    (tmp_path / "p.pdl").write_text(text + PADDING)
    engine = pdp.load(tmp_path)
    evaluator = runtime.EVALUATORS["compiled"](engine.program)
    assert evaluator.flat
    return engine, evaluator


def _same(engine, evaluator, raw):
    want = _view(reference.decide(engine.policy_set, parse_request(raw), engine.revision))
    assert _view(evaluator.decide(raw)) == want, raw


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(VALUES, st.sampled_from(["x", "y", 1, None])), min_size=1, max_size=12),
       order=st.randoms(use_true_random=False))
def test_values_of_every_kind_read_their_own_rows(values, order, tmp_path_factory):
    """Each value decided, then again in another order and as equal copies (the rows filled)."""
    engine, evaluator = _engine(tmp_path_factory.mktemp("p"), LISTS)
    reqs = [_request(a, b) for a, b in values]
    again = list(reqs)
    order.shuffle(again)
    for raw in reqs + again + [_request(*v) for v in values]:
        _same(engine, evaluator, raw)


def test_equal_reordered_and_duplicated_lists_are_told_apart(tmp_path):
    engine, evaluator = _engine(tmp_path, LISTS)
    lists = [["x", "y"], ["y", "x"], ["x", "x"], ["x"], ["x", "y", "x"], ["x", "y", "y"], [], ["y"],
             ["x"] * 16, ["x"] * 17, ["x"] * 15 + ["y"], ["y"] + ["x"] * 15, ["x", 1], [1, "x"], ["x", True]]
    for raw in [_request(list(a)) for a in lists] * 3:
        _same(engine, evaluator, raw)
    assert evaluator.path_tables()["context.a"] == len([a for a in lists if len(a) <= 16 and all(type(i) is str for i in a)])


def test_a_list_mutated_between_requests_reads_its_new_items(tmp_path):
    """The table keeps a copy of a list's items: the same list object, changed, is another value."""
    engine, evaluator = _engine(tmp_path, LISTS)
    raw = _request(["x", "y"])
    items = raw["context"]["a"]
    for change in (lambda: None, lambda: items.reverse(), lambda: items.append("x"), lambda: items.clear(),
                   lambda: items.extend(["y", "y"]), lambda: items.__setitem__(0, "x"), lambda: items.append(1),
                   lambda: items.pop(), lambda: items.extend(["z"] * 20), lambda: items.__delitem__(slice(2, None))):
        change()
        for _ in range(2):
            _same(engine, evaluator, raw)


def _many(n):
    """A policy with ``n`` atoms on identity.id: its table keeps max(64, 65536 // n) values."""
    rules = []
    for r in range(n // 20):
        tests = " or ".join(f'identity.id == "v-{r * 20 + i}"' for i in range(20))
        rules.append(f"  permit r{r} when {tests}")
    rules.append('  forbid f when identity.id matches "v-1*" and identity.id != "v-13"')
    return "policy many {\n" + "\n".join(rules) + "\n}\n"


def test_a_full_table_keeps_its_values_and_evaluates_the_others(tmp_path):
    """1,100 atoms: 64 values kept. Past them the table is full; values met again still hit
    (the group stays on), new ones are evaluated atom by atom, with the same results."""
    engine, evaluator = _engine(tmp_path, _many(1100))
    reqs = [{"identity": {"type": "user", "id": f"v-{i}"}, "action": "read", "resource": {"type": "t"}}
            for i in range(0, 1200, 7)]
    kept, new = reqs[:64], reqs[64:]
    mixed = [r for i, raw in enumerate(new) for r in (raw, kept[i % 64], kept[(5 * i) % 64])]
    for raw in kept * 5 + mixed + new:  # full after the first 64; a third of the rest missed
        _same(engine, evaluator, raw)
    assert evaluator.path_tables()["identity.id"] == 64


def test_values_that_never_repeat_turn_the_group_off(tmp_path):
    engine, evaluator = _engine(tmp_path, LISTS)
    for i in range(600):
        _same(engine, evaluator, _request(f"id-{i}" if i % 3 else [f"id-{i}", "x"], "x" if i % 2 else f"b-{i}"))
    assert evaluator.path_tables()["context.a"] is None
    assert evaluator.pair_tables()[("context.a", "context.b")] is None  # (its rows would need context.a's)
    for raw in [_request(["x", "y"]), _request("x"), _request(1)]:  # evaluated as they are
        _same(engine, evaluator, raw)


def test_values_met_once_get_no_row(tmp_path):
    """Ids among values that repeat: the group stays on (most look-ups hit), the repeating
    values get their rows from their second request, and the ids none (evaluated as they are)."""
    engine, evaluator = _engine(tmp_path, LISTS)
    for i in range(300):
        for raw in (_request(f"id-{i}"), _request("x"), _request(["x", "y"]), _request(1)):
            _same(engine, evaluator, raw)
    # (an id whose hash shares a bit with one met earlier gets a row: a few do)
    assert 3 <= evaluator.path_tables()["context.a"] < 3 + 30


def test_values_no_table_keeps_turn_the_group_off(tmp_path):
    """A path mostly a map, a float, missing or a list no row keeps (longer than 16 items, of
    non-strs) is turned off like one whose values do not repeat, and its pair with it; the
    atoms, evaluated as they are from then on, decide as the reference, kept values too."""
    unkept = [lambda i: {"k": i % 3}, lambda i: 0.5 * (i % 4), lambda i: None, lambda i: ["x"] * 17,
              lambda i: ["x", i % 2]]
    for make in unkept:
        engine, evaluator = _engine(tmp_path, LISTS)
        for i in range(600):
            a = make(i) if i % 4 else ["x", "y"]  # a quarter kept (repeating), the rest not
            _same(engine, evaluator, _request(a, "x" if i % 2 else "y"))
        assert evaluator.path_tables()["context.a"] is None, make(1)
        assert evaluator.pair_tables()[("context.a", "context.b")] is None
        for raw in [_request(["x", "y"]), _request("x"), _request(1), _request(make(3)), _request(None)]:
            _same(engine, evaluator, raw)


def test_a_path_mostly_kept_stays_on_with_some_values_unkept(tmp_path):
    """A fifth of the look-ups a map or missing: the group stays on and keeps the others."""
    engine, evaluator = _engine(tmp_path, LISTS)
    for i in range(600):
        a = ({"k": 1} if i % 2 else None) if i % 5 == 0 else [["x", "y"], "x", 1, ["y"]][i % 4]
        _same(engine, evaluator, _request(a))
    assert evaluator.path_tables()["context.a"] == 4


#: LISTS with a rule of no condition (its leaf step reads no node: the value true) and one
#: whose only clause is a pair's atom, between rules on context.a; and a policy whose target
#: and ``let`` are and/or clauses its rules share (each evaluated once a request by its own
#: branch program, whose steps read the rows too).
TURNING = LISTS.replace("  permit has_x", '  permit always\n  permit has_x').replace(
    "  permit b_eq", '  forbid b_in_not when not (context.b in context.a) and context.a == ["z"]\n  permit b_eq') + """
policy shared {
  target context.a contains "x" or (context.b in context.a and context.a != ["z"])
  let narrow = context.a == ["x", "y"] or not (context.b == "z" or context.a contains "y")
  permit shared_narrow when narrow
  permit shared_both when narrow and context.b in context.a
  forbid shared_wide when not narrow and context.a contains_any ["z", "y"]
}
"""

KEPT = st.sampled_from([["x", "y"], "x", 1, ["y"], "z", ["z"], True])
UNKEPT = st.one_of(st.builds(lambda i: f"id-{i}", st.integers(0, 10**6)), st.builds(lambda i: {"k": i}, st.integers(0, 2)),
                   st.sampled_from([0.5, None, ["x"] * 17, ["x", 2]]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(before=st.lists(st.tuples(KEPT, st.sampled_from(["x", "y", "z", None])), min_size=1, max_size=8),
       turn=st.integers(260, 400), after=st.lists(st.tuples(st.one_of(KEPT, UNKEPT), st.sampled_from(["x", "z", None])),
                                                  min_size=1, max_size=8),
       data=st.data())
def test_leaf_steps_of_a_group_turned_off_read_the_atoms(before, turn, after, data, tmp_path_factory):
    """Requests whose values repeat (kept: the leaf steps read the rows, a group's row fetched
    by the step that first needs it), then values that do not (the group and its pair turn off
    mid-run: their leaf steps read the atoms from then on), then both mixed, in one evaluator:
    every decision as the reference's, a rule of no condition in the same leaf."""
    engine, evaluator = _engine(tmp_path_factory.mktemp("turning"), TURNING)
    for a, b in before * 3:
        _same(engine, evaluator, _request(a, b))
    for i in range(turn):  # a value met once each time: the window of 256 turns the groups off
        _same(engine, evaluator, _request(f"once-{i}" if i % 3 else [f"once-{i}", "x"], "x" if i % 2 else f"b-{i}"))
    assert evaluator.path_tables()["context.a"] is None
    assert evaluator.pair_tables()[("context.a", "context.b")] is None
    for a, b in data.draw(st.permutations(before + after)):
        _same(engine, evaluator, _request(a, b))


def test_threads_share_the_rows_while_groups_turn_off(tmp_path):
    """Four threads deciding on one evaluator while its groups fill and turn off (a request
    holds the rows it read borrowed: a table keeps them as long as the evaluator lives), the
    interpreter switching threads as often as it can: every decision as the reference's."""
    import sys
    import threading

    engine, evaluator = _engine(tmp_path, TURNING)
    kept = [["x", "y"], "x", 1, ["y"], "z", ["z"], True, None]

    def requests(thread: int) -> list[dict]:
        """Kept values, then mostly values met once by this thread alone (so they stay misses
        whatever the interleaving): the windows turn the groups off."""
        out = []
        for i in range(600):
            once = f"once-{thread}-{i}"
            a = kept[i % len(kept)] if i < 150 or i % 4 == 0 else (once if i % 3 else [once, "x"])
            out.append(_request(a, ["x", "y", "z", None][i % 4]))
        return out

    reqs = [requests(k) for k in range(4)]
    want = [[_view(reference.decide(engine.policy_set, parse_request(r), engine.revision)) for r in mine]
            for mine in reqs]
    failures: list = []

    def decide(thread: int) -> None:
        for raw, expected in zip(reqs[thread], want[thread]):
            got = _view(evaluator.decide(raw))
            if got != expected:
                failures.append((raw, got, expected))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=decide, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert evaluator.path_tables()["context.a"] is None  # (turned off during the run)
