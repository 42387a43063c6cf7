"""The clock bound (SPEC §1): in ``pdp serve`` a ``context.time`` further than
``--max-clock-skew`` (30 s by default) from the server clock makes ``now`` an evaluation error;
``pdp eval``, ``pdp test`` and the Python API take ``context.time`` as given.

Engine-level tests run every backend; server tests run a real ``pdp serve`` process and call
it over gRPC (Check, CheckBatch, CheckStream), Envoy's Check and AuthZEN over HTTP.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone

import grpc
import pytest
from authzenkit import Client as HttpClient
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from serverkit import WAIT, ServeProcess
from test_envoy import envoy_request

import pdp
from pdp import runtime
from pdp.cli import main
from pdp.client import Client
from pdp.times import human_duration

BACKENDS = sorted(runtime.EVALUATORS) + ["reference"]

POLICY = """\
policy api {
  target resource.type == "doc"

  forbid stale_token
    unless age(identity.issued_at) < 15m
    reason "token issued {age(identity.issued_at)}s ago"

  permit business_hours
    when now > 0
    reason "at {now}"
}

policy http {
  target resource.type == "http"
  forbid time_travel when now < 0
  permit anyone when true
}
"""

SUITE = """\
suite: api
tests:
  - name: an old fixed time is taken as given by the suites
    identity: {type: workload, id: a, issued_at: "2026-11-27T10:00:00Z"}
    action: read
    resource: {type: doc}
    context: {time: "2026-11-27T10:05:00Z"}
    expect: allow
"""


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def offset_texts(low: float, high: float) -> set[str]:
    """How a clock-bound message may state an offset (context.time minus the server clock)
    known only to lie between ``low`` and ``high`` seconds, both on one side of zero: each whole
    second in between, cut as the message cuts it (``1h``, ``1h1s``, …, then ``behind`` or
    ``ahead of``)."""
    direction = "behind" if high < 0 else "ahead of"
    near, far = sorted((abs(low), abs(high)))
    return {f"{human_duration(s)} {direction}" for s in range(math.floor(near), math.floor(far) + 1)}


def states_offset(message: str, requested: float, sent: float) -> bool:
    """``message`` states the offset of the context.time ``requested`` from a server clock read
    at ``sent`` or later, up to now. Tests read the clock around the call rather than expect
    one exact text: on a loaded machine the server may read its clock seconds after the test
    made the request, and the offset it states grows (or shrinks) with that delay."""
    texts = offset_texts(requested - time.time(), requested - sent)
    return any(f"context.time is {text} the server clock" in message for text in texts)


def request_at(context_time: object, issued_ago: float = 60.0) -> dict:
    now = time.time()
    request = {"identity": {"type": "workload", "id": "a", "issued_at": stamp(now - issued_ago)},
               "action": "read", "resource": {"type": "doc"}}
    if context_time is not None:
        request["context"] = {"time": context_time}
    return request


@pytest.fixture
def policies(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    (root / "api.pdl").write_text(POLICY, encoding="utf-8")
    (root / "api_test.yaml").write_text(SUITE, encoding="utf-8")
    return root


# ---- the engine ------------------------------------------------------------------------------


def test_the_expected_offset_texts_span_the_delay_between_the_clock_reads():
    """The helper the tests below use: every text the server may word the offset with."""
    assert offset_texts(-3600, -3600) == {"1h behind"}
    assert offset_texts(-3601.2, -3600) == {"1h behind", "1h1s behind"}
    assert offset_texts(124.9, 125.5) == {"2m4s ahead of", "2m5s ahead of"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_old_or_future_context_time_fails_closed_with_a_bound(policies, backend):
    engine = pdp.load(policies, backend=backend, max_clock_skew=30)
    # The clock reads later than the stamp: a past offset grows, a future one shrinks.
    for offset, words in ((-3600, "1h behind"), (-6 * 86400 - 4560, "6d1h16m behind"), (125.5, "2m5s ahead of")):
        sent = time.time()
        d = engine.decide(request_at(stamp(sent + offset)))
        late = time.time() - sent  # the engine read its clock at most this much after the stamp
        assert d.decision == "DENY"
        assert [r.rule for r in d.reasons] == ["api.stale_token"]
        message = d.reasons[0].message
        texts = offset_texts(offset - late, offset)
        assert words in texts  # the words for the offset itself, read at once
        assert any(message.startswith(f"failed closed: context.time is {t} the server clock") for t in texts), message
        assert message.endswith("the server clock; at most 30s is allowed (--max-clock-skew)")
        assert [e.rule for e in d.errors] == ["api.stale_token"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_context_time_within_the_bound_is_used(policies, backend):
    engine = pdp.load(policies, backend=backend, max_clock_skew=30)
    now = time.time()
    for context_time in (stamp(now - 20), stamp(now + 20), now - 5, int(now), None):
        d = engine.decide(request_at(context_time))
        assert d.decision == "ALLOW" and d.errors == (), context_time
    # Within the bound, a token older than 15 minutes is still stale: the time was used. Issued
    # an hour before `now` itself (request_at's issued_ago counts from when it is called, which
    # a loaded machine may make seconds later: the age would not be 3600 then).
    stale = request_at(stamp(now))
    stale["identity"]["issued_at"] = stamp(now - 3600)
    d = engine.decide(stale)
    assert d.decision == "DENY" and d.reasons[0].message.startswith(("token issued 3599.999", "token issued 3600"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_permit_that_reads_an_unbounded_time_does_not_apply(tmp_path, backend):
    (tmp_path / "p.pdl").write_text('policy p {\n  permit hours when now > 0\n}\n')
    engine = pdp.load(tmp_path, backend=backend).with_max_clock_skew(30)
    d = engine.decide(request_at(stamp(time.time() - 86400)))
    assert d.decision == "DENY" and [r.rule for r in d.reasons] == ["default"]
    assert [(e.rule, e.message) for e in d.errors] == [
        ("p.hours", "context.time is 1d behind the server clock; at most 30s is allowed (--max-clock-skew)")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_a_bound_context_time_is_taken_as_given(policies, backend):
    engine = pdp.load(policies, backend=backend)
    assert engine.max_clock_skew is None
    d = engine.decide({"identity": {"type": "workload", "id": "a", "issued_at": "2026-11-27T10:00:00Z"},
                       "action": "read", "resource": {"type": "doc"}, "context": {"time": "2026-11-27T10:05:00Z"}})
    assert d.decision == "ALLOW"
    bounded = engine.with_max_clock_skew(30)
    assert bounded.max_clock_skew == 30 and engine.max_clock_skew is None  # a new engine
    assert bounded.decide({"identity": {"type": "workload", "id": "a", "issued_at": "2026-11-27T10:00:00Z"},
                           "action": "read", "resource": {"type": "doc"},
                           "context": {"time": "2026-11-27T10:05:00Z"}}).decision == "DENY"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_malformed_context_time_keeps_its_own_message(policies, backend):
    engine = pdp.load(policies, backend=backend, max_clock_skew=30)
    d = engine.decide(request_at("yesterday"))
    assert d.reasons[0].message == "failed closed: context.time: 'yesterday' is not an RFC 3339 time"


@pytest.mark.parametrize("backend", BACKENDS)
def test_decide_at_measures_the_bound_against_the_given_server_time(policies, backend):
    engine = pdp.load(policies, backend=backend, max_clock_skew=30)
    fixed = {"identity": {"type": "workload", "id": "a", "issued_at": "2026-11-27T10:00:00Z"},
             "action": "read", "resource": {"type": "doc"}, "context": {"time": "2026-11-27T10:05:00Z"}}
    assert engine.decide_at(fixed, 1795773900 + 10).decision == "ALLOW"
    d = engine.decide_at(fixed, 1795773900 + 31)
    assert d.decision == "DENY" and "31s behind the server clock" in d.reasons[0].message
    # No context.time: now is the given server time (10 minutes after the token was issued).
    del fixed["context"]
    assert engine.decide_at(fixed, 1795773600 + 600).decision == "ALLOW"
    assert engine.decide_at(fixed, 1795773600 + 3600).decision == "DENY"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "30s", True])
def test_a_bad_bound_is_refused(policies, bad):
    with pytest.raises(ValueError, match="clock bound"):
        pdp.load(policies, max_clock_skew=bad)


def test_explain_uses_the_bound_too(policies):
    engine = pdp.load(policies, max_clock_skew=30)
    sent = time.time()
    explanation = engine.explain(request_at(stamp(sent - 3600)))
    assert explanation.decision.decision == "DENY"
    assert states_offset(json.dumps(explanation.to_dict()), sent - 3600, sent)


# ---- pdp serve -------------------------------------------------------------------------------


def test_pdp_serve_bounds_the_clock_on_every_api(policies):
    """gRPC Check, CheckBatch and CheckStream, Envoy's Check and AuthZEN over HTTP: an old or
    future context.time fails closed, one within the default 30 s is used."""
    args = (str(policies), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "1")
    with ServeProcess(*args) as server:
        port = server.wait_ready()
        http_port = int(server.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        now = time.time()
        old, future = stamp(now - 3600), stamp(now + 3600)

        def recent() -> str:  # made when sent: a loaded machine may take seconds between calls
            return stamp(time.time() - 2)

        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            d = client.check(request_at(old))
            assert d.decision == "DENY" and states_offset(d.reasons[0].message, now - 3600, now), d.reasons[0].message
            d = client.check(request_at(future))
            assert d.decision == "DENY" and states_offset(d.reasons[0].message, now + 3600, now), d.reasons[0].message
            assert client.check(request_at(recent())).decision == "ALLOW"
            assert client.check(request_at(None)).decision == "ALLOW"
            batch = client.check_batch([request_at(old), request_at(recent()), request_at(future)])
            assert [d.decision for d in batch] == ["DENY", "ALLOW", "DENY"]
            stream = list(client.check_stream([request_at(recent()), request_at(old)]))
            assert [d.decision for d in stream] == ["ALLOW", "DENY"]

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            envoy = ext_grpc.AuthorizationStub(channel)
            # Envoy's request.time becomes context.time (SPEC §7.1).
            sent = time.time()
            requested = int(sent) - 3600  # whole seconds: up to a second more than 1h before the clock
            answer = envoy.Check(envoy_request(seconds=requested), timeout=WAIT)
            assert answer.status.code == 7
            body = json.loads(answer.denied_response.body)
            assert body["reasons"][0]["rule"] == "http.time_travel"
            assert states_offset(body["reasons"][0]["message"], requested, sent), body["reasons"][0]["message"]
            assert envoy.Check(envoy_request(seconds=int(time.time())), timeout=WAIT).status.code == 0

        http = HttpClient(http_port)
        try:
            def evaluation(context_time):
                issued = stamp(time.time() - 60)
                body = {"subject": {"type": "workload", "id": "a", "properties": {"issued_at": issued}},
                        "action": {"name": "read"}, "resource": {"type": "doc", "id": "d1"},
                        "context": {"time": context_time}}
                status, _, answer = http.post("/access/v1/evaluation", body)
                assert status == 200
                return answer["decision"]

            assert evaluation(old) is False and evaluation(future) is False and evaluation(recent()) is True
        finally:
            http.close()
        assert server.stop() == 0


def test_pdp_serve_max_clock_skew_widens_or_narrows_the_bound(policies):
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--max-clock-skew", "2m") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            assert client.check(request_at(stamp(time.time() - 90))).decision == "ALLOW"  # over 30s, within 2m
            d = client.check(request_at(stamp(time.time() - 150)))
            assert d.decision == "DENY" and d.reasons[0].message.endswith("at most 2m is allowed (--max-clock-skew)")
        assert server.stop() == 0


@pytest.mark.parametrize("value, problem", [("30", "write whole amounts with the units"), ("1.5m", "whole numbers"),
                                            ("30s1m", "in the order d h m s ms"), ("-5s", "write whole amounts")])
def test_a_bad_max_clock_skew_is_a_usage_error(policies, capsys, value, problem):
    with pytest.raises(SystemExit) as info:
        main(["serve", str(policies), f"--max-clock-skew={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--max-clock-skew" in err and problem in err


def test_pdp_eval_takes_context_time_as_given(policies, tmp_path, capsys):
    request = tmp_path / "r.json"
    request.write_text(json.dumps({"identity": {"type": "workload", "id": "a", "issued_at": "2026-11-27T10:00:00Z"},
                                   "action": "read", "resource": {"type": "doc"},
                                   "context": {"time": "2026-11-27T10:05:00Z"}}))
    assert main(["eval", str(policies), "--request", str(request)]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "ALLOW"
    assert main(["test", str(policies)]) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_candidates_are_decided_with_the_bound_too(tmp_path, backend):
    """Engine.allowed_candidates (AuthZEN search) decides as decide does: bounded or not."""
    (tmp_path / "p.pdl").write_text('policy p {\n  permit fresh when resource.id != "x" and now > 0\n}\n')
    engine = pdp.load(tmp_path, backend=backend)
    old = {"identity": {"type": "workload", "id": "a"}, "action": "read", "resource": {"type": "doc", "id": "?"},
           "context": {"time": "2026-11-27T10:05:00Z"}}
    assert engine.allowed_candidates(old, "resource", "id", ["a", "x", "b"]) == [0, 2]
    assert engine.with_max_clock_skew(30).allowed_candidates(old, "resource", "id", ["a", "x", "b"]) == []
    recent = {**old, "context": {"time": stamp(time.time())}}
    assert engine.with_max_clock_skew(30).allowed_candidates(recent, "resource", "id", ["a", "x", "b"]) == [0, 2]


# ---- verified tokens (SPEC §8) ------------------------------------------------------------------

TOKEN_POLICY = """\
policy payments {
  target resource.type == "payment"

  forbid stale_token
    when defined(token) and age(token.issued_at) > 10m
    reason "token issued {duration(age(token.issued_at))} ago"

  permit billing when token.sub matches "spiffe://acme.prod/**"
}
"""


@pytest.fixture
def token_setup(tmp_path):
    from tokenkit import key, write_trust

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "payments.pdl").write_text(TOKEN_POLICY)
    return tmp_path / "p", write_trust(tmp_path / "trust", [key("ES256", "es1")])


def _paying(context_time, tok=None, rid="p1") -> dict:
    context = {} if context_time is None else {"time": context_time}
    if tok is not None:
        context["token"] = tok
    return {"identity": {"type": "workload", "id": "billing"}, "action": "charge",
            "resource": {"type": "payment", "id": rid}, "context": context}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_token_path_applies_the_bound(token_setup, backend):
    """decide, decide_many, decide_verified, decide_at (with claims), allowed_candidates and
    explain of an engine with a trust file bound context.time as decide does without one."""
    from tokenkit import ISSUER, AUDIENCE, key, token

    policies, trust = token_setup
    bounded = pdp.load(policies, backend=backend, trust=trust, max_clock_skew=30)
    unbounded = pdp.load(policies, backend=backend, trust=trust)
    now = float(int(time.time()))  # whole seconds: the offsets below are exact
    tok = token(key("ES256", "es1"), "ES256", now=now - 60)
    old = stamp(now - 3600)

    def recent() -> str:
        return stamp(time.time() - 1)

    def failed_closed(d) -> bool:  # `now` is the whole second before the test started: a lower bound of every clock read
        return (d.decision == "DENY" and [r.rule for r in d.reasons] == ["payments.stale_token"]
                and states_offset(d.reasons[0].message, now - 3600, now))

    assert failed_closed(bounded.decide(_paying(old, tok)))
    assert bounded.decide(_paying(recent(), tok)).decision == "ALLOW"
    # Without a bound the old time is taken as given: the token was issued after it.
    assert unbounded.decide(_paying(old, tok)).decision == "ALLOW"

    batch = bounded.decide_many([_paying(old, tok), _paying(recent(), tok), _paying(None, tok)])
    assert failed_closed(batch[0]) and [d.decision for d in batch[1:]] == ["ALLOW", "ALLOW"]

    claims = {"iss": ISSUER, "sub": "spiffe://acme.prod/ns/billing/sa/api", "aud": AUDIENCE,
              "iat": int(now - 60), "exp": int(now + 600)}
    assert failed_closed(bounded.decide_verified(_paying(old), claims))
    assert bounded.decide_verified(_paying(recent()), claims).decision == "ALLOW"
    assert unbounded.decide_verified(_paying(old), claims).decision == "ALLOW"

    # decide_at measures context.time against the time it is given, the token's claims or not.
    assert failed_closed(bounded.decide_at(_paying(old), now, claims))
    assert bounded.decide_at(_paying(old), now - 3600, claims).decision == "ALLOW"
    assert failed_closed(bounded.decide_at(_paying(old, tok), now))
    assert bounded.decide_at(_paying(old, tok), now - 3590).decision == "ALLOW"

    assert bounded.allowed_candidates(_paying(old, tok), "resource", "id", ["a", "b"]) == []
    assert bounded.allowed_candidates(_paying(recent(), tok), "resource", "id", ["a", "b"]) == [0, 1]
    assert unbounded.allowed_candidates(_paying(old, tok), "resource", "id", ["a", "b"]) == [0, 1]

    assert failed_closed(bounded.explain(_paying(old, tok)).decision)
    assert failed_closed(bounded.explain(_paying(old), claims).decision)
    assert unbounded.explain(_paying(old, tok)).decision.decision == "ALLOW"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_token_is_checked_against_the_server_clock_never_context_time(token_setup, backend):
    """exp, nbf and iat are the server clock's business (SPEC §8): a context.time at which the
    token would have been valid does not revive an expired one, bound or not."""
    from tokenkit import key, token

    policies, trust = token_setup
    now = time.time()
    expired = token(key("ES256", "es1"), "ES256", now=now - 7200, lifetime=600)
    early = token(key("ES256", "es1"), "ES256", now=now + 3600)
    not_before = token(key("ES256", "es1"), "ES256", nbf=int(now + 3600))
    for engine in (pdp.load(policies, backend=backend, trust=trust),
                   pdp.load(policies, backend=backend, trust=trust, max_clock_skew=30)):
        d = engine.decide(_paying(stamp(now - 7000), expired))
        assert [r.message.split(":")[0] for r in d.reasons] == ["token rejected"] and "expired" in d.reasons[0].message
        for tok, at in ((early, now + 3700), (not_before, now + 3700)):
            d = engine.decide(_paying(stamp(at), tok))
            assert d.decision == "DENY" and d.reasons[0].message.startswith("token rejected: not yet valid"), \
                d.reasons[0].message


def test_authzen_evaluation_and_search_with_a_token_are_bounded(token_setup, tmp_path):
    """The server's AuthZEN service decides a request carrying context.token on the bounded
    engine: evaluation and search alike."""
    from tokenkit import key, token
    from pdp.server import EngineHolder
    from pdp.server.authzen import AuthzenService
    from pdp.server.options import ServerOptions

    policies, trust = token_setup
    (policies / "authzen.data.yaml").write_text("search:\n  resource:\n    payment: payments\n")
    (policies / "payments.data.yaml").write_text("p1: {}\np2: {}\n")
    service = AuthzenService(EngineHolder(pdp.load(policies, trust=trust, max_clock_skew=30)), ServerOptions())
    tok = token(key("ES256", "es1"), "ES256", now=time.time() - 60)

    def body(context_time) -> dict:
        return {"subject": {"type": "workload", "id": "billing"}, "action": {"name": "charge"},
                "resource": {"type": "payment", "id": "p1"}, "context": {"time": context_time, "token": tok}}

    sent = time.time()
    old = stamp(sent - 3600)
    status, answer = service.evaluation(json.dumps(body(old)).encode())
    assert status == 200 and answer["decision"] is False
    assert states_offset(answer["context"]["reasons"][0]["message"], sent - 3600, sent)
    status, answer = service.evaluation(json.dumps(body(stamp(time.time()))).encode())
    assert status == 200 and answer["decision"] is True

    def search(context_time) -> list:
        request = body(context_time)
        request["resource"] = {"type": "payment"}
        status, answer = service.search("resource", json.dumps(request).encode())
        assert status == 200, answer
        return [r["id"] for r in answer["results"]]

    assert search(old) == []
    assert search(stamp(time.time())) == ["p1", "p2"]
