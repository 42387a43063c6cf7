"""The in-memory limit stores (SPEC §9): the compiled one (``pdp.limits._memory``, atomic
under the GIL) answers exactly as the locked pure-Python one on generated operations, holds N
under threads racing for one budget, and the engine decides alike on either (and without
the compiled module at all)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pdp
from pdp.limits import Budget, limiter
from pdp.limits.memory import LockedMemoryStore, MemoryStore

compiled = pytest.importorskip("pdp.limits._memory")

RULES = ["p.a", "p.b", "q.a"]
KEYS = ["x", "y", "[z]", ""]


class Clock:
    def __init__(self):
        self.now = 10**15

    def __call__(self) -> int:
        return self.now


budgets = st.builds(Budget, st.sampled_from(RULES), st.sampled_from(KEYS), st.sampled_from([1, 2, 3, 50]),
                    st.sampled_from([10**9, 3600 * 10**9, 1000]))
operations = st.lists(st.one_of(
    st.tuples(st.just("take"), st.lists(budgets, max_size=3, unique_by=lambda b: b.rule), st.booleans()),
    st.tuples(st.just("take_one"), budgets, st.booleans()),
    st.tuples(st.just("many"), st.lists(st.lists(budgets, max_size=2, unique_by=lambda b: b.rule), max_size=3)),
    st.tuples(st.just("set"), budgets, st.integers(0, 60)),
    st.tuples(st.just("remaining"), budgets),
    st.tuples(st.just("wait"), st.integers(0, 4000 * 10**9)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_the_compiled_store_answers_as_the_locked_one(ops):
    clock = Clock()
    stores = [LockedMemoryStore(clock), compiled.MemoryStore(clock)]
    for op in ops:
        if op[0] == "wait":
            clock.now += op[1]
            continue
        answers = []
        for store in stores:
            if op[0] == "take":
                answers.append(store.take(op[1], op[2]))
            elif op[0] == "take_one":
                b = op[1]
                answers.append(store.take_one(b.rule, b.key, b.count, b.period_ns, op[2]))
            elif op[0] == "many":
                answers.append(store.take_many(op[1]))
            elif op[0] == "set":
                answers.append(store.set_remaining(op[1], op[2]))
            else:
                answers.append(store.remaining(op[1]))
            answers[-1] = (answers[-1], len(store))
        assert answers[0] == answers[1], op


def test_full_budgets_are_forgotten():
    """Once the table has grown past 4,096 keys (then past twice what the last sweep kept),
    the budgets that are full again are dropped; the others stay."""
    clock = Clock()
    sizes = []
    for store in (LockedMemoryStore(clock), compiled.MemoryStore(clock)):
        clock.now = 10**15
        for i in range(5000):  # a sweep at 4,097 keys finds none full: the next is at 8,194
            assert store.take_one("p.a", f"k{i}", 10, 10**9)
        assert store.take_one("p.b", "busy", 1, 10**12)  # full again only after 1,000 s
        clock.now += 2 * 10**9
        for i in range(3193):
            assert store.take([Budget("p.a", f"new{i}", 10, 10**9), Budget("q.a", f"new{i}", 10, 10**9)]) == []
        sizes.append(len(store))
        assert not store.take_one("p.b", "busy", 1, 10**12, take=False)
    assert sizes[0] == sizes[1] == 2 * 3193 + 1


@pytest.mark.parametrize("store_class", [LockedMemoryStore, compiled.MemoryStore])
def test_threads_racing_for_one_budget_get_exactly_n(store_class):
    store = store_class()
    granted = []
    start = threading.Barrier(8)

    def race():
        start.wait(10)
        mine = 0
        for i in range(4000):
            # Single budgets (take_one), and pairs that share one of them (take).
            if i % 2:
                mine += store.take_one("p.a", "k", 1000, 3600 * 10**9)
            else:
                mine += not store.take([Budget("p.a", "k", 1000, 3600 * 10**9), Budget("p.b", str(i), 5, 10**9)])
        granted.append(mine)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(granted) == 1000


POLICY = """
policy pay {
  permit charge when action.name == "charge"
  limit one 2 per 1h by identity.id
  limit two 3 per 1h by identity.id, resource.type when identity.id == "pairs"
}
"""


@pytest.mark.parametrize("backend", ["reference", *sorted(pdp.engine.runtime.EVALUATORS)])
def test_the_engine_decides_alike_on_every_store_and_without_the_compiled_path(tmp_path, backend, monkeypatch):
    (tmp_path / "p.pdl").write_text(POLICY)
    requests = [{"identity": {"type": "w", "id": who}, "action": "charge", "resource": {"type": "t"}}
                for who in ["a", "a", "pairs", "a", "b", "pairs", "pairs", "[a]", "[a]", "[a]", "pairs"]]

    def run(store, batch=False):
        e = pdp.load(tmp_path, backend=backend, limits=store)
        decisions = e.decide_many(requests) if batch else map(e.decide, requests)
        return [(d.decision, [(r.rule, dict(r.annotations)) for r in d.reasons]) for d in decisions]

    want = run(LockedMemoryStore(Clock()))
    assert [d for d, _ in want] == ["ALLOW", "ALLOW", "ALLOW", "DENY", "ALLOW", "ALLOW", "DENY", "ALLOW", "ALLOW",
                                    "DENY", "DENY"]
    assert want[6][1] == [("pay.one", {"limit_key": "pairs"})]
    assert run(compiled.MemoryStore(Clock())) == want
    # A batch takes its units in request order: the same decisions (the compiled store's
    # batches are settled in C, by FastSettle).
    assert run(compiled.MemoryStore(Clock()), batch=True) == want
    assert run(LockedMemoryStore(Clock()), batch=True) == want
    monkeypatch.setattr(limiter, "LimitedDecide", None)  # as without the extension
    monkeypatch.setattr(limiter, "FastSettle", None)
    assert run(LockedMemoryStore(Clock())) == want
    assert run(compiled.MemoryStore(Clock()), batch=True) == want


def test_the_default_store_is_the_compiled_one():
    assert MemoryStore is compiled.MemoryStore
