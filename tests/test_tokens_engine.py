"""The root ``token`` in the language and the engine's token gate (SPEC §8), on every backend."""

from __future__ import annotations

import json
import time

import pytest

import pdp
from pdp import runtime
from pdp.tokens import mint

from tokenkit import AUDIENCE, ISSUER, key, token, write_trust

BACKENDS = sorted(runtime.EVALUATORS) + ["reference"]

POLICY = """
policy payments {
  target resource.type == "payment"

  forbid stale_token
    when defined(token) and age(token.issued_at) > 10m
    reason "token issued {age(token.issued_at)}s ago"

  forbid needs_scope
    unless token.scopes contains "payments:write"
    reason "scopes {token.scopes}"

  permit billing
    when token.sub matches "spiffe://acme.prod/ns/billing/**"
     and token.aud contains "payments-api"
     and token.claims.client_id == "billing"
    reason "billing, bound={token.bound}, issuer {token.iss}"
}

policy anonymous {
  target resource.type == "status"
  permit no_token when not defined(token)
  permit any_token when defined(token) and token.bound == false
}
"""


def _request(tok=None, rtype="payment", **context):
    ctx = dict(context)
    if tok is not None:
        ctx["token"] = tok
    return {"identity": {"type": "workload", "id": "billing"}, "action": "charge",
            "resource": {"type": rtype, "id": "p1"}, "context": ctx}


@pytest.fixture
def engines(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "payments.pdl").write_text(POLICY)
    trust = write_trust(tmp_path / "trust", [key("ES256", "es1")])
    return {b: pdp.load(tmp_path / "p", backend=b, trust=trust) for b in BACKENDS}


def _tok(**claims):
    return token(key("ES256", "es1"), "ES256", client_id="billing", **claims)


def test_a_verified_token_is_the_root_token(engines):
    tok = _tok()
    for backend, engine in engines.items():
        d = engine.decide(_request(tok))
        assert d.decision == "ALLOW", backend
        assert [r.message for r in d.reasons] == [f"billing, bound=false, issuer {ISSUER}"]


def test_policies_decide_on_scopes_and_lifetime(engines):
    for backend, engine in engines.items():
        d = engine.decide(_request(_tok(scope="payments:read")))
        assert [(r.rule, r.message) for r in d.reasons] == [
            ("payments.needs_scope", 'scopes ["payments:read"]')], backend
        old = _tok(iat=int(time.time()) - 900)
        d = engine.decide(_request(old))
        assert d.decision == "DENY" and d.reasons[0].rule == "payments.stale_token", backend


def test_no_token_is_an_absent_root(engines):
    for backend, engine in engines.items():
        d = engine.decide(_request())
        # the forbid reading token.scopes fails closed; defined(token) is false
        assert [(r.rule, r.message) for r in d.reasons] == [
            ("payments.needs_scope", "failed closed: token is missing")], backend
        assert [(e.rule, e.message) for e in d.errors] == [("payments.needs_scope", "token is missing")]
        d = engine.decide(_request(rtype="status"))
        assert [r.rule for r in d.reasons] == ["anonymous.no_token"], backend


def test_a_rejected_token_is_deny_before_any_rule(engines):
    expired = _tok(iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)
    for backend, engine in engines.items():
        for tok, message in [(expired, "token rejected: expired"),
                             (_tok(aud="other"), "token rejected: audience"),
                             ("garbage", "token rejected: malformed: the token is not a compact JWS "
                                         "(three base64url parts)")]:
            for rtype in ("payment", "status"):  # "status" would ALLOW without a token
                d = engine.decide(_request(tok, rtype=rtype))
                assert d.decision == "DENY", backend
                assert [r.to_dict() for r in d.reasons] == [
                    {"rule": "pdp.token", "effect": "forbid", "message": message, "annotations": {}}]
                assert d.errors == ()
                assert "garbage" not in str(d.to_dict()) or tok != "garbage"


def test_token_times_are_the_server_clock_never_context_time(engines):
    """SPEC §8: exp, nbf and iat are checked on the server's clock; a request's context.time
    (a caller's word) can neither revive an expired token nor validate an early one."""
    now = int(time.time())
    expired = _tok(iat=now - 4000, exp=now - 3000)
    early = _tok(nbf=now + 3000, exp=now + 6000)
    fresh = _tok(iat=now - 60, exp=now + 600)
    for backend, engine in engines.items():
        before = {"time": "2001-01-01T00:00:00Z"}
        after = {"time": "2099-01-01T00:00:00Z"}
        assert engine.decide(_request(expired, rtype="status", **before)).reasons[0].message == \
            "token rejected: expired", backend
        assert engine.decide(_request(early, rtype="status", **after)).reasons[0].message == \
            "token rejected: not yet valid: nbf is in the future", backend
        for context in (before, after):  # a valid token stays valid whatever context.time says
            assert [r.rule for r in engine.decide(_request(fresh, rtype="status", **context)).reasons] == \
                ["anonymous.any_token"], backend


def test_a_malformed_request_is_a_request_error_even_with_a_bad_token(engines):
    for engine in engines.values():
        with pytest.raises(pdp.RequestError, match="identity"):
            engine.decide({"identity": {"type": "workload"}, "action": "x", "resource": {"type": "t"},
                           "context": {"token": "garbage"}})


def test_decide_many_and_explain_with_tokens(engines):
    good, bad = _tok(), _tok(aud="other")
    for backend, engine in engines.items():
        decisions = engine.decide_many([_request(good), _request(bad), _request(rtype="status")])
        assert [d.decision for d in decisions] == ["ALLOW", "DENY", "ALLOW"], backend
        assert decisions[1].reasons[0].rule == "pdp.token"
        with pytest.raises(pdp.RequestError, match=r"\[1\]\.resource"):
            engine.decide_many([_request(good), {"identity": {"type": "w", "id": "x"}, "action": "a"}])
    engine = engines["reference"]
    explanation = engine.explain(_request(bad))
    assert explanation.decision.reasons[0].message == "token rejected: audience"
    assert {r.status for r in explanation.rules} == {"not evaluated"}
    explanation = engine.explain(_request(good))
    assert explanation.decision.decision == "ALLOW"


def test_without_a_trust_file_tokens_are_not_verified_and_the_root_is_absent(tmp_path):
    (tmp_path / "p.pdl").write_text(POLICY)
    engine = pdp.load(tmp_path / "p.pdl")
    d = engine.decide(_request(_tok(), rtype="status"))
    assert [r.rule for r in d.reasons] == ["anonymous.no_token"]


def test_decide_verified_takes_claims_as_given(engines):
    claims = {"iss": ISSUER, "sub": "spiffe://acme.prod/ns/billing/sa/api", "aud": AUDIENCE,
              "scope": "payments:write", "client_id": "billing", "iat": int(time.time()),
              "exp": int(time.time()) + 60, "cnf": {"x5t#S256": "abc"}}
    for backend, engine in engines.items():
        d = engine.decide_verified(_request(), claims)
        assert d.reasons[0].message == f"billing, bound=true, issuer {ISSUER}", backend


def test_token_is_a_root_name(tmp_path):
    (tmp_path / "p.pdl").write_text("policy p {\n  let token = 1\n  permit r when token == 1\n}\n")
    with pytest.raises(pdp.PolicyError, match="token"):
        pdp.load(tmp_path / "p.pdl")


def test_load_with_a_bad_trust_file_is_a_policy_error(tmp_path):
    (tmp_path / "p.pdl").write_text(POLICY)
    (tmp_path / "trust.yaml").write_text("issuers: []\n")
    with pytest.raises(pdp.PolicyError) as info:
        pdp.load(tmp_path / "p.pdl", trust=tmp_path / "trust.yaml")
    assert info.value.line == 1 and "non-empty list" in info.value.message


def test_algorithms_end_to_end(tmp_path):
    (tmp_path / "p.pdl").write_text(POLICY)
    keys = [key(alg, f"k-{alg}") for alg in ("RS256", "ES256", "PS256", "EdDSA")]
    engine = pdp.load(tmp_path / "p.pdl", trust=write_trust(tmp_path / "t", keys))
    for alg, k in zip(("RS256", "ES256", "PS256", "EdDSA"), keys):
        d = engine.decide(_request(token(k, alg, client_id="billing")))
        assert d.decision == "ALLOW", alg
    hs = mint.generate_key("ES256", kid="k-ES256")  # same kid, another key: a forgery
    assert engine.decide(_request(token(hs, "ES256", client_id="billing"))).reasons[0].message == \
        "token rejected: signature"


SUITE = """
suite: tokens
fixtures:
  tokens:
    billing: {iss: "https://sts.acme.example", sub: "spiffe://acme.prod/ns/billing/sa/api", aud: payments-api,
              scope: "payments:write", client_id: billing, iat: "2026-11-27T10:00:00Z", exp: "2026-11-27T10:15:00Z"}
tests:
  - name: a fresh billing token may charge
    identity: {type: workload, id: billing}
    action: charge
    resource: {type: payment, id: p1}
    context: {time: "2026-11-27T10:05:00Z"}
    token: billing
    expect: allow
    reasons: [payments.billing]
  - name: an old token is refused
    identity: {type: workload, id: billing}
    action: charge
    resource: {type: payment, id: p1}
    context: {time: "2026-11-27T10:30:00Z"}
    token: billing
    expect: deny
    reasons: [payments.stale_token]
  - name: no token at all
    identity: {type: workload, id: billing}
    action: charge
    resource: {type: status}
    expect: allow
    reasons: [anonymous.no_token]
"""


def test_suites_give_tests_a_verified_token(tmp_path):
    from pdp.testing import Tester

    (tmp_path / "payments.pdl").write_text(POLICY)
    (tmp_path / "payments_test.yaml").write_text(SUITE)
    tester = Tester.load([tmp_path])
    result = tester.run(tester.load_suites())
    assert [r.problems for r in result.results] == [[], [], []]
    (tmp_path / "payments_test.yaml").write_text(SUITE.replace('iat: "2026-11-27T10:00:00Z"', 'iat: "soon"'))
    with pytest.raises(pdp.PolicyError, match="token iat"):
        tester.load_suites()


def test_replay_decides_logged_claims(tmp_path):
    from pdp.audit.replay import decide_logged

    (tmp_path / "p.pdl").write_text(POLICY)
    engine = pdp.load(tmp_path / "p.pdl")
    logged = _request({"iss": ISSUER, "sub": "spiffe://acme.prod/ns/billing/sa/api", "aud": [AUDIENCE],
                       "scope": "payments:write", "client_id": "billing", "iat": int(time.time()),
                       "exp": int(time.time()) + 600})
    assert decide_logged(engine, logged).reasons[0].rule == "payments.billing"


def test_review_reads_the_scopes_of_logged_tokens(tmp_path):
    """A decision log keeps a verified token's claims; pdp review counts its scopes."""
    from pdp.audit.review import review

    (tmp_path / "p.pdl").write_text('policy docs {\n  target resource.type == "doc"\n'
                                    '  permit read when token.scopes contains "docs:read"\n}\n')
    engine = pdp.load(tmp_path / "p.pdl")
    claims = {"iss": ISSUER, "sub": "bot", "scope": "docs:read docs:write", "iat": 1795773600, "exp": 1795774500}
    line = {"time": "2026-11-27T10:05:00Z", "request_id": "r1", "api": "pdp",
            "identity": {"type": "workload", "id": "bot"}, "action": "read", "resource": {"type": "doc", "id": "d"},
            "decision": "ALLOW", "reasons": ["docs.read"], "revision": engine.revision, "latency_us": 3.0,
            "input": {"identity": {"type": "workload", "id": "bot"}, "action": {"name": "read"},
                      "resource": {"type": "doc", "id": "d"}, "context": {"token": claims}}}
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(line) + "\n")
    view = review([str(log)], engine).identities["bot"]
    assert view.scopes_presented == {"docs:read", "docs:write"}
    assert view.scopes_used == {"docs:read"}


def test_search_candidates_see_the_verified_token(engines):
    """AuthZEN search (Engine.allowed_candidates) decides each candidate with the request's token."""
    request = _request(_tok(), rtype="payment")
    for backend, engine in engines.items():
        assert engine.allowed_candidates(request, "action", "name", ["charge", "read", "refund"]) == [0, 1, 2], backend
        assert engine.allowed_candidates(_request(_tok(aud="other")), "action", "name", ["charge"]) == [], backend
        assert engine.allowed_candidates(_request(rtype="status"), "resource", "id", ["a", "b"]) == [0, 1], backend
