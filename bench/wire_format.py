"""Measure candidate wire forms for request attributes, side by side (issue 4).

    python bench/wire_format.py [--rounds N] [--quick] [--no-grpc]

Part 1, for each candidate and each sample request, times

* encode: request dict -> CheckRequest-like message -> bytes (what a client does per call);
* decode: bytes -> message -> plain request dict, checked as SPEC §3 needs (what the server
  does per call before deciding): nulls dropped from maps; NaN, infinities, integers outside
  [-2**63, 2**64-1], non-string keys and non-JSON types rejected;

and prints the median over ``--rounds`` rounds of the per-call time (each round runs every
measurement once, in turn, each for about 10 ms of calls), the serialized size, and whether a
probe request with 2**64-1, 2**63-1, -2**63, 2**53+1, 3 and 3.0 survives the round trip with
its types and values intact.

Candidates:

* ``struct``: four ``google.protobuf.Struct`` fields. Numbers travel as doubles, so the
  int/float distinction and integers above 2**53 are lost; ``struct+ints`` applies the only
  cheap workaround (integral doubles read back as int), which still cannot tell 3 from 3.0
  nor carry 2**53+1.
* ``value``: the ``pdp.v1.Value`` oneof tree (pdp.wire, form="value").
* ``msgpack``: the whole request as MessagePack in ``request_msgpack`` (pdp.wire,
  form="msgpack"), with the checking walk; ``msgpack-nochk`` skips the walk
  (``pb_to_request(check=False)``), for a server whose engine validates the request anyway.
* ``json`` / ``orjson``: the whole request as JSON text in a ``bytes`` field (stdlib json, and
  orjson when installed), with the same checking walk.

The Struct and bytes messages are built at run time from descriptors, so no bench-only proto
is needed.

Part 2 (skip with ``--no-grpc``) puts the numbers in context: a real ``DecisionService.Check``
over loopback (127.0.0.1 only, a bounded number of calls) against a server in a child process
that decodes the request with pdp.wire and answers a fixed decision (no engine yet); the median
latency per call seen by a Python client and the server process's CPU time per call, for the
``value`` and ``msgpack`` forms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import google.protobuf  # noqa: E402
import msgpack  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402, F401 - registers struct.proto for StructRequest
from google.protobuf.internal import api_implementation  # noqa: E402

from pdp import wire  # noqa: E402
from pdp.errors import RequestError  # noqa: E402
from pdp.v1 import decision_pb2 as pb  # noqa: E402
from pdp.v1 import decision_pb2_grpc as pb_grpc  # noqa: E402

try:
    import orjson
except ImportError:  # optional candidate
    orjson = None

# --------------------------------------------------------------------------------------------
# sample requests

SPEC_EXAMPLE = {
    "identity": {"type": "workload", "id": "billing", "spiffe_id": "spiffe://acme.prod/ns/billing/sa/api",
                 "env": "prod", "scopes": ["payments:write"], "credential": {"issued_at": "2026-11-27T10:00:00Z"}},
    "action": {"name": "charge"},
    "resource": {"type": "payment", "id": "pay-42", "env": "prod"},
    "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3"},
}


def large_request() -> dict:
    """About 50 attributes of every type, lists of 20 scopes/groups/tags, nested maps."""
    identity = {
        "type": "workload", "id": "billing-api-7f9c", "spiffe_id": "spiffe://acme.prod/ns/billing/sa/api",
        "env": "prod", "team": "payments", "cluster": "eu-west-1a", "namespace": "billing",
        "scopes": [f"payments:scope-{i:02d}" for i in range(20)],
        "groups": [f"group-{i}" for i in range(20)],
        "credential": {"issued_at": "2026-11-27T10:00:00Z", "expires_at": 1_795_780_800, "kind": "jwt-svid",
                       "rotated": True, "key_id": "k-2026-11"},
        "claims": {"iss": "https://issuer.acme.prod", "sub": "spiffe://acme.prod/ns/billing/sa/api",
                   "aud": ["payments", "ledger"], "iat": 1_795_777_200, "exp": 1_795_780_800,
                   "nbf": 1_795_777_200, "jti": "0f8e2c7a-5d7e-4c41-9f0e-9d2b7c1a6e55", "azp": "billing"},
        "risk_score": 0.137, "mfa": False, "tier": 2, "build": "2026.11.3",
    }
    resource = {
        "type": "payment", "id": "pay-42", "env": "prod", "owner": "merchant-981", "currency": "EUR",
        "amount_cents": 1_250_000, "fee_ratio": 0.029, "captured": False, "region": "eu",
        "tags": [f"tag-{i}" for i in range(20)],
        "limits": {"daily": 10_000_000, "single": 2_500_000, "velocity": 12.5},
        "created_at": "2026-11-27T09:58:12Z", "ledger_id": 9_007_199_254_740_993,  # 2**53 + 1
        "labels": {"pci": "true", "cost-center": "cc-1182", "app": "checkout"},
    }
    context = {
        "time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3", "request_id": "9d2b7c1a-6e55",
        "headers": {"user-agent": "envoy/1.31", "x-request-id": "9d2b7c1a-6e55", "x-b3-traceid": "80f198ee56343ba8",
                    "content-type": "application/json", "accept": "application/json",
                    "x-forwarded-for": "10.1.2.3", "x-envoy-attempt-count": "1", "authorization": "Bearer <redacted>",
                    "x-tenant": "acme", "x-region": "eu-west-1"},
        "geo": {"country": "IE", "asn": 16509}, "tls": True, "attempt": 1,
    }
    return {"identity": identity, "action": {"name": "charge", "method": "POST", "idempotent": False},
            "resource": resource, "context": context}


LARGE = large_request()

PROBE = {
    "identity": {"type": "workload", "id": "probe", "umax": 2**64 - 1, "max": 2**63 - 1, "min": -(2**63),
                 "big": 2**53 + 1, "float3": 3.0, "int3": 3, "neg": -0.5, "list": [1, 1.0, True]},
    "action": {"name": "probe"},
    "resource": {"type": "probe"},
}

# --------------------------------------------------------------------------------------------
# run-time messages for the candidates the proto does not define


def _build_messages():
    fdp = descriptor_pb2.FileDescriptorProto(name="bench/wire_format.proto", package="bench.wire",
                                             syntax="proto3", dependency=["google/protobuf/struct.proto"])
    string, bytes_, message = (descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                               descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                               descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE)
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    m = fdp.message_type.add(name="StructRequest")
    m.field.add(name="request_id", number=1, type=string, label=optional)
    for n, key in enumerate(wire.TOP_LEVEL_KEYS, start=2):
        m.field.add(name=key, number=n, type=message, label=optional, type_name=".google.protobuf.Struct")
    m = fdp.message_type.add(name="BytesRequest")
    m.field.add(name="request_id", number=1, type=string, label=optional)
    m.field.add(name="payload", number=2, type=bytes_, label=optional)
    pool = descriptor_pool.Default()
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.wire.StructRequest")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.wire.BytesRequest")))


StructRequest, BytesRequest = _build_messages()

# --------------------------------------------------------------------------------------------
# candidates: (encode: dict -> bytes, decode: bytes -> dict)
#
# A bytes payload needs, on the server, the walk that drops nulls and rejects what is not a
# JSON value (the Value tree does it while converting); pdp.wire's is used for all of them.

check_request = wire._checked_request


def struct_encode(req: dict) -> bytes:
    msg = StructRequest(request_id="req-1")
    for key, obj in req.items():
        getattr(msg, key).update(obj)
    return msg.SerializeToString()


def _struct_value(v, ints: bool):
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        x = v.number_value
        if ints and x.is_integer() and -(2**63) <= x < 2**63:
            return int(x)
        return x
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return _struct_map(v.struct_value, ints)
    if kind == "list_value":
        return [_struct_value(i, ints) for i in v.list_value.values]
    if kind == "null_value":
        return None
    raise RequestError("", "Value with no kind")


def _struct_map(s, ints: bool) -> dict:
    out = {}
    for k, v in s.fields.items():
        x = _struct_value(v, ints)
        if x is not None:
            out[k] = x
    return out


def struct_decode(data: bytes, ints: bool = False) -> dict:
    msg = StructRequest.FromString(data)
    out = {"identity": _struct_map(msg.identity, ints), "action": _struct_map(msg.action, ints),
           "resource": _struct_map(msg.resource, ints)}
    if msg.HasField("context"):
        out["context"] = _struct_map(msg.context, ints)
    return out


def value_encode(req: dict) -> bytes:
    return wire.request_to_pb(req, "req-1").SerializeToString()


def value_decode(data: bytes) -> dict:
    return wire.pb_to_request(pb.CheckRequest.FromString(data))


def msgpack_encode(req: dict) -> bytes:
    return wire.request_to_pb(req, "req-1", form="msgpack").SerializeToString()


def msgpack_decode(data: bytes) -> dict:
    return wire.pb_to_request(pb.CheckRequest.FromString(data))


def msgpack_decode_unchecked(data: bytes) -> dict:
    return wire.pb_to_request(pb.CheckRequest.FromString(data), check=False)


def json_encode(req: dict) -> bytes:
    text = json.dumps(req, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return BytesRequest(request_id="req-1", payload=text).SerializeToString()


def json_decode(data: bytes) -> dict:
    return check_request(json.loads(BytesRequest.FromString(data).payload))


def orjson_encode(req: dict) -> bytes:
    return BytesRequest(request_id="req-1", payload=orjson.dumps(req)).SerializeToString()


def orjson_decode(data: bytes) -> dict:
    return check_request(orjson.loads(BytesRequest.FromString(data).payload))


CANDIDATES = [
    ("struct", struct_encode, struct_decode),
    ("struct+ints", struct_encode, lambda b: struct_decode(b, ints=True)),
    ("value", value_encode, value_decode),
    ("msgpack", msgpack_encode, msgpack_decode),
    ("msgpack-nochk", msgpack_encode, msgpack_decode_unchecked),
    ("json", json_encode, json_decode),
]
if orjson is not None:
    CANDIDATES.append(("orjson", orjson_encode, orjson_decode))

# --------------------------------------------------------------------------------------------
# measurement


def same(a, b) -> bool:
    """Equal with types: 3 != 3.0, True != 1."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def interleaved_medians(jobs: list[tuple], rounds: int, target_s: float = 0.01) -> list[float]:
    """Median µs per call of each ``(fn, arg)`` job; every round runs every job once, in turn.

    Interleaving spreads whatever else the machine is doing evenly over the candidates
    instead of letting it land on whichever ran at that moment.
    """
    timers = []
    for fn, arg in jobs:
        timer = timeit.Timer(lambda fn=fn, arg=arg: fn(arg))
        number, took = timer.autorange()  # at least 0.2 s worth of calls
        timers.append((timer, max(1, int(number * target_s / took))))
    samples: list[list[float]] = [[] for _ in jobs]
    for _ in range(rounds):
        for i, (timer, number) in enumerate(timers):
            samples[i].append(timer.timeit(number) / number * 1e6)
    return [statistics.median(x) for x in samples]


def machine() -> list[str]:
    return [
        f"python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}, "
        f"nproc {os.cpu_count()}",
        f"protobuf {google.protobuf.__version__}, backend {api_implementation.Type()}; "
        f"msgpack {'.'.join(map(str, msgpack.version))}"
        + (f"; orjson {orjson.__version__}" if orjson else "; orjson not installed"),
    ]


# --------------------------------------------------------------------------------------------
# part 2: a real Check over loopback

DECISION = {
    "decision": "ALLOW",
    "reasons": [{"rule": "payments.billing_may_charge", "effect": "permit",
                 "message": "billing workload charges with a fresh, scoped credential",
                 "annotations": {"owner": "payments-security"}}],
    "errors": [],
    "revision": "sha256:0f8e2c7a5d7e4c41",
    "eval_ns": 12000,
}


class _Servicer(pb_grpc.DecisionServiceServicer):
    def Check(self, request, context):
        wire.pb_to_request(request)
        return wire.decision_to_pb(DECISION, request.request_id)


def serve() -> None:
    """The child process: serve on an ephemeral loopback port, print it, run until stdin closes."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_DecisionServiceServicer_to_server(_Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(grace=None)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def grpc_latency(samples, rounds: int, calls: int = 500) -> list[tuple[str, str, float, float | None]]:
    """(sample, form, median latency µs, median server CPU µs per call); forms interleaved per round."""
    import grpc

    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        results = []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = pb_grpc.DecisionServiceStub(channel).Check
            for sample, req in samples:
                latency: dict[str, list[float]] = {"value": [], "msgpack": []}
                cpu: dict[str, list[float]] = {"value": [], "msgpack": []}
                for form in latency:  # warm up
                    for _ in range(calls):
                        check(wire.request_to_pb(req, "req-1", form=form))
                for _ in range(rounds):
                    for form in latency:
                        cpu0, start = _cpu_seconds(child.pid), time.perf_counter()
                        for _ in range(calls):
                            wire.pb_to_decision_dict(check(wire.request_to_pb(req, "req-1", form=form)))
                        latency[form].append((time.perf_counter() - start) / calls * 1e6)
                        cpu1 = _cpu_seconds(child.pid)
                        if cpu0 is not None and cpu1 is not None:
                            cpu[form].append((cpu1 - cpu0) / calls * 1e6)
                for form in latency:
                    results.append((sample, form, statistics.median(latency[form]),
                                    statistics.median(cpu[form]) if cpu[form] else None))
        return results
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=31, help="rounds per figure; the median is reported")
    ap.add_argument("--quick", action="store_true", help="5 rounds, for a smoke run")
    ap.add_argument("--no-grpc", action="store_true", help="skip part 2 (the loopback Check)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve()
    rounds = 5 if args.quick else args.rounds

    for line in machine():
        print(line)
    samples = [("SPEC §3 example", SPEC_EXAMPLE), ("large (~50 attrs)", LARGE)]
    print(f"\nPart 1: median of {rounds} interleaved rounds, microseconds per call\n")
    header = "| candidate | exact ints/floats |"
    for name, _ in samples:
        header += f" {name}: encode | decode | enc+dec | bytes |"
    print(header)
    print("|" + "---|" * (2 + 4 * len(samples)))
    jobs = []
    for _, encode, decode in CANDIDATES:
        for _, req in samples:
            jobs += [(encode, req), (decode, encode(req))]
    medians = iter(interleaved_medians(jobs, rounds))
    for name, encode, decode in CANDIDATES:
        exact = same(decode(encode(PROBE)), PROBE) and all(same(decode(encode(r)), r) for _, r in samples)
        row = f"| {name} | {'yes' if exact else 'NO'} |"
        for _, req in samples:
            enc, dec = next(medians), next(medians)
            row += f" {enc:.1f} | {dec:.1f} | {enc + dec:.1f} | {len(encode(req))} |"
        print(row)

    if not args.no_grpc:
        grpc_rounds = max(5, rounds // 3)
        print(f"\nPart 2: Check over loopback, {grpc_rounds} rounds of 500 calls per form, forms interleaved; "
              "medians. Latency: client encode + RPC + server decode and answer, as the client sees it. "
              "Server CPU: the server process's user+system time per call (all of gRPC included).\n")
        print("| request | form | latency µs | server CPU µs/call |")
        print("|---|---|---|---|")
        for sample, form, us, cpu in grpc_latency(samples, grpc_rounds):
            print(f"| {sample} | {form} | {us:.0f} | {'n/a' if cpu is None else f'{cpu:.0f}'} |", flush=True)


if __name__ == "__main__":
    main()
