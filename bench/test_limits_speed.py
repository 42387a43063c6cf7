"""Issue 15's speed figures: what a velocity limit adds to a decision, side by side.

- In process (``engine.decide``, in-memory store): the same ALLOW with and without a limit
  rule it meets (a budget that never runs out). The bar: at most 1 µs more.
- Over gRPC with Redis: one ``pdp serve --limits redis://...`` answering, on the same
  server, sequential Checks of a request that meets a limit and of one that meets none. The
  bar: p50 of the limited one at most 2x the unlimited one.
- Over AuthZEN HTTP with Redis: the same on ``--http-addr`` (one keep-alive connection,
  sequential ``/access/v1/evaluation`` POSTs), whose limits go through ``redis.asyncio``.

    pytest bench/test_limits_speed.py --benchmark-only --benchmark-json=bench/results/limits-speed.json

Each group checks, before timing, the decisions it times.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

import pdp
from pdp import runtime
from pdp.client import encode
from pdp.v1 import decision_pb2 as pb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from rediskit import RedisServer  # noqa: E402
from serverkit import ServeProcess  # noqa: E402

POLICY = """
policy velocity {
  permit workload_charges_payments
    when identity.type == "workload" and action.name == "charge" and resource.type == "payment"
  permit workload_reads
    when identity.type == "workload" and action.name == "read"
  limit charges_per_identity 1000000 per 1h by identity.id
    when action.name == "charge"
}
"""
UNLIMITED = POLICY[:POLICY.index("  limit")] + "}\n"
#: In process: a budget no benchmark empties (3.6 billion, a unit back every microsecond).
IN_PROCESS = POLICY.replace("1000000 per 1h", "3600000000 per 1h")
CHARGE = {"identity": {"type": "workload", "id": "billing"}, "action": "charge",
          "resource": {"type": "payment", "id": "pay-1"}}
READ = {"identity": {"type": "workload", "id": "billing"}, "action": "read",
        "resource": {"type": "payment", "id": "pay-1"}}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name, text in (("limited", POLICY), ("unlimited", UNLIMITED), ("in_process", IN_PROCESS)):
        folder = tmp_path_factory.mktemp(name)
        (folder / "p.pdl").write_text(text)
        out[name] = folder
    return out


@pytest.mark.parametrize("backend", sorted(runtime.EVALUATORS))
@pytest.mark.parametrize("policy", ["unlimited", "limited"])
def test_decide_in_process(benchmark, folders, backend, policy):
    engine = pdp.load(folders["in_process" if policy == "limited" else policy], backend=backend)
    decision = engine.decide(CHARGE)
    assert decision.allowed
    assert (engine.decide_claims(CHARGE)[1] is not None) == (policy == "limited")
    benchmark.group = f"in process ({backend}): one ALLOW, with and without a limit it meets"
    benchmark.extra_info["decisions_per_round"] = 1
    benchmark(engine.decide, CHARGE)
    assert engine.decide(CHARGE).allowed  # the budget never ran out: every round was an ALLOW


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def check(folders, redis_server):
    """A unary Check stub on ``pdp serve --workers 1 --limits redis://...``."""
    proc = ServeProcess(str(folders["limited"]), "--addr", "127.0.0.1:0", "--workers", "1",
                        "--limits", redis_server.url)
    with proc:
        port = proc.wait_ready()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = channel.unary_unary("/pdp.v1.DecisionService/Check", request_serializer=pb.CheckRequest.SerializeToString,
                                   response_deserializer=pb.CheckResponse.FromString)
        yield stub
        channel.close()
        proc.stop()


@pytest.mark.parametrize("request_kind", ["unlimited", "limited"])
def test_check_over_grpc_with_redis(benchmark, check, redis_server, request_kind):
    import redis

    client = redis.Redis.from_url(redis_server.url)

    def scripts_run() -> int:
        return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    message = encode(CHARGE if request_kind == "limited" else READ)
    before = scripts_run()
    answer = check(message, timeout=10)
    assert answer.decision == pb.DECISION_ALLOW
    # The limited Check ran the script in Redis; the unlimited one never asked it.
    assert (scripts_run() > before) == (request_kind == "limited")
    benchmark.group = "gRPC Check on one server with --limits redis: a request that meets a limit and one that does not"
    benchmark.extra_info["decisions_per_round"] = 1
    benchmark.pedantic(check, args=(message,), kwargs={"timeout": 10}, rounds=3000, warmup_rounds=300)
    assert check(message, timeout=10).decision == pb.DECISION_ALLOW  # 3,302 charges: the budget never ran out


AUTHZEN_CHARGE = b'{"subject":{"type":"workload","id":"billing"},"action":{"name":"charge"},' \
                 b'"resource":{"type":"payment","id":"pay-1"}}'
AUTHZEN_READ = AUTHZEN_CHARGE.replace(b'"charge"', b'"read"')


@pytest.fixture(scope="module")
def evaluate(folders, redis_server):
    """A POST /access/v1/evaluation on one keep-alive connection to ``pdp serve --workers 1
    --limits redis://... --http-addr``; returns the decision."""
    import http.client
    import json

    from rediskit import free_port

    http_port = free_port()
    proc = ServeProcess(str(folders["limited"]), "--addr", "127.0.0.1:0", "--workers", "1",
                        "--limits", redis_server.url, "--http-addr", f"127.0.0.1:{http_port}")
    with proc:
        proc.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)

        def post(body: bytes) -> bool:
            conn.request("POST", "/access/v1/evaluation", body, {"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read())["decision"]

        yield post
        conn.close()
        proc.stop()


@pytest.mark.parametrize("request_kind", ["unlimited", "limited"])
def test_evaluation_over_http_with_redis(benchmark, evaluate, redis_server, request_kind):
    import redis

    client = redis.Redis.from_url(redis_server.url)

    def scripts_run() -> int:
        return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    body = AUTHZEN_CHARGE if request_kind == "limited" else AUTHZEN_READ
    before = scripts_run()
    assert evaluate(body) is True
    assert (scripts_run() > before) == (request_kind == "limited")
    benchmark.group = ("AuthZEN evaluation over HTTP on one server with --limits redis: a request that meets "
                       "a limit and one that does not")
    benchmark.extra_info["decisions_per_round"] = 1
    benchmark.pedantic(evaluate, args=(body,), rounds=3000, warmup_rounds=300)
    assert evaluate(body) is True
