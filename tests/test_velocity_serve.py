"""Velocity limits in real servers (SPEC §9): ``pdp serve`` processes taking units from one
real Redis, ``--workers 2`` on the in-memory store, Redis stopped and back, batches, the
decision log and the metrics. Budgets are small and loops bounded; every deadline is generous
except where the deadline is what is tested."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from pdp.client import Client
from rediskit import RedisServer, free_port
from serverkit import ServeProcess

POLICY = """
policy velocity {
  permit workload_charges_payments
    when identity.type == "workload" and action.name == "charge" and resource.type == "payment"
  permit workload_reads
    when identity.type == "workload" and action.name == "read"
  limit charges_per_identity 20 per 1h by identity.id
    when action.name == "charge"
    reason "at most 20 charges an hour per identity"
}
"""


def charge(who: str) -> dict:
    return {"identity": {"type": "workload", "id": who}, "action": "charge", "resource": {"type": "payment", "id": "p"}}


def read(who: str) -> dict:
    return {"identity": {"type": "workload", "id": who}, "action": "read", "resource": {"type": "doc", "id": "d"}}


@pytest.fixture
def policies(tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "velocity.pdl").write_text(POLICY)
    return folder


def serve(policies, *args) -> tuple[ServeProcess, int]:
    proc = ServeProcess(str(policies), "--addr", "127.0.0.1:0", *args)
    try:
        return proc, proc.wait_ready()
    except BaseException:
        proc.__exit__()
        raise


def race(targets: list[str], keys: list[str], attempts_per_key: int, threads: int = 8) -> dict[str, int]:
    """Charges for every key from ``threads`` threads, spread over the servers; ALLOWs per key."""
    jobs = [(keys[i % len(keys)], targets[i % len(targets)]) for i in range(attempts_per_key * len(keys))]
    allowed = {k: 0 for k in keys}
    lock = threading.Lock()
    clients = {t: Client(t, timeout=30) for t in targets}

    def one(job):
        who, target = job
        if clients[target].check(charge(who)).allowed:
            with lock:
                allowed[who] += 1

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, jobs))
    finally:
        for c in clients.values():
            c.close()
    return allowed


def test_two_servers_sharing_one_redis_allow_exactly_n_per_key(policies, tmp_path):
    with RedisServer(tmp_path) as redis:
        a, port_a = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s")
        b, port_b = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s")
        with a, b:
            allowed = race([f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"], ["k1", "k2", "k3"], 35)
            assert allowed == {"k1": 20, "k2": 20, "k3": 20}
            with Client(f"127.0.0.1:{port_a}") as c:
                d = c.check(charge("k1"))
                assert [(r.rule, r.message) for r in d.reasons] == [
                    ("velocity.charges_per_identity", "at most 20 charges an hour per identity")]
                assert d.reasons[0].annotations["limit_key"] == "k1"
                assert c.check(read("k1")).allowed  # reads are not limited
            assert a.stop() == 0 and b.stop() == 0


def test_workers_share_one_memory_budget(policies):
    proc, port = serve(policies, "--workers", "2", "--limits-timeout", "5s")
    with proc:
        # Many connections (one client per thread): SO_REUSEPORT spreads them over both workers.
        target = f"127.0.0.1:{port}"
        allowed = {"w1": 0, "w2": 0}
        lock = threading.Lock()

        def burst(who):
            with Client(target, timeout=30) as c:
                for _ in range(5):
                    if c.check(charge(who)).allowed:
                        with lock:
                            allowed[who] += 1

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(burst, ["w1", "w2"] * 8))  # 40 attempts per key
        assert allowed == {"w1": 20, "w2": 20}
        assert proc.stop() == 0


def test_redis_down_fails_closed_within_the_deadline_and_back_works_again(policies, tmp_path):
    port = free_port()
    redis = RedisServer(tmp_path, port).start()
    try:
        proc, grpc_port = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "200ms")
        with proc, Client(f"127.0.0.1:{grpc_port}", timeout=30) as c:
            assert c.check(charge("k")).allowed
            redis.stop()
            started = time.monotonic()
            d = c.check(charge("k"))
            took = time.monotonic() - started
            assert d.decision == "DENY"
            assert [(r.rule, r.message) for r in d.reasons] == [
                ("velocity.charges_per_identity", "failed closed: limit store unavailable")]
            assert took < 0.2 + 1.0  # the deadline, and a margin for a loaded machine
            assert c.check(read("k")).allowed  # requests that meet no limit are unaffected
            batch = c.check_batch([charge("k"), read("k")])
            assert [x.decision for x in batch] == ["DENY", "ALLOW"]
            redis.start()  # the same port, empty: limits work again without a restart
            deadline = time.monotonic() + 10
            while not c.check(charge("k")).allowed:
                assert time.monotonic() < deadline, "limits did not work again after Redis came back"
                time.sleep(0.1)
            allowed = sum(c.check(charge("k")).allowed for _ in range(25))
            assert allowed == 19  # one unit was taken by the request that saw Redis back
            assert proc.stop() == 0
    finally:
        redis.stop()


def test_a_batch_takes_units_in_request_order_in_one_round_trip(policies, tmp_path):
    with RedisServer(tmp_path) as redis:
        proc, port = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s")
        with proc, Client(f"127.0.0.1:{port}", timeout=30) as c:
            got = c.check_batch([charge("b")] * 19 + [read("b"), charge("b"), charge("b"), charge("c")])
            assert [d.decision for d in got] == ["ALLOW"] * 21 + ["DENY", "ALLOW"]


def test_the_decision_log_names_the_rule_and_key_and_metrics_count_them(policies, tmp_path):
    log = tmp_path / "decisions.jsonl"
    metrics_port = free_port()
    proc, port = serve(policies, "--workers", "1", "--decision-log", str(log),
                       "--metrics-addr", f"127.0.0.1:{metrics_port}", "--limits", "redis://127.0.0.1:1/0",
                       "--limits-timeout", "200ms")
    with proc, Client(f"127.0.0.1:{port}", timeout=30) as c:
        assert c.check(charge("k")).decision == "DENY"  # nothing listens on port 1: the store is down
        assert c.check(read("k")).allowed
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'pdp_limited_decisions_total{rule="velocity.charges_per_identity"} 1.0' in text
        assert "pdp_limit_store_errors_total 1.0" in text
        assert proc.stop() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["limited"] == [{"rule": "velocity.charges_per_identity", "key": "k"}]
    assert "limited" not in lines[1]


def test_shadow_candidates_never_take_units(policies, tmp_path):
    log = tmp_path / "decisions.jsonl"
    proc, port = serve(policies, "--workers", "1", "--decision-log", str(log), "--shadow", str(policies))
    with proc, Client(f"127.0.0.1:{port}", timeout=30) as c:
        assert sum(c.check(charge("s")).allowed for _ in range(25)) == 20  # the shadow took none of them
        assert proc.stop() == 0
    shadows = [json.loads(line)["shadow"]["decision"] for line in log.read_text().splitlines()]
    assert len(shadows) == 25  # every request was shadowed (looking at the live budget, taking nothing)


def test_authzen_over_http_takes_units_from_redis_and_fails_closed_without_it(policies, tmp_path):
    def evaluate(port: int, action: str) -> bool:
        body = json.dumps({"subject": {"type": "workload", "id": "h"}, "action": {"name": action},
                           "resource": {"type": "payment", "id": "p"}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/access/v1/evaluation", data=body,
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=30).read())["decision"]

    http_port = free_port()
    redis = RedisServer(tmp_path).start()
    try:
        proc, _ = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s",
                        "--http-addr", f"127.0.0.1:{http_port}")
        with proc:
            assert sum(evaluate(http_port, "charge") for _ in range(22)) == 20
            assert evaluate(http_port, "read")
            redis.stop()
            assert evaluate(http_port, "charge") is False
            assert evaluate(http_port, "read") is True
            assert proc.stop() == 0
    finally:
        redis.stop()
