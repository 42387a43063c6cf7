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
        return evaluation(port, "h", action)["decision"]

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


# ---- AuthZEN over HTTP with budgets in Redis: the asyncio client (pdp/server/http.py)


def authzen(who: str, action: str) -> dict:
    return {"subject": {"type": "workload", "id": who}, "action": {"name": action},
            "resource": {"type": "payment", "id": "p"}}


def post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def evaluation(port: int, who: str, action: str) -> dict:
    return post(port, "/access/v1/evaluation", authzen(who, action))


def evaluations(port: int, items: list[tuple[str, str]], semantic: str | None = None) -> list[dict]:
    body: dict = {"evaluations": [authzen(who, action) for who, action in items]}
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic}
    return post(port, "/access/v1/evaluations", body)["evaluations"]


def reasons(answer: dict) -> list[tuple[str, str]]:
    return [(r["rule"], r["message"]) for r in answer["context"]["reasons"]]


def reads_processed(r) -> int:
    """Redis's count of reads from its clients' sockets (this INFO's own included): a pipeline
    sent at once is one read."""
    return int(r.info("stats")["total_reads_processed"])


def test_http_workers_share_the_parents_budget_with_grpc(policies):
    """``--workers 2 --http-addr``, no Redis: both workers' event loops take from the parent's
    budgets over its socket (the asyncio client), together with gRPC calls."""
    http_port = free_port()
    proc, port = serve(policies, "--workers", "2", "--limits-timeout", "5s", "--http-addr", f"127.0.0.1:{http_port}")
    with proc:
        proc.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:\d+")

        def charges(job):
            kind, who = job
            if kind == "grpc":
                with Client(f"127.0.0.1:{port}", timeout=30) as c:
                    return who, sum(c.check(charge(who)).allowed for _ in range(4))
            if kind == "batch":  # three charges and a read: the read is never limited
                got = evaluations(http_port, [(who, "charge"), (who, "read"), (who, "charge"), (who, "charge")])
                assert got[1]["decision"] is True
                return who, sum(g["decision"] for i, g in enumerate(got) if i != 1)
            return who, sum(evaluation(http_port, who, "charge")["decision"] for _ in range(4))

        jobs = [(kind, who) for who in ("m1", "m2") for kind in ["grpc"] * 3 + ["http"] * 2 + ["batch"] * 3]
        allowed = {"m1": 0, "m2": 0}
        with ThreadPoolExecutor(8) as pool:
            for who, n in pool.map(charges, jobs):  # 29 charges per key
                allowed[who] += n
        assert allowed == {"m1": 20, "m2": 20}
        denied = evaluation(http_port, "m1", "charge")
        assert denied["decision"] is False
        assert reasons(denied) == [("velocity.charges_per_identity", "at most 20 charges an hour per identity")]
        assert evaluation(http_port, "m1", "read")["decision"] is True
        assert proc.stop() == 0


def test_http_and_grpc_servers_racing_on_one_redis_allow_exactly_n_per_key(policies, tmp_path):
    with RedisServer(tmp_path) as redis:
        http_port = free_port()
        a, port_a = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s")
        b, _ = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s",
                     "--http-addr", f"127.0.0.1:{http_port}")
        with a, b:
            keys = ["h1", "h2", "h3"]
            allowed = {k: 0 for k in keys}
            lock = threading.Lock()

            def grpc_charges(who):
                with Client(f"127.0.0.1:{port_a}", timeout=30) as c:
                    return sum(c.check(charge(who)).allowed for _ in range(4))

            def http_charges(who):
                return sum(evaluation(http_port, who, "charge")["decision"] for _ in range(4))

            def http_batch(who):  # three charges and a read in one request: the read is never limited
                got = evaluations(http_port, [(who, "charge"), (who, "read"), (who, "charge"), (who, "charge")])
                assert got[1]["decision"] is True
                return sum(g["decision"] for g in got) - 1

            def one(job):
                kind, who = job
                n = {"grpc": grpc_charges, "http": http_charges, "batch": http_batch}[kind](who)
                with lock:
                    allowed[who] += n

            # Per key: 3 gRPC clients x 4 + 2 HTTP clients x 4 + 3 batches x 3 = 29 charges for 20 units.
            jobs = [(kind, who) for who in keys for kind in ["grpc"] * 3 + ["http"] * 2 + ["batch"] * 3]
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, jobs))
            assert allowed == {"h1": 20, "h2": 20, "h3": 20}
            denied = evaluation(http_port, "h1", "charge")
            assert denied["decision"] is False
            assert reasons(denied) == [("velocity.charges_per_identity", "at most 20 charges an hour per identity")]
            assert evaluation(http_port, "h1", "read")["decision"] is True
            assert a.stop() == 0 and b.stop() == 0


def test_http_fails_closed_within_the_deadline_when_redis_does_not_answer_and_works_again(policies, tmp_path):
    import os
    import signal

    http_port = free_port()
    redis = RedisServer(tmp_path).start()
    try:
        proc, _ = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "200ms",
                        "--http-addr", f"127.0.0.1:{http_port}")
        with proc:
            assert evaluation(http_port, "d", "charge")["decision"] is True
            unavailable = [("velocity.charges_per_identity", "failed closed: limit store unavailable")]
            os.kill(redis.proc.pid, signal.SIGSTOP)  # Redis accepts connections but never answers
            try:
                # Eight at once, on the server's one event loop: each waits on Redis without
                # holding up the others, so all of them end within about one deadline.
                started = time.monotonic()
                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(lambda _: evaluation(http_port, "d", "charge"), range(8)))
                took = time.monotonic() - started
                assert [a["decision"] for a in answers] == [False] * 8
                assert all(reasons(a) == unavailable for a in answers)
                assert took < 0.2 + 1.0  # the deadline, and a margin for a loaded machine (not 8 deadlines)
                assert evaluation(http_port, "d", "read")["decision"] is True  # meets no limit: answered
                batch = evaluations(http_port, [("d", "charge"), ("d", "read")])
                assert [x["decision"] for x in batch] == [False, True]
                assert reasons(batch[0]) == unavailable
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            assert evaluation(http_port, "d", "charge")["decision"] is True  # the same Redis answers again
            redis.stop()  # now refusing connections
            assert reasons(evaluation(http_port, "d", "charge")) == unavailable
            redis.start()  # the same port, empty (no script loaded): works again without a restart
            deadline = time.monotonic() + 10
            while not evaluation(http_port, "d", "charge")["decision"]:
                assert time.monotonic() < deadline, "limits did not work again after Redis came back"
                time.sleep(0.1)
            got = evaluations(http_port, [("d", "charge")] * 21)
            assert [x["decision"] for x in got] == [True] * 19 + [False] * 2
            assert proc.stop() == 0
    finally:
        redis.stop()


def test_a_batch_is_one_round_trip_to_redis_over_grpc_and_over_http(policies, tmp_path):
    with RedisServer(tmp_path) as redis:
        http_port = free_port()
        proc, port = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s",
                           "--http-addr", f"127.0.0.1:{http_port}")
        import redis as redis_py

        with proc, Client(f"127.0.0.1:{port}", timeout=30) as c, redis_py.Redis.from_url(redis.url) as r:
            # Warm both clients' connections (a new connection sends its own commands first).
            assert c.check_batch([charge("warm"), charge("warm")])[0].allowed
            assert evaluations(http_port, [("warm", "charge"), ("warm", "charge")])[0]["decision"] is True
            before = reads_processed(r)
            got = c.check_batch([charge("g")] * 19 + [read("g"), charge("g"), charge("g"), charge("x")])
            grpc_reads = reads_processed(r) - before - 1  # less the second INFO
            assert [d.decision for d in got] == ["ALLOW"] * 21 + ["DENY", "ALLOW"]
            before = reads_processed(r)
            answers = evaluations(http_port, [("h", "charge")] * 19 + [("h", "read"), ("h", "charge"),
                                                                       ("h", "charge"), ("x2", "charge")])
            http_reads = reads_processed(r) - before - 1
            assert [a["decision"] for a in answers] == [True] * 21 + [False, True]
            # One pipeline each (a read of at most a few more if the kernel split it; 22 without the batching).
            assert grpc_reads <= 2 and http_reads <= 2, (grpc_reads, http_reads)
            assert proc.stop() == 0


def test_http_batches_with_a_stop_condition_take_units_only_up_to_the_stop(policies, tmp_path):
    with RedisServer(tmp_path) as redis:
        http_port = free_port()
        proc, _ = serve(policies, "--workers", "1", "--limits", redis.url, "--limits-timeout", "5s",
                        "--http-addr", f"127.0.0.1:{http_port}")
        with proc:
            assert [a["decision"] for a in evaluations(http_port, [("s", "charge")] * 19)] == [True] * 19
            # The 20th charge takes the last unit, the 21st is limited: the batch stops there,
            # and the charge after it is not evaluated (it would take nothing anyway).
            got = evaluations(http_port, [("s", "charge"), ("s", "charge"), ("t", "charge")], "deny_on_first_deny")
            assert [a["decision"] for a in got] == [True, False]
            assert evaluation(http_port, "t", "charge")["decision"] is True
            got = evaluations(http_port, [("t", "charge")] * 3, "permit_on_first_permit")
            assert [a["decision"] for a in got] == [True]  # one unit taken, not three
            left = evaluations(http_port, [("t", "charge")] * 20)
            assert sum(a["decision"] for a in left) == 18  # "t" gave two units: none to the stopped batch
            assert proc.stop() == 0
