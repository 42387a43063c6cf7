"""Soak: sustained concurrent load on a real ``pdp serve`` process while its policies are
pushed every few seconds — good revisions, a syntax error, and a revision that fails its own
suite — and:

- no RPC fails (Check and CheckBatch, from several client threads);
- every answer is the right decision for the revision it names (each revision permits its
  own set of resource ids), and a batch never mixes revisions;
- rejected pushes leave the last good revision serving;
- the server's memory (RSS) stays within a stated bound once warm.

CI runs it for about 35 s; ``PDP_SOAK_SECONDS=600 pytest tests/test_soak.py`` soaks longer
(the RSS bound is the same: a leak shows more clearly the longer it runs).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from serverkit import WAIT, ServeProcess

import pdp
from pdp.client import Client

SECONDS = float(os.environ.get("PDP_SOAK_SECONDS", "35"))
PUSH_EVERY = 2.5
CLIENTS = 3
IDS = [str(i) for i in range(10)]
#: RSS may grow by at most this much between the end of warm-up (the first quarter) and the
#: end of the run: a few MiB of allocator slack; a per-request or per-reload leak exceeds it.
RSS_GROWTH_MIB = 24

SUITE = """\
suite: soak
context: {time: "2026-11-27T10:05:00Z"}
tests:
  - name: a blocked identity is always denied
    identity: {type: workload, id: blocked}
    action: read
    resource: {type: doc, id: "0"}
    expect: deny
"""


def allowed_ids(k: int) -> list[str]:
    """Revision k permits the ids i with (i + k) % 3 == 0: each revision answers differently."""
    return [i for i in IDS if (int(i) + k) % 3 == 0]


def good(k: int) -> str:
    ids = ", ".join(f'"{i}"' for i in allowed_ids(k))
    return (f"policy soak {{\n  forbid blocked when identity.id == \"blocked\"\n"
            f"  permit listed when resource.id in [{ids}] reason \"v{k}\"\n}}\n")


BROKEN = "policy soak {\n  permit when when\n"
# Loads, but lets the blocked identity through: its own suite fails, so it must be rejected.
FAILS_ITS_SUITE = 'policy soak {\n  permit everyone when resource.id == "0"\n}\n'


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_soak_with_hot_reloads(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    (root / "soak_test.yaml").write_text(SUITE, encoding="utf-8")
    revisions: dict[str, int] = {}

    def push(text: str, k: int | None = None) -> None:
        (root / "soak.pdl").write_text(text, encoding="utf-8")
        if k is not None:
            revisions[pdp.load(root).revision] = k

    push(good(0), 0)
    counts = {"answers": 0}
    seen: set[int] = set()
    wrong: list[tuple] = []  # answers that are not what their revision decides
    batches_mixed: list[set] = []

    def verify(revision: str, rid: str, decision: str) -> None:
        # A revision is registered before the push that makes it, so it is known by now.
        k = revisions.get(revision)
        if k is None or decision != ("ALLOW" if rid in allowed_ids(k) else "DENY"):
            if len(wrong) < 20:
                wrong.append((revision, k, rid, decision))
        else:
            seen.add(k)
        counts["answers"] += 1
    failures: list[BaseException] = []
    stop = threading.Event()

    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        port = server.wait_ready()

        def load(seed: int) -> None:
            rng = random.Random(seed)
            with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                while not stop.is_set():
                    try:
                        if rng.random() < 0.7:
                            rid = rng.choice(IDS)
                            d = client.check({"identity": {"type": "workload", "id": "svc"}, "action": "read",
                                              "resource": {"type": "doc", "id": rid}})
                            verify(d.revision, rid, d.decision)
                        else:
                            rids = [rng.choice(IDS) for _ in range(8)]
                            ds = client.check_batch([{"identity": {"type": "workload", "id": "svc"},
                                                      "action": "read", "resource": {"type": "doc", "id": r}}
                                                     for r in rids])
                            if len({d.revision for d in ds}) != 1:
                                batches_mixed.append({d.revision for d in ds})
                            for d, r in zip(ds, rids):
                                verify(d.revision, r, d.decision)
                    except BaseException as exc:  # any failure counts
                        failures.append(exc)

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        k = 0
        step = 0
        pushes = {"good": 0, "broken": 0, "fails its suite": 0}
        try:
            while time.monotonic() - started < SECONDS:
                time.sleep(PUSH_EVERY)
                step += 1
                kind = ("good", "broken", "good", "fails its suite")[step % 4]
                if kind == "good":
                    k += 1
                    push(good(k), k)
                    server.signal(signal.SIGHUP)
                    server.wait_for(r"reloaded: serving revision")
                else:
                    push(BROKEN if kind == "broken" else FAILS_ITS_SUITE)
                    server.signal(signal.SIGHUP)
                    server.wait_for(r"reload rejected; still serving revision")
                pushes[kind] += 1
                samples.append((time.monotonic() - started, rss_kib(server.proc.pid)))
        finally:
            stop.set()
            for t in threads:
                t.join(WAIT)
        assert server.stop() == 0

    assert not failures, f"{len(failures)} failed calls, the first: {failures[0]!r}"
    assert not batches_mixed
    assert pushes["good"] >= 3 and pushes["broken"] >= 2 and pushes["fails its suite"] >= 1, pushes
    assert counts["answers"] > 1000, counts
    assert not wrong, f"answers that are not their revision's decision (revision, k, id, decision): {wrong}"
    assert len(seen) >= 3, seen  # the reloads were seen by the clients
    warm = [rss for t, rss in samples if t >= SECONDS / 4]
    growth_mib = (warm[-1] - warm[0]) / 1024
    print(f"soak: {counts['answers']} answers from {len(seen)} revisions, pushes {pushes}, "
          f"RSS {samples[0][1] // 1024} -> {warm[0] // 1024} -> {warm[-1] // 1024} MiB")
    assert growth_mib <= RSS_GROWTH_MIB, f"RSS grew {growth_mib:.1f} MiB once warm: {samples}"


# ---- crash safety (issue 7: for the server's owner) -----------------------------------------


def test_a_worker_that_dies_is_restarted_and_the_port_keeps_answering(tmp_path):
    import re

    from serverkit import ALLOWED, write_policies

    policies = write_policies(tmp_path / "policies")
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2") as server:
        port = int(server.wait_for(r"serving on 127.0.0.1:(\d+) with 2 workers").group(1))
        pids = set(map(int, re.findall(r"worker (\d+): serving", "\n".join(server.lines))))
        assert len(pids) == 2
        os.kill(min(pids), signal.SIGKILL)
        # A new worker takes its place, and the parent goes on serving.
        new = int(server.wait_for(r"worker (\d+): serving", timeout=120).group(1))
        assert new not in pids and server.proc.poll() is None
        for _ in range(10):  # fresh connections, spread over the workers by the kernel
            with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                assert client.check(ALLOWED).allowed
        assert server.stop() == 0


def test_health_is_not_serving_while_no_worker_can_answer(tmp_path):
    """All workers die at once: until a replacement is ready the parent answers health on the
    port with NOT_SERVING, then the workers answer SERVING again."""
    import re

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from serverkit import write_policies

    policies = write_policies(tmp_path / "policies")
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2") as server:
        port = int(server.wait_for(r"serving on 127.0.0.1:(\d+) with 2 workers").group(1))
        for pid in set(map(int, re.findall(r"worker (\d+): serving", "\n".join(server.lines)))):
            os.kill(pid, signal.SIGKILL)
        server.wait_for(r"no worker can answer")
        seen = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not {"NOT_SERVING", "SERVING"} <= seen:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                    seen.add(health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))
                except grpc.RpcError:
                    pass  # between the placeholder and the replacement
            if "NOT_SERVING" in seen:
                time.sleep(0.2)
        assert seen >= {"NOT_SERVING", "SERVING"}, seen
        server.wait_for(r"a worker answers again", timeout=120)
        assert server.stop() == 0
