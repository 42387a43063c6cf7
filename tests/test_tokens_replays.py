"""The replay caches of DPoP proofs (RFC 9449 ``jti``s) are bounded, forget only proofs that
can no longer be used, refuse new proofs rather than forget a live one, and still see a
replay across the workers of a server (their parent's table) and across servers (Redis)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pdp
from pdp.limits import MemoryStore, StoreUnavailable
from pdp.limits.memory import LockedMemoryStore
from pdp.limits.once import OnceMarks
from pdp.limits.shared import ParentStore, SharedStore
from pdp.limits.store import StoreFull
from pdp.tokens import mint
from pdp.tokens.binding import Binding

from tokenkit import key, token, write_trust

POLICY = 'policy api { target resource.type == "api"  permit bound when token.bound }'
URL = "https://api.acme/v1/payments"
REPLAYED = "token rejected: dpop: the proof was used before (jti replayed)"
FULL = "token rejected: dpop: too many proofs in flight; try again"
S = 10**9


class Clock:
    def __init__(self):
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


TABLES = {
    "OnceMarks": lambda cap, clock: OnceMarks(cap, clock),
    "MemoryStore": lambda cap, clock: MemoryStore(clock=clock, max_marks=cap),
    "LockedMemoryStore": lambda cap, clock: LockedMemoryStore(clock=clock, max_marks=cap),
}


@pytest.mark.parametrize("kind", TABLES)
def test_a_full_table_refuses_a_new_key_and_forgets_only_keys_whose_time_is_up(kind):
    clock = Clock()
    table = TABLES[kind](3, clock)
    assert table.first_use("a", 10 * S) and table.first_use("b", 100 * S) and table.first_use("c", 100 * S)
    assert not table.first_use("a", 10 * S)  # a replay is a replay, full or not
    with pytest.raises(StoreFull):
        table.first_use("d", 100 * S)  # three live keys: none is forgotten to make room
    clock.ns += 10 * S  # a's time is up: it can go
    assert table.first_use("d", 100 * S)
    assert not table.first_use("b", 100 * S) and not table.first_use("d", 100 * S)
    with pytest.raises(StoreFull):
        table.first_use("e", 100 * S)
    clock.ns += 100 * S
    assert table.first_use("b", 100 * S)  # forgotten once its time was up: a new first use


# Calls: (key, ttl in s, seconds that pass before the call).
CALLS = st.lists(st.tuples(st.integers(0, 12), st.integers(1, 8), st.integers(0, 5)), max_size=80)


@settings(max_examples=60, deadline=None)
@given(calls=CALLS, cap=st.integers(1, 6))
def test_once_marks_answer_like_a_plain_model_and_never_hold_more_than_the_cap(calls, cap):
    clock = Clock()
    marks = OnceMarks(cap, clock)
    live: dict[str, int] = {}  # the model: key -> when it is forgotten
    for k, ttl, wait in calls:
        clock.ns += wait * S
        now = clock.ns
        live = {key_: until for key_, until in live.items() if until > now}
        key_ = f"k{k}"
        if key_ in live:
            expected: object = False
        elif len(live) >= cap:
            expected = StoreFull
        else:
            expected = True
            live[key_] = now + ttl * S
        try:
            answer: object = marks.first_use(key_, ttl * S)
        except StoreFull:
            answer = StoreFull
        assert answer == expected
        assert len(marks) <= cap and len(marks._expiry) <= cap  # the table and its heap


def _engine(tmp_path, replays=None):
    folder = tmp_path / "policies"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "p.pdl").write_text(POLICY)
    engine = pdp.load(folder, trust=write_trust(tmp_path / "trust", [key("ES256", "es1")]))
    if replays is not None:
        engine.tokens.share_replays(replays)
    return engine


class Holder:
    """A DPoP client: its key, a token bound to it, and requests with new proofs."""

    def __init__(self):
        self.key = mint.generate_key("ES256")
        self.token = token(key("ES256", "es1"), "ES256", cnf={"jkt": mint.jkt(self.key)})

    def proof(self) -> str:
        return mint.dpop_proof(self.key, "ES256", "POST", URL, self.token)

    def request(self, proof: str) -> dict:
        return {"identity": {"type": "workload", "id": "billing"}, "action": "charge", "resource": {"type": "api"},
                "context": {"token": self.token, "dpop": proof, "http": {"method": "POST", "url": URL}}}


def _reason(decision) -> str:
    return decision.reasons[0].message if not decision.allowed else "allowed"


def test_a_full_store_refuses_new_proofs_and_still_refuses_replays(tmp_path):
    engine = _engine(tmp_path, MemoryStore(max_marks=2))
    holder = Holder()
    first, second, third = holder.proof(), holder.proof(), holder.proof()
    assert _reason(engine.decide(holder.request(first))) == "allowed"
    assert _reason(engine.decide(holder.request(second))) == "allowed"
    assert _reason(engine.decide(holder.request(third))) == FULL
    assert _reason(engine.decide(holder.request(first))) == REPLAYED


def _two_engines_share_a_table_of_two(a, b) -> tuple[Holder, str]:
    """Engines ``a`` and ``b`` on stores that share one table of at most two live proofs: a
    proof used at one is a replay at the other, and a third live proof is refused. Returns the
    holder and a proof still live in the table."""
    holder = Holder()
    first, second, third = holder.proof(), holder.proof(), holder.proof()
    assert _reason(a.decide(holder.request(first))) == "allowed"
    assert _reason(b.decide(holder.request(first))) == REPLAYED
    assert _reason(b.decide(holder.request(second))) == "allowed"
    assert _reason(a.decide(holder.request(third))) == FULL  # two live proofs: the cap
    assert _reason(a.decide(holder.request(second))) == REPLAYED
    assert _reason(b.decide(holder.request(second))) == REPLAYED
    return holder, second


def test_the_workers_share_one_bounded_table_in_their_parent(tmp_path):
    """Two engines as two workers of ``pdp serve --workers 2``: each asks the parent's store over
    its socket; a proof used at one is a replay at the other, and the parent's table is bounded."""
    parent = ParentStore(str(tmp_path / "l.sock"), max_marks=2)
    workers = [SharedStore(parent.path, timeout=5.0) for _ in range(2)]
    try:
        a, b = (_engine(tmp_path / name, store) for name, store in zip("ab", workers))
        _two_engines_share_a_table_of_two(a, b)
    finally:
        for w in workers:
            w.close()
        parent.close()


def test_a_parent_store_forgets_a_key_once_its_time_is_up(tmp_path):
    parent = ParentStore(str(tmp_path / "l.sock"), max_marks=1)
    worker = SharedStore(parent.path, timeout=5.0)
    try:
        assert worker.first_use("k", 100_000_000)
        assert not worker.first_use("k", 100_000_000)
        with pytest.raises(StoreFull):
            worker.first_use("other", 100_000_000)
        time.sleep(0.15)
        assert worker.first_use("other", 100_000_000)  # k's time is up: forgotten to make room
        with pytest.raises(StoreFull):
            worker.first_use("k", 100_000_000)  # and other is live now
    finally:
        worker.close()
        parent.close()


def test_redis_keeps_one_bounded_set_of_proofs_for_every_server(tmp_path):
    from rediskit import RedisServer

    from pdp.limits.redis_store import ONCE_KEY, RedisStore

    (tmp_path / "redis").mkdir()
    with RedisServer(tmp_path / "redis") as redis:
        servers = [RedisStore(redis.url, 5.0, max_marks=2) for _ in range(2)]
        try:
            s1, s2 = servers
            assert s1.first_use("short", 50_000_000) and not s2.first_use("short", 50_000_000)
            time.sleep(0.1)
            assert s2.first_use("short", 50_000_000)  # forgotten once its time was up
            time.sleep(0.1)
            a, b = (_engine(tmp_path / name, store) for name, store in zip("ab", servers))
            holder, second = _two_engines_share_a_table_of_two(a, b)
            client = s1._client
            assert client.zcard(ONCE_KEY) == 2  # "short" was dropped to make room; never more than 2
            assert 0 < client.pttl(ONCE_KEY) <= 200_000  # the set leaves Redis when its last proof is stale
            # Redis out of memory under its default noeviction policy refuses the write: refused
            # like a store that does not answer, never a pass and never a forgotten proof.
            roomy = RedisStore(redis.url, 5.0, max_marks=100)
            servers.append(roomy)
            client.config_set("maxmemory", 1)
            with pytest.raises(StoreUnavailable, match="maxmemory"):
                roomy.first_use("another", 10**9)
            roomy_engine = _engine(tmp_path / "c", roomy)
            assert _reason(roomy_engine.decide(holder.request(holder.proof()))).startswith(
                "token rejected: dpop: the replay store did not answer (command not allowed when used memory")
            assert _reason(roomy_engine.decide(holder.request(second))) == REPLAYED  # reads still work
            client.config_set("maxmemory", 0)
            assert roomy.first_use("another", 10**9)
        finally:
            for s in servers:
                s.close()


def test_a_store_that_does_not_answer_rejects_the_proof():
    class Down:
        def first_use(self, key, ttl_ns):
            raise StoreUnavailable("timed out")

    binding = Binding(leeway=30, replays=Down())
    with pytest.raises(pdp.tokens.Rejected) as info:
        binding.first_use("jkt", "jti-1", 90.0)
    assert info.value.message == "token rejected: dpop: the replay store did not answer (timed out); try again"
