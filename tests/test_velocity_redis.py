"""The Redis limit store's two clients (pdp/limits/redis_store.py) against a real
``redis-server``: the blocking one (gRPC threads) and the asyncio one (the AuthZEN HTTP
server's loop) send the same script on the same keys and share budgets; keys carry a hash tag
(the script runs on a Redis Cluster node) and expire once their budget is full; a batch that
meets the script unloaded (Redis restarted) or half loaded takes no unit twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from pdp.limits import Budget, StoreUnavailable
from pdp.limits.redis_store import GCRA, _commands, _exchange, redis_key
from rediskit import RedisServer, free_port

redis_py = pytest.importorskip("redis")
HOUR_NS = 3_600 * 10**9


@pytest.fixture
def redis(tmp_path):
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def raw(redis):
    with redis_py.Redis.from_url(redis.url) as r:
        yield r


def store(redis, timeout: float = 5.0):
    from pdp.limits.redis_store import RedisStore

    return RedisStore(redis.url, timeout)


def test_the_blocking_and_asyncio_clients_share_budgets(redis):
    blocking = store(redis)
    budget = Budget("p.charges", "alice", 5, HOUR_NS)

    async def interleaved() -> list[list[int]]:
        client = blocking.asyncio()
        try:
            answers = []
            for i in range(4):
                answers.append(blocking.take([budget]))
                answers += await client.take_many([[budget], [Budget("p.charges", "bob", 5, HOUR_NS)]])
            return answers
        finally:
            await client.close()

    answers = asyncio.run(interleaved())
    # alice: taken by both clients in turn, five units in all; bob only by the asyncio one.
    alice = [answers[i] for i in range(len(answers)) if i % 3 != 2]
    bob = [answers[i] for i in range(len(answers)) if i % 3 == 2]
    assert alice == [[]] * 5 + [[0]] * 3
    assert bob == [[]] * 4
    blocking.close()


def test_keys_carry_a_hash_tag_and_expire_once_the_budget_is_full(redis, raw):
    s = store(redis)
    budget = Budget("velocity.per_second", "k", 2, 200 * 10**6)  # 2 per 200 ms: one unit back per 100 ms
    key = redis_key(budget)
    assert key.startswith("pdp:limit:{") and key.endswith("}:velocity.per_second")
    assert redis_key(Budget("other.rule", "k", 1, HOUR_NS)).split(":")[2] == key.split(":")[2]  # same slot
    assert s.take([budget]) == [] and s.take([budget]) == []
    assert s.take([budget]) == [0]
    ttl = raw.pttl(key)
    assert 0 < ttl <= 200  # the time until the budget is full again
    deadline = time.monotonic() + 5
    while raw.exists(key):
        assert time.monotonic() < deadline, "the key outlived its full budget"
        time.sleep(0.02)
    assert s.take([budget]) == [] and s.take([budget]) == []  # full again: a fresh burst
    s.close()


def test_the_script_runs_on_a_redis_cluster_node(tmp_path):
    # A one-node cluster holding every slot: Redis still refuses a script whose keys are in
    # different slots (CROSSSLOT), so this passes only because one request's keys share a tag.
    # The cluster bus gets its own free port (by default PORT + 10000, which may be taken or past 65535).
    with RedisServer(tmp_path, None, "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                     "--cluster-config-file", str(tmp_path / "nodes.conf")) as server, \
            redis_py.Redis.from_url(server.url) as r:
        r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while r.cluster("info")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the one-node cluster did not become ready"
            time.sleep(0.05)
        with pytest.raises(redis_py.ResponseError, match="same slot"):  # CROSSSLOT: what the tag is for
            r.eval(GCRA, 2, "pdp:limit:alice:p.per_hour", "pdp:limit:alice:p.per_minute", 1, 2, 3600, 5, 60)
        s = store(server)
        two = [Budget("p.per_hour", "alice", 2, HOUR_NS), Budget("p.per_minute", "alice", 5, 60 * 10**9)]
        assert s.take_many([two, two, two]) == [[], [], [0]]
        s.close()


def test_a_batch_that_meets_the_script_half_loaded_takes_no_unit_twice(redis, raw):
    # Redis restarted empty while another server loaded the script between this batch's two
    # calls: the first call answers NOSCRIPT, the second takes its unit. Only the first goes again.
    raw.script_flush()
    one, two = [Budget("p.r", "one", 3, HOUR_NS)], [Budget("p.r", "two", 3, HOUR_NS)]
    steps = _exchange([one, two], True)
    first = _commands(next(steps))
    replies = []
    try:
        raw.execute_command(*first[0])
    except redis_py.exceptions.NoScriptError as exc:
        replies.append(exc)
    raw.script_load(_commands(("EVAL", [()]))[0][1])  # "another server" loads it
    replies.append(raw.execute_command(*first[1]))
    again = steps.send(replies)
    assert again[0] == "EVAL" and len(again[1]) == 1 and "one" not in str(again[1])
    with pytest.raises(StopIteration) as done:
        steps.send([raw.execute_command(*_commands(again)[0])])
    assert done.value.value == [[], []]
    s = store(redis)
    assert s.take_many([one, one, one, two, two, two]) == [[], [], [0], [], [], [0]]  # one unit each taken
    s.close()


def test_a_restarted_redis_needs_no_restart_of_either_client(redis, raw):
    blocking = store(redis)

    async def batch() -> list[list[int]]:
        client = blocking.asyncio()
        try:
            return await client.take_many([[Budget("p.r", "a", 1, HOUR_NS)], [Budget("p.r", "b", 1, HOUR_NS)]])
        finally:
            await client.close()

    raw.script_flush()  # what a restarted, empty Redis looks like to the clients
    assert blocking.take_many([[Budget("p.r", "c", 1, HOUR_NS)]] * 2) == [[], [0]]
    raw.script_flush()
    assert asyncio.run(batch()) == [[], []]
    raw.script_flush()
    assert blocking.take([Budget("p.r", "a", 1, HOUR_NS)]) == [0]
    blocking.close()


def test_the_asyncio_client_fails_closed_within_its_deadline(redis):
    import os
    import signal

    blocking = store(redis, timeout=0.2)

    async def take() -> float:
        client = blocking.asyncio()
        started = time.monotonic()
        try:
            with pytest.raises(StoreUnavailable):
                await client.take_many([[Budget("p.r", "a", 1, HOUR_NS)]] * 3)
            return time.monotonic() - started
        finally:
            await client.close()

    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        assert asyncio.run(take()) < 0.2 + 0.5
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    blocking.close()


def test_ci_installs_redis_server_and_a_missing_one_fails_there(monkeypatch):
    from pathlib import Path

    import rediskit

    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive " \
           "apt-get install -y -qq redis-server)" in ci
    assert 'export CI="${CI:-1}"' in ci
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install|installs Debian's redis-server"):
        rediskit.require_redis()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        rediskit.require_redis()


def test_a_new_connection_sends_nothing_before_the_script(redis, raw):
    # After Redis comes back, each client connects again within the store's deadline: one
    # round trip for the script, not three (redis-py's CLIENT SETINFO is left out).
    def reads() -> int:
        return int(raw.info("stats")["total_reads_processed"])

    raw.script_load(GCRA)  # as another server would have
    blocking = store(redis)
    before = reads()
    assert blocking.take([Budget("p.r", "fresh", 1, HOUR_NS)]) == []
    assert reads() - before - 1 == 1

    async def fresh() -> int:
        client = blocking.asyncio()
        try:
            start = reads()
            assert await client.take_many([[Budget("p.r", "fresh2", 1, HOUR_NS)]]) == [[]]
            return reads() - start - 1
        finally:
            await client.close()

    assert asyncio.run(fresh()) == 1
    blocking.close()
