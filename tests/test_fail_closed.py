"""Fail closed on internal errors: an unexpected exception while deciding (a bug, an exhausted
resource) gives DENY with the reason ``internal_error`` on every backend — never ALLOW, never
a crash — and is logged; a malformed request is still the caller's ``RequestError``.

Faults are injected where every evaluator reaches them: a built-in's implementation, an
operator, the rendering of a reason, and request validation. Built-ins and operators are
bound when an engine is linked, so they are patched before ``pdp.load``.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pdp
from conftest import request
from pdp import decision as decision_module
from pdp import operators, runtime
from pdp.builtins import BUILTINS
from pdp.decision import FAILED_CLOSED, INTERNAL_ERROR, Reason, RuleError

BACKENDS = [*sorted(runtime.EVALUATORS), "reference"]

POLICY = """
policy p {
  forbid blocked when identity.id == "mallory"
  permit svc_reads when lower(identity.id) == "svc" and action.name == "read" reason "hello {identity.id} {[action.name, 1.5]}"
  permit scored when identity.score < 1.5
}
"""
OK = request()  # allowed by p.svc_reads when nothing breaks


class Injected(RuntimeError):
    """The fault the tests inject (a RuntimeError, like most bugs)."""


def _raise(exc: BaseException):
    def impl(*args):
        raise exc
    return impl


def expect_failed_closed(decision, kind: str = "Injected") -> None:
    assert decision.decision == "DENY" and not decision.allowed
    message = f"internal error: {kind}"
    assert decision.reasons == (Reason(INTERNAL_ERROR, "forbid", FAILED_CLOSED + message, {}),)
    assert decision.errors == (RuleError(INTERNAL_ERROR, message),)
    assert decision.revision  # the revision that failed
    json.dumps(decision.to_dict())  # travels like any decision


@pytest.fixture
def policy_dir(tmp_path):
    (tmp_path / "p.pdl").write_text(POLICY, encoding="utf-8")
    return tmp_path


@pytest.fixture(autouse=True)
def quiet_rate_limit(monkeypatch):
    """Each test starts with the traceback rate limit cleared."""
    monkeypatch.setattr(decision_module, "_last_traceback", {})
    monkeypatch.setattr(decision_module, "_suppressed", {})


def patch_builtin(monkeypatch, name: str, impl) -> None:
    monkeypatch.setitem(BUILTINS, name, dataclasses.replace(BUILTINS[name], impl=impl))


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_a_fault_the_request_is_allowed(policy_dir, backend):
    """The control: every fault below turns this ALLOW into DENY."""
    engine = pdp.load(policy_dir, backend=backend)
    assert engine.decide(OK).allowed
    assert engine.decide(request(identity={"id": "x", "score": 1})).allowed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exc", [Injected("boom"), MemoryError(), RecursionError("deep"), KeyError("k"),
                                 TypeError("t"), ZeroDivisionError(), AssertionError("a"), IndexError()],
                         ids=lambda e: type(e).__name__)
def test_a_builtin_that_raises_fails_closed(policy_dir, monkeypatch, backend, exc):
    patch_builtin(monkeypatch, "lower", _raise(exc))
    engine = pdp.load(policy_dir, backend=backend)
    expect_failed_closed(engine.decide(OK), type(exc).__name__)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_operator_that_raises_fails_closed(policy_dir, monkeypatch, backend):
    # int < float: a mixed-type comparison, which every evaluator hands to the shared operator.
    monkeypatch.setitem(operators.OPERATORS, "<", _raise(Injected("<")))
    engine = pdp.load(policy_dir, backend=backend)
    expect_failed_closed(engine.decide(request(identity={"id": "x", "score": 1})))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fault_in_a_forbid_rule_fails_closed_too(tmp_path, monkeypatch, backend):
    (tmp_path / "p.pdl").write_text('policy p {\n  forbid f when upper(identity.id) == "X"\n  permit all\n}\n')
    patch_builtin(monkeypatch, "upper", _raise(Injected()))
    expect_failed_closed(pdp.load(tmp_path, backend=backend).decide(OK))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fault_while_rendering_a_reason_fails_closed(policy_dir, monkeypatch, backend):
    # The reason renders a list holding a number: every evaluator hands it to values.render
    # (the compiled one writes strings, integers and lists of plain strings itself).
    module = {"compiled": "pdp.runtime._ceval", "python": "pdp.runtime.pyeval", "reference": "pdp.reference"}[backend]
    engine = pdp.load(policy_dir, backend=backend)
    monkeypatch.setattr(f"{module}.render", _raise(Injected()))
    expect_failed_closed(engine.decide(OK))
    expect_failed_closed(engine.decide_many([OK])[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fault_in_request_validation_fails_closed(policy_dir, monkeypatch, backend):
    engine = pdp.load(policy_dir, backend=backend)
    monkeypatch.setattr("pdp.request._check_unicode", _raise(Injected()))
    # A null attribute and a non-ASCII string: the compiled fast path hands this one to
    # parse_request, which checks the string.
    raw = request(identity={"note": None, "name": "żółw"})
    expect_failed_closed(engine.decide(raw))
    expect_failed_closed(engine.decide_many([raw])[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_malformed_request_is_still_a_request_error(policy_dir, monkeypatch, backend):
    patch_builtin(monkeypatch, "lower", _raise(Injected()))
    engine = pdp.load(policy_dir, backend=backend)
    with pytest.raises(pdp.RequestError) as info:
        engine.decide({"identity": {"type": "workload"}, "action": "read", "resource": {"type": "doc"}})
    assert info.value.path == "identity.id"
    with pytest.raises(pdp.RequestError) as info:
        engine.decide_many([OK, OK, {"identity": {"type": "w", "id": "x"}, "action": 3, "resource": {"type": "d"}}])
    assert info.value.path == "[2].action"


@pytest.mark.parametrize("backend", BACKENDS)
def test_decide_many_fails_only_the_faulty_requests_closed(policy_dir, monkeypatch, backend):
    def lower(now, text):
        if text == "boom":
            raise Injected()
        return text.lower()

    patch_builtin(monkeypatch, "lower", lower)
    engine = pdp.load(policy_dir, backend=backend)
    bad = request(identity={"id": "boom"})
    denied = request(identity={"id": "mallory"})
    decisions = engine.decide_many([OK, bad, denied, OK, bad])
    assert [d.decision for d in decisions] == ["ALLOW", "DENY", "DENY", "ALLOW", "DENY"]
    expect_failed_closed(decisions[1])
    expect_failed_closed(decisions[4])
    assert decisions[0].reasons[0].rule == "p.svc_reads" and decisions[2].reasons[0].rule == "p.blocked"
    assert decisions[0] == engine.decide(OK)
    # Any iterable, as before.
    assert [d.decision for d in engine.decide_many(iter([bad, OK]))] == ["DENY", "ALLOW"]


def test_the_callers_own_exceptions_are_not_swallowed(policy_dir):
    """An iterator given to decide_many that raises is the caller's problem, not a decision."""
    def requests():
        yield OK
        raise Injected("the caller's")

    for backend in BACKENDS:
        with pytest.raises(Injected):
            pdp.load(policy_dir, backend=backend).decide_many(requests())


@pytest.mark.parametrize("backend", BACKENDS)
def test_internal_errors_are_logged_with_a_traceback_at_most_once_a_minute(policy_dir, monkeypatch, caplog, backend):
    patch_builtin(monkeypatch, "lower", _raise(Injected("details stay in the log")))
    engine = pdp.load(policy_dir, backend=backend)
    with caplog.at_level(logging.ERROR, logger="pdp.engine"):
        for _ in range(3):
            d = engine.decide(OK)
            assert "details" not in json.dumps(d.to_dict())  # the caller sees the type only
    records = [r for r in caplog.records if r.name == "pdp.engine"]
    assert len(records) == 3 and all(r.levelno == logging.ERROR for r in records)
    assert records[0].exc_info is not None and "details stay in the log" in caplog.text
    assert engine.revision in records[0].getMessage()
    assert [r.exc_info for r in records[1:]] == [None, None]
    assert "Injected" in records[1].getMessage()
    # A minute later the next one has its traceback again, and counts the quiet ones.
    monkeypatch.setattr(decision_module, "_last_traceback", {"Injected": -1e9})
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="pdp.engine"):
        engine.decide(OK)
    assert caplog.records[0].exc_info is not None and "2 more since the last traceback" in caplog.text


# ---- any fault, anywhere: never ALLOW ------------------------------------------------------

FAULT_POLICY = """
policy a {
  target resource.type in ["doc", "job"]
  let fresh = age(identity.issued) < 1h
  forbid stale unless fresh reason "issued {age(identity.issued)}s ago"
  forbid outside when not (context.ip in cidr("10.0.0.0/8"))
  permit readers when action.name in ["read", "list"] and lower(identity.id) startswith "svc"
    reason "{upper(identity.id)} reads {len(resource.tags)} tags"
  permit tagged when resource.tags contains_any ["public", 1] and len(identity.id) > 2
}
policy b {
  permit paths when resource.path matches "/v1/**" and identity.level >= 2.5
  forbid deny_list when identity.id in data.blocked.ids
}
"""

FAULT_REQUESTS = [
    request(identity={"id": "svc-a", "issued": "2026-01-01T00:00:00Z", "level": 3},
            resource={"tags": ["public"], "path": "/v1/x"},
            context={"time": "2026-01-01T00:10:00Z", "ip": "10.1.2.3"}),
    request(identity={"id": "SVC-b", "issued": 1767225600, "level": 2},
            resource={"type": "job", "tags": [1, 2], "path": "/v2"},
            context={"time": 1767226000, "ip": "10.9.9.9"}),
    request(identity={"id": "bob", "level": 3.5}, resource={"type": "other", "path": "/v1/a/b"}),
    request(identity={"id": "svc-c", "issued": "2025-01-01T00:00:00Z"}, action="list",
            resource={"tags": "public"}, context={"ip": "192.0.2.1", "time": "2025-01-01T00:30:00+01:00"}),
]


@pytest.fixture(scope="module")
def faulty_engines(tmp_path_factory):
    """One engine per backend whose every built-in and operator counts its calls and raises
    the ``n``-th one (set ``state["fail_at"]``); plus the healthy decisions to compare with."""
    root = tmp_path_factory.mktemp("faults")
    (root / "a.pdl").write_text(FAULT_POLICY, encoding="utf-8")
    (root / "blocked.data.json").write_text('{"ids": ["mallory"]}', encoding="utf-8")
    healthy = {b: pdp.load(root, backend=b) for b in BACKENDS}
    state = {"calls": 0, "fail_at": -1, "hit": False}

    def counting(fn):
        def wrapper(*args):
            state["calls"] += 1
            if state["calls"] == state["fail_at"]:
                state["hit"] = True
                raise Injected()
            return fn(*args)
        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        for name, op in list(operators.OPERATORS.items()):
            mp.setitem(operators.OPERATORS, name, counting(op))
        for name, b in list(BUILTINS.items()):
            if b.impl is not None:
                mp.setitem(BUILTINS, name, dataclasses.replace(b, impl=counting(b.impl)))
        faulty = {b: pdp.load(root, backend=b) for b in BACKENDS}
        yield healthy, faulty, state


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(backend=st.sampled_from(BACKENDS), index=st.integers(0, len(FAULT_REQUESTS) - 1),
       fail_at=st.integers(1, 12), many=st.booleans())
def test_a_fault_at_any_call_never_allows(faulty_engines, monkeypatch, backend, index, fail_at, many):
    """Whichever built-in or operator call fails: the decision is the healthy one (the fault
    was not reached) or DENY internal_error — never an ALLOW the policies did not give."""
    healthy, faulty, state = faulty_engines
    monkeypatch.setattr(decision_module, "_last_traceback", {"Injected": float("inf")})  # keep the log quiet
    raw = FAULT_REQUESTS[index]
    state.update(fail_at=-1)  # the reference engines look built-ins up at each call: no fault for the healthy one
    want = healthy[backend].decide(raw)
    state.update(calls=0, fail_at=fail_at, hit=False)
    got = faulty[backend].decide_many([raw])[0] if many else faulty[backend].decide(raw)
    event("fault reached" if state["hit"] else "fault not reached")
    if state["hit"]:
        expect_failed_closed(got)
    else:
        assert got == want


# ---- over gRPC: a DENY, not an RPC error ----------------------------------------------------


def test_the_server_answers_deny_and_logs_the_request_id(tmp_path, monkeypatch):
    from serverkit import WAIT, running

    from pdp.client import Client
    from pdp.server import ServerOptions
    from pdp.server.decision_log import DecisionLog

    (tmp_path / "p.pdl").write_text(POLICY, encoding="utf-8")

    def lower(now, text):
        if text == "svc":
            raise Injected("secret internals")
        return text.lower()

    patch_builtin(monkeypatch, "lower", lower)
    engine = pdp.load(tmp_path)
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    try:
        with running(engine, ServerOptions(decision_log=log)) as (_, port), Client(f"127.0.0.1:{port}") as client:
            expect_failed_closed(client.check(OK, request_id="req-42"))  # a decision, not an RPC error
            batch = client.check_batch([OK, request(identity={"id": "x", "score": 1})])
            expect_failed_closed(batch[0])
            assert batch[1].allowed
            assert next(client.check_stream([OK])).decision == "DENY"
            assert client.check(request(identity={"id": "x", "score": 1})).allowed  # still serving
            # Envoy: a 403 with the reason, not an RPC error (Envoy may let a request through on one).
            from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
            from test_envoy import envoy_request

            answer = ext_grpc.AuthorizationStub(client.channel).Check(envoy_request(principal="svc"), timeout=WAIT)
            assert answer.status.code == 7 and answer.denied_response.status.code == 403
            assert json.loads(answer.denied_response.body)["reasons"] == [
                {"rule": INTERNAL_ERROR, "message": "failed closed: internal error: Injected"}]
        assert log.flush(WAIT)
    finally:
        log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    first = lines[0]
    assert (first["request_id"], first["decision"], first["reasons"]) == ("req-42", "DENY", [INTERNAL_ERROR])
    assert "secret internals" not in path.read_text()
