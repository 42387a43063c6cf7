"""Fuzzing every input pdp reads from someone else: policy files, data files and suites (from
whoever may change policies), requests as Python values (from in-process callers), and gRPC
payloads as bytes (from the network). Each target states what must hold for *any* input:

- a policy, data or suite file: it loads, or a ``PolicyError`` with positions inside the
  file; never another exception; within a second;
- a request: a decision or a ``RequestError``, the same on every backend (compiled, python,
  reference), for ``decide`` and ``decide_many``; never another exception;
- gRPC bytes: a response or ``INVALID_ARGUMENT`` (``RESOURCE_EXHAUSTED`` past the size
  limit), and the server keeps serving; Envoy's ``Check`` always answers with a
  ``CheckResponse``.

tests/test_bad_input.py fuzzes the parser with PDL tokens and templates; here the inputs are
mutations of the shipped policy library, its data and its suites, so they stay close to
real files. The runs are bounded (a few seconds each) and derandomized in CI. A longer run:

    PDP_FUZZ_SCALE=100 pytest tests/test_fuzz.py -p no:cacheprovider     # random, 100x the examples

and, with ``pip install atheris`` (coverage-guided, runs until stopped):

    python tests/test_fuzz.py policy|request|wire|data|suite [libFuzzer flags, e.g. -max_total_time=600]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest and serverkit, also under atheris

import pdp
from pdp import runtime

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
BACKENDS = [*sorted(runtime.EVALUATORS), "reference"]
SCALE = int(os.environ.get("PDP_FUZZ_SCALE", "1"))
#: Seconds one load may take: a guard against super-linear blow-ups (a hang shows as minutes),
#: not a speed test, so it leaves room for a 2-core machine running other work (load ~10).
LOAD_BOUND = 8.0


def fuzz(examples: int):
    """Bounded and derandomized in CI; PDP_FUZZ_SCALE multiplies the examples and randomizes."""
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=SCALE == 1,
                    suppress_health_check=list(HealthCheck), database=None)


# ---- mutations of real files ----------------------------------------------------------------

SAMPLES = {p.name: p.read_bytes() for p in sorted(POLICIES.rglob("*")) if p.is_file() and p.suffix in
           (".pdl", ".yaml", ".yml", ".json")}
PDL = {k: v for k, v in SAMPLES.items() if k.endswith(".pdl")}
DATA = {k: v for k, v in SAMPLES.items() if ".data." in k}
SUITES = {k: v for k, v in SAMPLES.items() if k.endswith("_test.yaml")}
FRAGMENTS = [b"{", b"}", b"(", b")", b"[", b"]", b'"', b"\\", b"\n", b"#", b":", b"- ", b"  ", b"\t", b"&a ", b"*a",
             b"!!str ", b"{{", b"}}", b"***", b"\x00", b"\xff", b"\xc3", "\u00a0".encode(), "é".encode(), b"\r",
             b"---\n", b"...\n", b"not ", b" and ", b" or ", b" matches ", b"permit ", b"forbid ", b"policy ",
             b"9" * 30, b"1h30", b"@", b"let ", b"reason ", b"when ", b"unless ", b"target ", b"data.", b"identity."]


@st.composite
def mutated(draw, samples: dict[str, bytes]) -> tuple[str, bytes]:
    """A sample file with a few byte-level edits: cuts, insertions, duplicated or swapped
    ranges, replaced bytes."""
    name = draw(st.sampled_from(sorted(samples)))
    data = bytearray(samples[name])
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 64)))
        kind = draw(st.sampled_from(["cut", "insert", "duplicate", "replace", "swap", "byte"]))
        if kind == "cut":
            del data[i:j]
        elif kind == "insert":
            data[i:i] = draw(st.sampled_from(FRAGMENTS) | st.binary(max_size=8))
        elif kind == "duplicate":
            data[i:i] = data[i:j] * draw(st.integers(1, 50))
        elif kind == "replace":
            data[i:j] = draw(st.sampled_from(FRAGMENTS))
        elif kind == "swap" and n:
            k = draw(st.integers(0, n - 1))
            data[i:j], data[k:k] = b"", data[i:j]
        elif n:
            data[min(i, n - 1)] = draw(st.integers(0, 255))
    return name, bytes(data)


def assert_positioned(err: pdp.PolicyError, files: dict[str, bytes]) -> None:
    """Every diagnostic points inside its file (or is file-level: line 0, column 0)."""
    assert err.diagnostics
    text = str(err)
    text.encode("utf-8")  # printable
    for d in err.diagnostics:
        if d.line == 0:
            assert d.column == 0, d
            continue
        content = next((c for name, c in files.items() if d.file.endswith(name)), None)
        assert content is not None, (d.file, list(files))
        lines = content.decode("utf-8", "replace").lstrip("\ufeff").split("\n")
        assert 1 <= d.line <= len(lines) + 1, d
        assert 1 <= d.column <= len(lines[d.line - 1] if d.line <= len(lines) else "") + 2, d


# ---- policy files ---------------------------------------------------------------------------


def check_policy_set(files: dict[str, bytes]) -> None:
    """Load ``files`` (the shipped library with some replaced): an engine that can decide and
    explain, or a positioned PolicyError; within LOAD_BOUND seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, content in files.items():
            (root / name).write_bytes(content)
        started = time.perf_counter()
        try:
            engine = pdp.load(root)
        except pdp.PolicyError as err:
            assert_positioned(err, files)
        else:
            from conftest import request

            engine.decide(request())
            engine.explain(request()).render()
        assert time.perf_counter() - started < LOAD_BOUND * max(1, sum(map(len, files.values())) // 200_000)


LIBRARY = {k: v for k, v in SAMPLES.items() if not k.endswith("_test.yaml")}


@fuzz(150)
@given(mutated(PDL))
def test_mutated_policy_files(edit):
    name, content = edit
    check_policy_set({**LIBRARY, name: content})


@fuzz(100)
@given(mutated(DATA))
def test_mutated_data_files(edit):
    name, content = edit
    check_policy_set({**LIBRARY, name: content})


@fuzz(60)
@given(st.sampled_from(sorted(DATA)), st.text(max_size=300), st.sampled_from([".data.yaml", ".data.json"]))
def test_any_text_as_a_data_file(name, text, suffix):
    files = {k: v for k, v in LIBRARY.items() if k != name}
    check_policy_set({**files, name.split(".")[0] + suffix: text.encode("utf-8")})


# ---- suites ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tester():
    from pdp.testing.runner import Tester

    return Tester.load([POLICIES])


def check_suite(tester, content: bytes) -> None:
    """A suite loads and runs (each test passes or fails with a message), or is a positioned
    PolicyError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz_test.yaml"
        path.write_bytes(content)
        started = time.perf_counter()
        try:
            suite = tester.load_suite(path)
        except pdp.PolicyError as err:
            assert_positioned(err, {"fuzz_test.yaml": content})
            return
        result = tester.run([suite])
        for r in result.results:
            assert r.passed or all(isinstance(p, str) and p for p in r.problems), r
        assert time.perf_counter() - started < 10 * LOAD_BOUND


@fuzz(100)
@given(mutated(SUITES))
def test_mutated_suites(tester, edit):
    check_suite(tester, edit[1])


# ---- requests -------------------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
            | st.text(max_size=8) | st.sampled_from(["", "\ud800", "spiffe://a/b", "2026-01-01T00:00:00Z"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=4), max_leaves=12)
# Python values a caller might pass that are not JSON.
_odd = st.sampled_from([b"bytes", (1, 2), {1, 2}, frozenset(), object(), 1j, float("nan"), float("inf"), 2**64,
                        -(2**63) - 1, {1: "int key"}, {None: 1}, {"a": {"b": [None]}}, [None], bytearray(b"x")])
_value = st.recursive(_scalars | _odd, lambda inner: st.lists(inner, max_size=3)
                      | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=3) | st.integers(0, 2), inner,
                                                                  max_size=3), max_leaves=8)

VALID = {"identity": {"type": "workload", "id": "billing", "env": "prod", "scopes": ["payments:write"],
                      "spiffe_id": "spiffe://acme.prod/ns/billing/sa/api",
                      "credential": {"issued_at": "2026-11-27T10:00:00Z"}},
         "action": {"name": "charge"},
         "resource": {"type": "payment", "id": "pay-42", "env": "prod"},
         "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3"}}


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def near_valid(draw):
    """The spec's example request with one to three places replaced, removed or added."""
    raw = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(raw))
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["replace", "remove", "add"]))
        if kind == "replace":
            parent[path[-1]] = draw(_value)
        elif kind == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6) | st.sampled_from(["peer", "type", "id", "name", "time"]))] = draw(_value)
    return raw


@pytest.fixture(scope="module")
def engines():
    return {b: pdp.load(POLICIES, backend=b) for b in BACKENDS}


def _outcome(engine, raw, many: bool):
    try:
        d = engine.decide_many([VALID, raw])[1] if many else engine.decide(raw)
        return ("decision", d.decision, [(r.rule, r.effect, r.message, dict(r.annotations)) for r in d.reasons],
                [(e.rule, e.message) for e in d.errors], d.revision)
    except pdp.RequestError as err:
        assert isinstance(err.path, str) and err.message
        str(err).encode("utf-8")  # printable, a lone surrogate included
        return ("RequestError", err.path.removeprefix("[1].").removeprefix("[1]") if many else err.path, err.message)


def check_request(engines, raw) -> None:
    """Every backend: the same decision, or the same RequestError; decide_many agrees too.
    No decision fails closed on an internal error. (A request without ``context.time`` gets
    one: the backends read the clock at different instants, and ages show in reasons.)"""
    if type(raw) is dict and raw.get("context") is None:
        raw = {**raw, "context": {"time": "2026-11-27T10:05:00Z"}}
    elif type(raw) is dict and type(raw["context"]) is dict and raw["context"].get("time") is None:
        raw = {**raw, "context": {**raw["context"], "time": "2026-11-27T10:05:00Z"}}
    for many in (False, True):
        outcomes = {b: _outcome(e, raw, many) for b, e in engines.items()}
        outcome = outcomes["reference"]
        assert all(o == outcome for o in outcomes.values()), outcomes
        if outcome[0] == "decision":
            assert "internal_error" not in repr(outcome), outcome


@fuzz(300)
@given(near_valid())
def test_near_valid_requests(engines, raw):
    check_request(engines, raw)


@fuzz(150)
@given(_value | _json)
def test_any_value_as_a_request(engines, raw):
    check_request(engines, raw)


@fuzz(100)
@given(st.dictionaries(st.sampled_from(["identity", "action", "resource", "context", "subject", 1]), _value,
                       max_size=5))
def test_any_top_level_shape(engines, raw):
    check_request(engines, raw)


# ---- gRPC payloads --------------------------------------------------------------------------


def _wire_samples() -> list[bytes]:
    from pdp.wire import request_to_pb

    out = []
    for form in ("value", "msgpack"):
        out.append(request_to_pb(VALID, "req-1", form=form).SerializeToString())
        out.append(request_to_pb({**VALID, "context": {"deep": [[{"a": [1.5, True, -3]}]], "n": 2**64 - 1}}, form=form)
                   .SerializeToString())
    return out


WIRE = {f"sample{i}": data for i, data in enumerate(_wire_samples())}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import grpc
    from serverkit import running

    from pdp.server import ServerOptions

    engine = pdp.load(POLICIES)
    with running(engine, ServerOptions(max_message_bytes=64 * 1024)) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel


#: The ``served`` fixture's message size limit.
MAX_MESSAGE = 64 * 1024


def assert_wire_text(text: str) -> None:
    """Error text sent to a gRPC caller: printable ASCII, at most 1 KB (gRPC metadata carries
    nothing else, and caps its size)."""
    assert len(text) <= 1024 and text.isascii() and text.isprintable(), (len(text), text[:200])


def check_wire(channel, data: bytes) -> None:
    """Any bytes, to every method: an answer or INVALID_ARGUMENT with printable details of at
    most 1 KB; the server keeps serving."""
    import grpc

    from pdp.v1 import decision_pb2 as pb

    for method, reply in (("Check", pb.CheckResponse), ("CheckBatch", pb.CheckBatchResponse)):
        call = channel.unary_unary(f"/pdp.v1.DecisionService/{method}")
        batch = method == "CheckBatch"
        payload = b"\x0a" + _varint(len(data)) + data if batch else data
        try:
            answer = reply.FromString(call(payload, timeout=30))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and len(payload) > MAX_MESSAGE:
                continue
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.code(), err.details())
            assert_wire_text(err.details())
            for _, value in err.trailing_metadata() or ():
                assert_wire_text(value)
        else:
            for item in (answer.responses if batch else [answer]):
                if item.HasField("error"):
                    assert_wire_text(item.error.message)
                    assert_wire_text(item.error.path)
                else:
                    assert item.decision in (pb.DECISION_ALLOW, pb.DECISION_DENY), item
    if len(data) > MAX_MESSAGE:
        return
    stream = channel.stream_stream("/pdp.v1.DecisionService/CheckStream")
    answers = [pb.CheckResponse.FromString(b) for b in stream(iter([data, WIRE["sample0"]]), timeout=30)]
    assert len(answers) == 2 and answers[1].decision in (pb.DECISION_ALLOW, pb.DECISION_DENY)
    if answers[0].HasField("error"):
        assert_wire_text(answers[0].error.message)
        assert_wire_text(answers[0].error.path)


def check_envoy(channel, data: bytes) -> None:
    """Bytes that are an Envoy CheckRequest always get a CheckResponse, OK or 403: never an
    RPC error (Envoy may let a request through on one)."""
    from envoy.service.auth.v3 import external_auth_pb2 as ext
    from google.protobuf.message import DecodeError

    try:
        ext.CheckRequest.FromString(data)
    except (DecodeError, RecursionError):
        return
    envoy = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
    answer = ext.CheckResponse.FromString(envoy(data, timeout=30))
    assert answer.status.code in (0, 7), answer
    if answer.status.code == 7:
        assert answer.denied_response.status.code == 403


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


@fuzz(120)
@given(mutated(WIRE) | st.binary(max_size=200).map(lambda b: ("random", b)))
def test_any_bytes_over_grpc(served, edit):
    check_wire(served, edit[1])


#: Attribute names from the whole of Unicode (lone surrogates cannot be encoded), short or long.
NAMES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | \
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=300, max_size=700)


@fuzz(60)
@given(keys=st.lists(NAMES, min_size=1, max_size=36), form=st.sampled_from(["value", "msgpack"]),
       bad=st.booleans(), data=st.data())
def test_error_text_is_printable_whatever_the_names(served, keys, form, bad, data):
    """Requests whose keys are any text, nested up to 36 deep down to a good or a bad value,
    as sent and with their bytes mutated: every error the caller gets is printable and short."""
    from pdp.wire import request_to_pb

    if form == "value":
        keys = keys[:20]  # the Value form refuses deeper nesting before sending
    value: object = [1, None] if bad and form == "msgpack" else "ok"
    for key in reversed(keys):
        value = {key: value}
    msg = request_to_pb({**VALID, "context": value}, form=form)
    if bad and form == "value":  # a Value with no kind set, where the path ends
        fields = msg.context
        for key in keys[:-1]:
            fields = fields[key].map_value.fields
        fields[keys[-1]].Clear()
    check_wire(served, msg.SerializeToString())
    check_wire(served, data.draw(mutated({"named": msg.SerializeToString()}))[1])


def _envoy_samples() -> dict[str, bytes]:
    from test_envoy import SPIFFE, envoy_request

    return {"allow": envoy_request(principal=SPIFFE, path="/v1/x", headers={"x-tenant": "acme"},
                                   extensions={"tenant": "acme"}, jwt={"sub": "user-1", "exp": 2000})
            .SerializeToString(),
            "deny": envoy_request(ip="203.0.113.7", path="/public/x").SerializeToString()}


@fuzz(100)
@given(st.data())
def test_any_envoy_check_request_gets_a_check_response(served, data):
    check_envoy(served, data.draw(mutated(_envoy_samples()))[1])


def test_bytes_that_are_not_an_envoy_check_request_are_a_deny(served):
    """SPEC §7.1: the Envoy service always answers with a CheckResponse, never an RPC error."""
    from envoy.service.auth.v3 import external_auth_pb2 as ext

    raw = served.unary_unary("/envoy.service.auth.v3.Authorization/Check")(b"\x00", timeout=30)
    response = ext.CheckResponse.FromString(raw)
    assert response.status.code == 7  # PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    assert "not an Envoy CheckRequest" in response.denied_response.body


# ---- atheris (coverage-guided, for long runs) -----------------------------------------------


def _atheris_main() -> None:  # pragma: no cover - a manual long run
    import atheris

    target = sys.argv.pop(1)
    if target in ("policy", "data"):
        names = sorted(PDL if target == "policy" else DATA)

        def one(data: bytes) -> None:
            fdp = atheris.FuzzedDataProvider(data)
            name = names[fdp.ConsumeIntInRange(0, len(names) - 1)]
            check_policy_set({**LIBRARY, name: fdp.ConsumeBytes(len(data))})
    elif target == "suite":
        from pdp.testing.runner import Tester

        loaded = Tester.load([POLICIES])

        def one(data: bytes) -> None:
            check_suite(loaded, data)
    elif target == "request":
        loaded = {b: pdp.load(POLICIES, backend=b) for b in BACKENDS}

        def one(data: bytes) -> None:
            try:
                raw = json.loads(data)
            except (ValueError, RecursionError):
                return
            check_request(loaded, raw)
    elif target == "wire":
        import grpc
        from serverkit import running

        context = running(pdp.load(POLICIES))
        _, port = context.__enter__()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")

        def one(data: bytes) -> None:
            check_wire(channel, data)
    else:
        raise SystemExit(f"unknown target {target!r}: policy, data, suite, request or wire")
    atheris.instrument_all()  # coverage feedback from every loaded module (pdp's included)
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    _atheris_main()
