"""End-to-end gRPC benchmark over loopback: ``pdp serve`` against Cerbos, same Python client.

    python bench/bench_grpc.py --cerbos /path/to/cerbos      # or CERBOS_BIN=...; --npm-cerbos installs it
    python bench/bench_grpc.py --modes                       # pdp only: sync vs asyncio server, 1 vs 2 workers

Both servers run as separate processes on 127.0.0.1 with an equivalent policy (below) and are
measured in interleaved rounds by one client written with Python grpcio:

* ``check_p50_us``: sequential unary calls (one in flight), median and p99 latency;
* ``inflight64_per_s``: calls per second with 64 in flight (grpc.aio client, one channel);
  with ``--connections 1,4`` also spread over 4 channels of one TCP connection each
  (``inflight64_c4_per_s``), as a gateway with several worker threads connects;
* ``batch100_decisions_per_s``: decisions per second with sequential batches of 100
  (pdp ``CheckBatch`` of 100 requests; Cerbos ``CheckResources`` of 100 resources, one
  principal — Cerbos has no batch of independent principals).

For pdp servers, also ``pdp.client`` itself, where pdp owns both ends of the wire (each call
encodes its request dict and decodes a ``Decision``, as a user's call does):

* ``client_p50_us`` / ``client_unary_p50_us``: sequential ``Client.check()``, coalescing on
  (the default) and off (``coalesce=False``: one unary Check per call, the client as it was),
  two clients called in alternation;
* ``client_threads64_per_s`` / ``client_asyncio64_per_s``: ``check()`` calls per second from 64
  threads sharing one ``Client`` / 64 tasks sharing one ``AsyncClient``; ``..._unary_...``
  the same with ``coalesce=False``;
* ``stream64_per_s``: the other design measured, 64 tasks multiplexing one ``CheckStream``
  (answers matched in order; grpc.aio, messages pre-built);
* ``envoy64_per_s`` (``envoy64_c4_per_s`` over 4 connections): Envoy's unary
  ``Authorization/Check`` with 64 in flight, which no client of pdp's can coalesce.

Request messages are built once before timing, so the figures are server plus transport
plus the client library's own call overhead, alike for both. Results go to stdout as a
table and, with ``--out FILE``, as JSON. bench/GRPC.md records a run and the method.
Only loopback addresses are used; every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pdp import coalesce as pdp_coalesce
from pdp.client import AsyncClient, Client, encode
from pdp.v1 import decision_pb2 as pb

PDP_POLICY = """\
policy payments {
  target resource.type == "payment"

  forbid cross_environment
    when identity.env != resource.env
    reason "a {identity.env} identity may not act on {resource.env} resources"

  permit billing_may_charge
    when identity.spiffe_id startswith "spiffe://acme.prod/ns/billing/sa/"
     and action.name in ["charge", "refund"]
     and identity.scopes contains "payments:write"
    reason "billing workload charges with a scoped credential"
}
"""

CERBOS_POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: payment
  rules:
    - name: cross_environment
      actions: ["*"]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: request.principal.attr.env != request.resource.attr.env
    - name: billing_may_charge
      actions: ["charge", "refund"]
      effect: EFFECT_ALLOW
      roles: ["*"]
      condition:
        match:
          all:
            of:
              - expr: request.principal.attr.spiffe_id.startsWith("spiffe://acme.prod/ns/billing/sa/")
              - expr: '"payments:write" in request.principal.attr.scopes'
"""

CERBOS_CONFIG = """\
server:
  httpListenAddr: "127.0.0.1:{http}"
  grpcListenAddr: "127.0.0.1:{grpc}"
  requestLimits:
    maxActionsPerResource: 50
    maxResourcesPerRequest: 100
storage:
  driver: disk
  disk:
    directory: {policies}
    watchForChanges: false
audit:
  enabled: false
telemetry:
  disabled: true
"""

#: A second policy file for pdp only: lets the Envoy measurement get an ALLOW.
PDP_HTTP_POLICY = """\
policy http {
  target resource.type == "http"

  permit billing_reads
    when action.name == "GET" and identity.spiffe_id startswith "spiffe://acme.prod/ns/billing/sa/"
    reason "billing reads"
}
"""

REQUEST = {
    "identity": {"type": "workload", "id": "billing", "spiffe_id": "spiffe://acme.prod/ns/billing/sa/api",
                 "env": "prod", "scopes": ["payments:write"]},
    "action": {"name": "charge"},
    "resource": {"type": "payment", "id": "pay-42", "env": "prod"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# --------------------------------------------------------------------------------------------
# servers


class Server:
    name: str
    proc: subprocess.Popen
    port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class PdpServer(Server):
    def __init__(self, workdir: Path, workers: int = 1, extra: tuple[str, ...] = ()):
        self.name = f"pdp (workers={workers})"
        policies = workdir / "pdp"
        policies.mkdir(exist_ok=True)
        (policies / "payments.pdl").write_text(PDP_POLICY)
        (policies / "http.pdl").write_text(PDP_HTTP_POLICY)
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "pdp", "serve", str(policies), "--addr",
                                      f"127.0.0.1:{self.port}", "--workers", str(workers), "--log-level", "WARNING",
                                      *extra], env=env, stdin=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(0.5 * workers)  # let every worker bind


class AioPdpServer(Server):
    """pdp's DecisionService logic under grpc.aio, for the sync-vs-asyncio measurement only."""

    SCRIPT = r"""
import asyncio, sys
import grpc, pdp
from pdp.server.decision_service import DecisionService, SERVICE
from pdp.server.convert import deserializer
from pdp.server import EngineHolder, ServerOptions
from pdp.v1 import decision_pb2 as pb
svc = DecisionService(EngineHolder(pdp.load(sys.argv[1])), ServerOptions())
async def check(raw, ctx): return svc.Check(raw, ctx)
class Ctx:  # the sync context API the servicer uses for batches (valid requests only here)
    def __init__(self, ctx): self.ctx = ctx
    def is_active(self): return not self.ctx.cancelled()
    def __getattr__(self, name): return getattr(self.ctx, name)
async def batch(raw, ctx): return svc.CheckBatch(raw, Ctx(ctx))
handlers = {"Check": grpc.unary_unary_rpc_method_handler(check, deserializer(pb.CheckRequest),
                                                         pb.CheckResponse.SerializeToString),
            "CheckBatch": grpc.unary_unary_rpc_method_handler(batch, deserializer(pb.CheckBatchRequest),
                                                              pb.CheckBatchResponse.SerializeToString)}
async def main():
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(sys.argv[2])
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""

    def __init__(self, workdir: Path, workers: int = 1):
        self.name = f"pdp asyncio (workers={workers})"
        policies = workdir / "pdp"
        policies.mkdir(exist_ok=True)
        (policies / "payments.pdl").write_text(PDP_POLICY)
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.procs = [subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(policies), f"127.0.0.1:{self.port}"],
                                       env=env, stdin=subprocess.DEVNULL) for _ in range(workers)]
        self.proc = self.procs[0]
        wait_port(self.port)
        time.sleep(0.5 * workers)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)


class CerbosServer(Server):
    def __init__(self, workdir: Path, binary: str):
        self.name = "cerbos"
        policies = workdir / "cerbos"
        policies.mkdir(exist_ok=True)
        (policies / "payment.yaml").write_text(CERBOS_POLICY)
        self.port = free_port()
        config = workdir / "cerbos.yaml"
        config.write_text(CERBOS_CONFIG.format(http=free_port(), grpc=self.port, policies=policies))
        self.proc = subprocess.Popen([binary, "server", f"--config={config}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_port(self.port)

    @staticmethod
    def version(binary: str) -> str:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.split()[0] if out else "?"


# --------------------------------------------------------------------------------------------
# the one client


class Calls:
    """The unary methods and pre-built messages for one server: ``check`` (one decision) and
    ``batch`` (100 decisions)."""

    def __init__(self, server: Server):
        self.server = server
        self.target = f"127.0.0.1:{server.port}"
        if isinstance(server, CerbosServer):
            self._cerbos_messages()
        else:
            self.check_path = "/pdp.v1.DecisionService/Check"
            self.batch_path = "/pdp.v1.DecisionService/CheckBatch"
            self.check_msg = encode(REQUEST)
            self.batch_msg = pb.CheckBatchRequest(requests=[encode(REQUEST)] * 100)
            self.check_resp = pb.CheckResponse
            self.batch_resp = pb.CheckBatchResponse

    def _cerbos_messages(self) -> None:
        from google.protobuf import message_factory
        from google.protobuf.descriptor_pool import DescriptorPool
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        with grpc.insecure_channel(self.target) as channel:
            pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
            method = pool.FindServiceByName("cerbos.svc.v1.CerbosService").FindMethodByName("CheckResources")
            request_cls = message_factory.GetMessageClass(method.input_type)
            response_cls = message_factory.GetMessageClass(method.output_type)

        def message(n: int):
            msg = request_cls(request_id="1")
            p = msg.principal
            p.id = "billing"
            p.roles.append("workload")
            p.attr["spiffe_id"].string_value = REQUEST["identity"]["spiffe_id"]
            p.attr["env"].string_value = "prod"
            p.attr["scopes"].list_value.values.add(string_value="payments:write")
            for i in range(n):
                entry = msg.resources.add()
                entry.actions.append("charge")
                entry.resource.kind = "payment"
                entry.resource.id = f"pay-{i}"
                entry.resource.attr["env"].string_value = "prod"
            return msg

        self.check_path = self.batch_path = "/cerbos.svc.v1.CerbosService/CheckResources"
        self.check_msg, self.batch_msg = message(1), message(100)
        self.check_resp = self.batch_resp = response_cls

    def verify(self) -> None:
        """Both servers must allow the benchmark request (same decision, or the run is void)."""
        with grpc.insecure_channel(self.target) as channel:
            out = channel.unary_unary(self.check_path, request_serializer=type(self.check_msg).SerializeToString,
                                      response_deserializer=self.check_resp.FromString)(self.check_msg, timeout=10)
        if isinstance(self.server, CerbosServer):
            allowed = out.results[0].actions["charge"] == 1  # EFFECT_ALLOW
        else:
            allowed = out.decision == pb.DECISION_ALLOW
        if not allowed:
            raise RuntimeError(f"{self.server.name} did not allow the benchmark request: {out}")
        if isinstance(self.server, PdpServer):
            msg = envoy_message()
            with grpc.insecure_channel(self.target) as channel:
                out = channel.unary_unary(ENVOY_PATH, request_serializer=type(msg).SerializeToString,
                                          response_deserializer=envoy_response().FromString)(msg, timeout=10)
            if out.status.code != 0:
                raise RuntimeError(f"{self.server.name} did not allow the Envoy benchmark request: {out}")

    def sequential(self, n: int) -> list[float]:
        with grpc.insecure_channel(self.target) as channel:
            call = channel.unary_unary(self.check_path, request_serializer=type(self.check_msg).SerializeToString,
                                       response_deserializer=self.check_resp.FromString)
            msg = self.check_msg
            for _ in range(min(200, n)):
                call(msg)
            out = []
            clock = time.perf_counter
            for _ in range(n):
                t = clock()
                call(msg)
                out.append(clock() - t)
        return out

    def inflight(self, n: int, concurrency: int = 64, connections: int = 1, envoy: bool = False) -> float:
        """Calls per second with ``concurrency`` calls in flight, spread evenly over
        ``connections`` channels (each its own TCP connection: a local subchannel pool);
        ``envoy``: Envoy's Authorization/Check instead of the server's own check."""
        path, msg, resp = ((ENVOY_PATH, envoy_message(), envoy_response()) if envoy
                           else (self.check_path, self.check_msg, self.check_resp))

        async def run() -> float:
            channels = [grpc.aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
                        for _ in range(connections)]
            try:
                calls = [ch.unary_unary(path, request_serializer=type(msg).SerializeToString,
                                        response_deserializer=resp.FromString) for ch in channels]
                for call in calls:
                    for _ in range(100 // connections + 1):
                        await call(msg)
                left = n

                async def worker(call):
                    nonlocal left
                    while left > 0:
                        left -= 1
                        await call(msg)

                t = time.perf_counter()
                await asyncio.gather(*(worker(calls[i % connections]) for i in range(concurrency)))
                return n / (time.perf_counter() - t)
            finally:
                for ch in channels:
                    await ch.close()

        return asyncio.run(run())

    # ---- pdp.client (pdp servers only)

    def client_sequential(self, n: int) -> tuple[list[float], list[float]]:
        """Latencies of ``n`` lone check() calls through a client with coalescing off (one
        unary Check per call, the client as it was) and on, alternating call by call so both
        meet the same machine."""
        with Client(self.target, timeout=60, coalesce=False) as unary, Client(self.target, timeout=60) as coalescing:
            for _ in range(min(200, n)):
                unary.check(REQUEST)
                coalescing.check(REQUEST)
            out: tuple[list[float], list[float]] = ([], [])
            clock = time.perf_counter
            for _ in range(n):
                for client, lat in ((unary, out[0]), (coalescing, out[1])):
                    t = clock()
                    client.check(REQUEST)
                    lat.append(clock() - t)
        return out

    def client_threads(self, n: int, coalesce: bool, concurrency: int = 64) -> float:
        """check() calls per second from ``concurrency`` threads sharing one Client."""
        with Client(self.target, timeout=60, coalesce=coalesce) as client:
            for _ in range(100):
                client.check(REQUEST)
            left = iter(range(n))  # next() on a range iterator is atomic under the GIL
            start = threading.Barrier(concurrency + 1, timeout=60)

            def worker():
                start.wait()
                for _ in left:
                    client.check(REQUEST)

            threads = [threading.Thread(target=worker) for _ in range(concurrency)]
            for th in threads:
                th.start()
            start.wait()
            t = time.perf_counter()
            for th in threads:
                th.join()
            return n / (time.perf_counter() - t)

    def client_asyncio(self, n: int, coalesce: bool, concurrency: int = 64) -> float:
        """check() calls per second from ``concurrency`` tasks sharing one AsyncClient."""
        async def run() -> float:
            async with AsyncClient(self.target, timeout=60, coalesce=coalesce) as client:
                for _ in range(100):
                    await client.check(REQUEST)
                left = iter(range(n))

                async def worker():
                    for _ in left:
                        await client.check(REQUEST)

                t = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return n / (time.perf_counter() - t)

        return asyncio.run(run())

    def stream_multiplexed(self, n: int, concurrency: int = 64) -> float:
        """Calls per second with ``concurrency`` tasks sharing one CheckStream (the design not
        chosen): each writes its request and waits for the answer, matched by order."""
        async def run() -> float:
            async with grpc.aio.insecure_channel(self.target) as channel:
                call = channel.stream_stream("/pdp.v1.DecisionService/CheckStream",
                                             request_serializer=pb.CheckRequest.SerializeToString,
                                             response_deserializer=pb.CheckResponse.FromString)()
                waiting: collections.deque[asyncio.Future] = collections.deque()
                write_lock = asyncio.Lock()
                msg = self.check_msg

                async def read():
                    async for response in call:
                        waiting.popleft().set_result(response)

                reader = asyncio.ensure_future(read())

                async def check():
                    future = asyncio.get_running_loop().create_future()
                    async with write_lock:  # one write at a time; the queue in write order
                        waiting.append(future)
                        await call.write(msg)
                    return await future

                for _ in range(100):
                    await check()
                left = iter(range(n))

                async def worker():
                    for _ in left:
                        await check()

                t = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                rate = n / (time.perf_counter() - t)
                await call.done_writing()
                await reader
                return rate

        return asyncio.run(run())

    def batches(self, n: int) -> float:
        with grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
            call = channel.unary_unary(self.batch_path, request_serializer=type(self.batch_msg).SerializeToString,
                                       response_deserializer=self.batch_resp.FromString)
            msg = self.batch_msg
            for _ in range(5):
                call(msg)
            t = time.perf_counter()
            for _ in range(n):
                call(msg)
            return n * 100 / (time.perf_counter() - t)


ENVOY_PATH = "/envoy.service.auth.v3.Authorization/Check"


def envoy_message():
    """An Envoy CheckRequest that pdp ALLOWs (PDP_HTTP_POLICY): a GET from the billing peer."""
    from envoy.service.auth.v3 import external_auth_pb2 as ext

    msg = ext.CheckRequest()
    attrs = msg.attributes
    attrs.source.principal = REQUEST["identity"]["spiffe_id"]
    attrs.source.address.socket_address.address = "10.1.2.3"
    http = attrs.request.http
    http.method, http.path, http.host = "GET", "/v1/payments/42", "api.acme"
    http.headers["x-request-id"] = "r1"
    return msg


def envoy_response():
    from envoy.service.auth.v3 import external_auth_pb2 as ext

    return ext.CheckResponse


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


#: pdp.client metrics, measured on pdp servers: result key, column title.
CLIENT_COLUMNS = [
    ("client_unary_p50_us", "check() p50 µs, one unary Check per call (before)"),
    ("client_p50_us", "check() p50 µs, coalescing (after)"),
    ("client_threads64_unary_per_s", "64 threads, unary, calls/s"),
    ("client_threads64_per_s", "64 threads, coalescing, calls/s"),
    ("client_asyncio64_unary_per_s", "64 tasks, unary, calls/s"),
    ("client_asyncio64_per_s", "64 tasks, coalescing, calls/s"),
    ("stream64_per_s", "64 tasks on one CheckStream, calls/s"),
    ("envoy64_per_s", "Envoy Check, 64 in flight, calls/s"),
    ("envoy64_c4_per_s", "Envoy Check, 64 in flight over 4 connections, calls/s"),
]


def measure(servers: list[Server], rounds: int, seq: int, inflight: int, batches: int,
            connections: tuple[int, ...] = (1,), clients: bool = True) -> dict:
    """Every metric of every server, ``rounds`` times, interleaved; medians and raw rounds."""
    calls = [Calls(s) for s in servers]
    for c in calls:
        c.verify()
    extra = [k for k in connections if k != 1]
    raw: dict[str, dict[str, list[float]]] = {s.name: collections.defaultdict(list) for s in servers}
    for r in range(rounds):
        for c in calls:  # interleaved: each round measures every server in turn
            got = raw[c.server.name]
            lat = c.sequential(seq)
            got["p50"].append(statistics.median(lat) * 1e6)
            got["p99"].append(percentile(lat, 0.99) * 1e6)
            got["inflight"].append(c.inflight(inflight))
            for k in extra:
                got[f"inflight_c{k}"].append(c.inflight(inflight, connections=k))
            got["batch"].append(c.batches(batches))
            if clients and isinstance(c.server, PdpServer):
                unary_lat, coalescing_lat = c.client_sequential(seq)
                got["client_unary_p50"].append(statistics.median(unary_lat) * 1e6)
                got["client_p50"].append(statistics.median(coalescing_lat) * 1e6)
                for coalesce, tag in ((False, "_unary"), (True, "")):
                    got[f"client_threads64{tag}"].append(c.client_threads(inflight, coalesce))
                    got[f"client_asyncio64{tag}"].append(c.client_asyncio(inflight, coalesce))
                got["stream64"].append(c.stream_multiplexed(inflight))
                got["envoy64"].append(c.inflight(inflight, envoy=True))
                got["envoy64_c4"].append(c.inflight(inflight, connections=4, envoy=True))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)

    def median(v, key, digits=None):
        return round(statistics.median(v[key]), digits)

    out = {}
    for name, v in raw.items():
        out[name] = {"check_p50_us": median(v, "p50", 1), "check_p99_us": median(v, "p99", 1),
                     "inflight64_per_s": median(v, "inflight"),
                     **{f"inflight64_c{k}_per_s": median(v, f"inflight_c{k}") for k in extra},
                     "batch100_decisions_per_s": median(v, "batch")}
        if "stream64" in v:
            out[name].update({"client_unary_p50_us": median(v, "client_unary_p50", 1),
                              "client_p50_us": median(v, "client_p50", 1),
                              **{f"{key}_per_s": median(v, key) for key in (
                                  "client_threads64_unary", "client_threads64", "client_asyncio64_unary",
                                  "client_asyncio64", "stream64", "envoy64", "envoy64_c4")}})
        out[name]["rounds"] = {k: [round(x, 1) for x in xs] for k, xs in v.items()}
    return out


def table(results: dict) -> str:
    spread = sorted({k for r in results.values() for k in r if k.startswith("inflight64_c")},
                    key=lambda k: int(k.split("_c")[1].split("_")[0]))
    head = ["Check p50 µs", "Check p99 µs", "64 in flight, calls/s",
            *(f"64 in flight over {k.split('_c')[1].split('_')[0]} connections, calls/s" for k in spread),
            "batch of 100, decisions/s"]
    lines = ["| server | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, r in results.items():
        cells = [r["check_p50_us"], r["check_p99_us"], r["inflight64_per_s"], *(r[k] for k in spread),
                 r["batch100_decisions_per_s"]]
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    with_client = {name: r for name, r in results.items() if "client_p50_us" in r}
    if with_client:
        lines += ["", "| pdp.client against | " + " | ".join(title for _, title in CLIENT_COLUMNS) + " |",
                  "|---" * (len(CLIENT_COLUMNS) + 1) + "|"]
        for name, r in with_client.items():
            lines.append(f"| {name} | " + " | ".join(str(r[key]) for key, _ in CLIENT_COLUMNS) + " |")
    return "\n".join(lines)


def npm_cerbos(cache: Path) -> str:
    """``npm install cerbos`` into ``cache`` (once); the path of the binary it brings."""
    found = list(cache.glob("node_modules/@cerbos/cerbos-*/cerbos-*"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(cache), "cerbos"], check=True, timeout=600)
        found = list(cache.glob("node_modules/@cerbos/cerbos-*/cerbos-*"))
    if not found:
        raise RuntimeError("npm install cerbos brought no binary for this platform")
    return str(found[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cerbos", default=os.environ.get("CERBOS_BIN"), help="the cerbos binary")
    ap.add_argument("--npm-cerbos", action="store_true", help="npm install cerbos into ~/.cache/pdp-bench")
    ap.add_argument("--modes", action="store_true", help="pdp only: sync vs asyncio, 1 vs 2 workers")
    ap.add_argument("--workers", default="1", help="pdp serve --workers; a comma list runs each (default 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seq", type=int, default=2000, help="sequential calls per round")
    ap.add_argument("--inflight", type=int, default=6000, help="calls per round at 64 in flight")
    ap.add_argument("--connections", default="1",
                    help="64 in flight over this many connections; a comma list measures each (default 1)")
    ap.add_argument("--batches", type=int, default=100, help="batches of 100 per round")
    ap.add_argument("--in-flight", type=int, default=None,
                    help="pdp.client's RPCs out at once while coalescing (pdp.coalesce.MAX_IN_FLIGHT)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few calls")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seq, args.inflight, args.batches = 1, 200, 500, 10
    if args.in_flight is not None:
        pdp_coalesce.MAX_IN_FLIGHT = args.in_flight
    binary = args.cerbos
    if args.npm_cerbos and not binary:
        binary = npm_cerbos(Path.home() / ".cache" / "pdp-bench" / "cerbos")
    workdir = Path(tempfile.mkdtemp(prefix="pdp-bench-grpc-"))
    servers: list[Server] = []
    try:
        if args.modes:
            servers = [PdpServer(workdir, 1), AioPdpServer(workdir, 1), PdpServer(workdir, 2), AioPdpServer(workdir, 2)]
        else:
            for n in args.workers.split(","):
                servers.append(PdpServer(workdir, int(n)))
            if binary:
                servers.append(CerbosServer(workdir, binary))
            else:
                print("no cerbos binary (--cerbos, CERBOS_BIN or --npm-cerbos): pdp only", file=sys.stderr)
        connections = tuple(int(k) for k in args.connections.split(","))
        results = measure(servers, args.rounds, args.seq, args.inflight, args.batches, connections,
                          clients=not args.modes)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    import google.protobuf

    meta = {"python": platform.python_version(), "grpcio": grpc.__version__,
            "protobuf": google.protobuf.__version__, "cores": len(os.sched_getaffinity(0)),
            "cerbos": CerbosServer.version(binary) if binary and not args.modes else None,
            "client_max_in_flight": pdp_coalesce.MAX_IN_FLIGHT,
            "rounds": args.rounds, "seq": args.seq, "inflight_calls": args.inflight, "batches": args.batches}
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
