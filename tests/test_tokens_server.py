"""Verified tokens in ``pdp serve``: certificate binding (RFC 8705) over pdp's own mTLS, over
Envoy and from ``context.tls``; DPoP proofs (RFC 9449); no token string in logs or metrics."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc

import pdp
from pdp.client import Client
from pdp.server import ServerOptions, TLSConfig
from pdp.server.envoy_authz import envoy_to_request
from pdp.tokens import mint
from pdp.tokens.binding import certificate_thumbprint
from pdp.tokens.verify import b64url

from serverkit import WAIT, ServeProcess, make_certs, running
from test_envoy import envoy_request
from tokenkit import key, token, write_trust

POLICY = """
policy api {
  target resource.type == "api"
  permit bound_writer
    when token.bound and token.scopes contains "payments:write"
    reason "bound token of {token.sub}"
}

policy http {
  target resource.type == "http"
  permit bound_caller when token.bound reason "bound"
}
"""

API = {"identity": {"type": "workload", "id": "billing"}, "action": "charge", "resource": {"type": "api"}}
URL = "https://api.acme/v1/payments"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def engine(tmp_path):
    (tmp_path / "p.pdl").write_text(POLICY)
    return pdp.load(tmp_path / "p.pdl", trust=write_trust(tmp_path / "trust", [key("ES256", "es1")]))


def _served_folder(tmp_path):
    """A folder of POLICY for ``pdp serve``, and a trust file of the key es1."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.pdl").write_text(POLICY)
    return policies, write_trust(tmp_path / "trust", [key("ES256", "es1")])


def _bound_to(cert_path) -> str:
    return token(key("ES256", "es1"), "ES256", cnf={"x5t#S256": certificate_thumbprint(cert_path.read_bytes())})


def _with(request: dict, **context) -> dict:
    return {**request, "context": {**request.get("context", {}), **context}}


def _reason(decision) -> str:
    return decision.reasons[0].message


# ---- certificate binding over pdp's own mTLS


def test_certificate_binding_over_pdps_own_mtls(engine, certs):
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key, certs.ca))
    mine, other = _bound_to(certs.client_cert), _bound_to(certs.other_client_cert)
    with running(engine, options) as (_, port):
        with Client(f"127.0.0.1:{port}", root_ca=certs.ca, cert=certs.client_cert, key=certs.client_key) as client:
            decision = client.check(_with(API, token=mine))
            assert decision.allowed and _reason(decision) == "bound token of spiffe://acme.prod/ns/billing/sa/api"
            assert _reason(client.check(_with(API, token=other))) == \
                "token rejected: certificate binding: another client certificate"
            # a PEM in context.tls does not replace the connection's own certificate
            spoofed = _with(API, token=other, tls={"peer_certificate": certs.other_client_cert.read_text()})
            assert _reason(client.check(spoofed)) == "token rejected: certificate binding: another client certificate"
    # TLS without a client certificate: nothing to bind to
    with running(engine, ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key))) as (_, port):
        with Client(f"127.0.0.1:{port}", root_ca=certs.ca) as client:
            assert _reason(client.check(_with(API, token=mine))) == \
                "token rejected: certificate binding: no client certificate"


def test_certificate_binding_from_context_tls(engine, certs):
    mine = _bound_to(certs.client_cert)
    assert engine.decide(_with(API, token=mine, tls={"peer_certificate": certs.client_cert.read_text()})).allowed
    assert _reason(engine.decide(_with(API, token=mine, tls={"peer_certificate": "not a PEM"}))) == \
        "token rejected: certificate binding: context.tls.peer_certificate is not a PEM certificate"
    assert _reason(engine.decide(_with(API, token=mine))) == "token rejected: certificate binding: no client certificate"


# ---- over Envoy


def _envoy(tok=None, cert=None, dpop=None, path="/v1/payments"):
    headers = {}
    if tok is not None:
        headers["authorization"] = f"Bearer {tok}"
    if dpop is not None:
        headers["dpop"] = dpop
    request = envoy_request(method="POST", path=path, headers=headers)
    if cert is not None:
        request.attributes.source.certificate = urllib.parse.quote(cert.read_text())
    return request


def test_envoy_maps_bearer_dpop_certificate_and_url():
    request = envoy_to_request(_envoy("abc.def.ghi", dpop="proof", path="/v1/payments?x=1"))
    context = request["context"]
    assert context["token"] == "abc.def.ghi" and context["dpop"] == "proof"
    assert context["http"] == {"method": "POST", "url": "https://api.acme/v1/payments"}
    assert "tls" not in context


def test_certificate_binding_over_envoy(engine, certs):
    mine = _bound_to(certs.client_cert)
    with running(engine) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ext_grpc.AuthorizationStub(channel)
            assert stub.Check(_envoy(mine, certs.client_cert), timeout=WAIT).status.code == 0
            denied = stub.Check(_envoy(mine, certs.other_client_cert), timeout=WAIT)
            assert denied.status.code == 7 and denied.denied_response.status.code == 403
            body = json.loads(denied.denied_response.body)
            assert body["reasons"] == [{"rule": "pdp.token",
                                        "message": "token rejected: certificate binding: another client certificate"}]
            assert mine not in denied.denied_response.body
            no_cert = json.loads(stub.Check(_envoy(mine), timeout=WAIT).denied_response.body)
            assert no_cert["reasons"][0]["message"] == "token rejected: certificate binding: no client certificate"
            expired = token(key("ES256", "es1"), "ES256", now=time.time() - 7200)
            assert json.loads(stub.Check(_envoy(expired), timeout=WAIT).denied_response.body)["reasons"][0] == {
                "rule": "pdp.token", "message": "token rejected: expired"}


# ---- DPoP


def _dpop_bound(holder_key):
    return token(key("ES256", "es1"), "ES256", cnf={"jkt": mint.jkt(holder_key)})


def test_dpop_accepted_replayed_wrong_htu_stale_iat(engine):
    holder = mint.generate_key("ES256")
    tok = _dpop_bound(holder)
    http = {"method": "POST", "url": URL}

    def decide(proof, **context):
        return engine.decide(_with(API, token=tok, dpop=proof, http=context.get("http", http)))

    proof = mint.dpop_proof(holder, "ES256", "POST", URL + "?page=2", tok)  # the query is not compared
    assert decide(proof).allowed
    assert _reason(decide(proof)) == "token rejected: dpop: the proof was used before (jti replayed)"
    assert _reason(decide(mint.dpop_proof(holder, "ES256", "POST", "https://api.acme/v1/other", tok))) == \
        "token rejected: dpop: htu is not the request's URL"
    assert _reason(decide(mint.dpop_proof(holder, "ES256", "GET", URL, tok))) == \
        "token rejected: dpop: htm is not the request's method"
    stale = mint.dpop_proof(holder, "ES256", "POST", URL, tok, now=time.time() - 600)
    assert _reason(decide(stale)).startswith("token rejected: dpop: the proof is not fresh")
    other_holder = mint.generate_key("ES256")
    assert _reason(decide(mint.dpop_proof(other_holder, "ES256", "POST", URL, tok))) == \
        "token rejected: dpop: the proof's key is not the one the token is bound to (cnf.jkt)"
    assert _reason(decide(mint.dpop_proof(holder, "ES256", "POST", URL, "another.token.value"))) == \
        "token rejected: dpop: ath is not the hash of this token"
    assert _reason(engine.decide(_with(API, token=tok, http=http))) == \
        "token rejected: dpop: the token is DPoP-bound and the request carries no proof"
    assert _reason(decide(mint.dpop_proof(holder, "ES256", "POST", URL, tok), http={})).startswith(
        "token rejected: dpop: the request has no context.http.method")
    assert mint.dpop_proof(holder, "ES256", "POST", URL, tok).count(".") == 2


def _proof(holder, alg="ES256", header=None, claims=None, drop=(), sign=True) -> str:
    """A DPoP proof for POST URL made by hand: ``header``/``claims`` override the usual members,
    ``drop`` removes some; ``sign=False`` gives it a signature of garbage."""
    import base64
    import uuid
    import warnings

    from joserfc import jws

    head = {"typ": "dpop+jwt", "alg": alg, "jwk": mint.public_jwk(holder), **(header or {})}
    body = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": str(uuid.uuid4()), **(claims or {})}
    head = {k: v for k, v in head.items() if k not in drop}
    body = {k: v for k, v in body.items() if k not in drop}
    payload = json.dumps(body, separators=(",", ":")).encode()
    if not sign:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        return ".".join([b64(json.dumps(head).encode()), b64(payload), b64(b"\x01" * 64)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jws.serialize_compact(head, payload, holder, algorithms=[alg])


def test_every_dpop_proof_check(engine):
    """RFC 9449 §4.3, one fault at a time, each with an otherwise valid signed proof."""
    holder = mint.generate_key("ES256")
    tok = _dpop_bound(holder)

    def why(proof) -> str:
        return _reason(engine.decide(_with(API, token=tok, dpop=proof, http={"method": "POST", "url": URL})))

    ath = {"ath": b64url(hashlib.sha256(tok.encode()).digest())}
    assert why(_proof(holder, claims=ath)) == "bound token of spiffe://acme.prod/ns/billing/sa/api"
    prefix = "token rejected: dpop: "
    assert why(_proof(holder, header={"typ": "JWT"}, claims=ath)) == prefix + "the proof's typ is not dpop+jwt"
    good = _proof(holder, claims=ath)
    other = _proof(holder, claims=ath)
    assert why(".".join(good.split(".")[:2] + other.split(".")[2:])) == prefix + "the proof's signature does not verify"
    assert why(_proof(holder, claims=ath, sign=False)) == prefix + "the proof's signature does not verify"
    assert why(_proof(holder, alg="RS256", claims=ath, sign=False)) == prefix + "the proof's alg RS256 does not fit its jwk"
    for alg in ("HS256", "none"):
        assert why(_proof(holder, alg=alg, claims=ath, sign=False)) == \
            prefix + "the proof's alg is not an accepted signature algorithm"
    private = {"jwk": mint.private_jwk(holder)}
    assert why(_proof(holder, header=private, claims=ath)) == prefix + "the proof's jwk is a private key"
    assert why(_proof(holder, claims=ath, drop=("jwk",))) == prefix + "the proof carries no public jwk"
    assert why(_proof(holder, header={"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, claims=ath,
                      sign=False)) == prefix + "the proof's jwk is not a valid public key"
    assert why(_proof(holder, claims=ath, drop=("jti",))) == prefix + "the proof has no jti"
    assert why(_proof(holder, claims=ath, drop=("iat",))) == prefix + "the proof has no iat"
    assert why(_proof(holder, claims={**ath, "iat": int(time.time()) + 120})).startswith(
        prefix + "the proof is not fresh")  # from the future, beyond the leeway
    assert why(_proof(holder, claims=ath, drop=("ath",))) == prefix + "ath is not the hash of this token"
    assert why("not-a-jws") == prefix + "the proof is not a compact JWS (three base64url parts)"
    # a token confirmed by a method pdp cannot check is refused, not taken as unbound
    odd = token(key("ES256", "es1"), "ES256", cnf={"jwk": mint.public_jwk(holder)})
    assert _reason(engine.decide(_with(API, token=odd))) == \
        "token rejected: certificate binding: unsupported confirmation method jwk"


def test_dpop_over_envoy(engine):
    holder = mint.generate_key("EdDSA")
    tok = _dpop_bound(holder)
    with running(engine) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ext_grpc.AuthorizationStub(channel)
            proof = mint.dpop_proof(holder, "EdDSA", "POST", URL, tok)
            assert stub.Check(_envoy(tok, dpop=proof), timeout=WAIT).status.code == 0
            replayed = json.loads(stub.Check(_envoy(tok, dpop=proof), timeout=WAIT).denied_response.body)
            assert replayed["reasons"][0]["message"] == "token rejected: dpop: the proof was used before (jti replayed)"


# ---- secrets: no token string in logs, metrics or errors after a real server run


def test_no_token_in_decision_log_metrics_or_server_log(tmp_path, engine):
    policies = tmp_path / "serve"
    policies.mkdir()
    (policies / "p.pdl").write_text(POLICY)
    trust = write_trust(tmp_path / "trust2", [key("ES256", "es1")])
    log_path = tmp_path / "decisions.jsonl"
    good = token(key("ES256", "es1"), "ES256", cnf={"x5t#S256": "not-this-connection"})
    plain = token(key("ES256", "es1"), "ES256", client_id="billing")
    bad = token(key("ES256", "es2"), "ES256")
    holder = mint.generate_key("ES256")
    dpop_bound = _dpop_bound(holder)
    proof = mint.dpop_proof(holder, "ES256", "POST", URL, dpop_bound)
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--trust", str(trust),
                      "--decision-log", str(log_path), "--metrics-addr", "127.0.0.1:0",
                      "--log-level", "DEBUG") as server:
        port = server.wait_ready()
        pattern = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)")
        seen = [m for m in map(pattern.search, server.lines) if m]
        metrics_port = int((seen[0] if seen else server.wait_for(pattern.pattern)).group(1))
        with Client(f"127.0.0.1:{port}") as client:
            for tok in (good, plain, bad, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"):
                client.check(_with(API, token=tok))
            assert client.check(_with(API, token=dpop_bound, dpop=proof, http={"method": "POST", "url": URL})).allowed
            with pytest.raises(pdp.RequestError) as info:
                client.check({"identity": {"type": "w"}, "action": "a", "resource": {"type": "api"},
                              "context": {"token": plain}})
            assert plain not in str(info.value)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=WAIT) as answer:
            metrics = answer.read().decode()
        assert "pdp.token" in metrics or "pdp_decisions" in metrics
        assert server.stop() == 0
    text = log_path.read_text()
    everything = text + "\n".join(server.lines) + metrics
    for tok in (good, plain, bad, dpop_bound, proof):
        for piece in (tok, tok.split(".")[2]):  # the whole token, and its signature alone
            assert piece not in everything
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    decided = [line for line in lines if line.get("decision")]
    assert len(decided) == 5
    assert "dpop" not in decided[4]["input"]["context"] and decided[4]["input"]["context"]["token"]["cnf"]
    # the token that verified is logged as its claims; the others are redacted
    verified = decided[1]["input"]["context"]["token"]
    assert verified["client_id"] == "billing" and verified["iss"] == "https://sts.acme.example"
    assert decided[0]["reasons"] == ["pdp.token"] and decided[2]["reasons"] == ["pdp.token"]
    assert decided[2]["input"]["context"]["token"] == "[REDACTED]"


def test_shadow_decides_a_dpop_bound_request_on_its_claims(tmp_path, engine):
    """The candidate must not see the live request's DPoP proof as a replay."""
    from pdp.server import EngineHolder
    from pdp.server.shadow import ShadowLog

    candidate = pdp.load(tmp_path / "p.pdl")  # no trust file needed: it decides on claims
    shadow = ShadowLog(EngineHolder(candidate))
    shadow.token_claims = engine.token_claims
    holder = mint.generate_key("ES256")
    tok = _dpop_bound(holder)
    request = _with(API, token=tok, dpop=mint.dpop_proof(holder, "ES256", "POST", URL, tok),
                    http={"method": "POST", "url": URL})
    try:
        live = engine.decide(request)
        assert live.allowed
        shadow.record("pdp", "r1", request, live, 1000)
        assert shadow.flush(WAIT)
        assert shadow.outcomes["agree"] == 1
        rejected = engine.decide(_with(API, token="garbage"))
        shadow.record("pdp", "r2", _with(API, token="garbage"), rejected, 1000)
        assert shadow.flush(WAIT)
        assert shadow.outcomes["agree"] == 2
    finally:
        shadow.close()


def test_authzen_evaluation_reads_context_token(engine):
    from pdp.server import EngineHolder
    from pdp.server.authzen import AuthzenService

    service = AuthzenService(EngineHolder(engine), ServerOptions())
    tok = token(key("ES256", "es1"), "ES256", cnf={"x5t#S256": "elsewhere"})
    body = {"subject": {"type": "workload", "id": "billing"}, "action": {"name": "charge"},
            "resource": {"type": "api", "id": "a"}, "context": {"token": tok}}
    status, answer = service.evaluation(json.dumps(body).encode())
    assert status == 200 and answer["decision"] is False
    assert answer["context"]["reasons"] == [{"rule": "pdp.token", "effect": "forbid",
                                             "message": "token rejected: certificate binding: no client certificate"}]
    body["context"]["token"] = token(key("ES256", "es1"), "ES256", scope="payments:write",
                                     cnf={"x5t#S256": "abc"})
    status, answer = service.evaluation(json.dumps(body).encode(), peer={"authenticated": True, "x5t#S256": "abc"})
    assert answer["decision"] is True


def test_a_reload_reads_the_trust_file_and_its_key_set_again(tmp_path):
    from pdp.server import EngineHolder
    from pdp.server.reload import PathSource, Reloader, trust_files

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.pdl").write_text(POLICY)
    old, new = key("ES256", "2026-11"), key("ES256", "2026-12")
    trust = write_trust(tmp_path / "trust", [old])
    source = PathSource((str(policies),), trust=str(trust))
    assert {p.name for p in trust_files(str(trust))} == {"trust.yaml", "issuer.jwks.json"}
    holder = EngineHolder(source.build())
    reloader = Reloader(holder, source)
    request = _with(API, token=token(new, "ES256"))
    assert _reason(holder.engine.decide(request)) == "token rejected: unknown key: no key '2026-12'"
    assert reloader.reload_now().result == "unchanged"
    before = holder.engine.trust_revision
    write_trust(tmp_path / "trust", [old, new])  # the issuer publishes its next key
    result = reloader.reload_now()
    assert result.result == "ok" and result.revision == result.previous  # the policies did not change
    assert result.previous_trust == before and result.trust == holder.engine.trust_revision != before
    assert pdp.load(policies).revision == holder.engine.revision  # SPEC §2: the revision hashes the policies
    assert holder.engine.decide(request).reasons[0].rule == "default"  # verified; no rule permits it
    (tmp_path / "trust" / "trust.yaml").write_text("issuers: nope\n")
    result = reloader.reload_now()
    assert result.result == "rejected" and "trust.yaml:1:10" in result.error
    assert holder.engine.decide(request).reasons[0].rule == "default"  # the last good set serves


def test_a_served_trust_change_alone_is_reloaded_and_visible(tmp_path):
    """A real ``pdp serve --watch --workers 2``: publishing a key in the JWKS file (policies
    unchanged) reloads every worker; the trust revision, not the policy revision, says so in
    the log and the metrics."""
    from serverkit import scrape_until

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.pdl").write_text(POLICY)
    old, new = key("ES256", "2026-11"), key("ES256", "2026-12")
    trust = write_trust(tmp_path / "trust", [old])
    request = _with(API, token=token(new, "ES256"))
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2", "--trust", str(trust),
                      "--watch", "--metrics-addr", "127.0.0.1:0") as server:
        ready = server.wait_for(r"serving on 127\.0\.0\.1:(\d+) with 2 workers \(.*trust (\w+),")
        port, first_trust = int(ready.group(1)), ready.group(2)
        workers = [l for l in server.lines if re.search(r"worker \d+: serving revision \w+ \(.*trust " + first_trust, l)]
        assert len(workers) == 2, server.lines
        revision = re.search(r"serving revision (\w+)", workers[0]).group(1)
        metrics = [m for m in map(re.compile(r"metrics of 2 workers on http://127\.0\.0\.1:(\d+)").search,
                                  server.lines) if m]
        metrics_port = int(metrics[0].group(1))
        scrape_until(metrics_port, r'pdp_trust_revision\{revision="%s"\} 1\.0' % first_trust)
        with Client(f"127.0.0.1:{port}") as client:
            assert _reason(client.check(request)) == "token rejected: unknown key: no key '2026-12'"

        write_trust(tmp_path / "trust", [old, new])  # the issuer publishes its next key: trust.yaml is unchanged
        reloaded = server.wait_for(r"reloaded: serving revision (\w+) \(was (\w+)\) .*; trust (\w+) \(was (\w+)\)")
        assert reloaded.group(1) == reloaded.group(2) == revision  # the policies did not change
        second_trust = reloaded.group(3)
        assert reloaded.group(4) == first_trust and second_trust != first_trust
        for _ in range(12):  # new connections: SO_REUSEPORT spreads them over both workers
            with Client(f"127.0.0.1:{port}") as client:
                decision = client.check(request)
                assert decision.reasons[0].rule == "default", decision  # verified; no rule permits it
                assert decision.revision == revision
        page = scrape_until(metrics_port, r'pdp_trust_revision\{revision="%s"\} 1\.0' % second_trust)
        assert re.search(r'pdp_trust_revision\{revision="%s"\} 0\.0' % first_trust, page), page
        assert server.stop() == 0


# ---- DPoP replays across the processes of a server, and across servers


def _connections_by_pid(pids, port: int) -> dict[int, int]:
    """Established TCP connections on local ``port`` held by each of ``pids`` (from /proc):
    which worker of a ``--workers`` server took which connections."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                established.add(fields[9])
    counts = {}
    for pid in pids:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts[pid] = len(inodes & established)
    return counts


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc to see which worker took a connection")
def test_a_dpop_proof_is_accepted_once_by_all_the_workers_of_a_server(tmp_path):
    """Real ``pdp serve --workers 2``: one proof sent from 16 connections at once (spread over
    both workers by SO_REUSEPORT) is accepted exactly once; the workers share the replay
    cache through their parent's store."""
    policies, trust = _served_folder(tmp_path)
    holder = mint.generate_key("ES256")
    tok = _dpop_bound(holder)
    http = {"method": "POST", "url": URL}
    request = _with(API, token=tok, http=http, dpop=mint.dpop_proof(holder, "ES256", "POST", URL, tok))
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2", "--trust", str(trust)) as server:
        port = int(server.wait_for(r"serving on 127\.0\.0\.1:(\d+) with 2 workers").group(1))
        pids = {int(m.group(1)) for m in map(re.compile(r"worker (\d+): serving revision").search, server.lines) if m}
        assert len(pids) == 2, server.lines
        # Each client its own TCP connection (gRPC shares one between channels by default).
        clients = [Client(channel=grpc.insecure_channel(f"127.0.0.1:{port}", [("grpc.use_local_subchannel_pool", 1)]),
                          timeout=WAIT) for _ in range(16)]
        try:
            start = threading.Barrier(len(clients))
            answers = []

            def send(client):
                start.wait(WAIT)
                answers.append(client.check(request))

            threads = [threading.Thread(target=send, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(WAIT)
            by_worker = _connections_by_pid(pids, port)  # the clients' connections are still open
        finally:
            for c in clients:
                c.close()
        assert len(answers) == 16
        assert all(n > 0 for n in by_worker.values()), by_worker  # both workers answered some
        assert sum(d.allowed for d in answers) == 1
        assert {_reason(d) for d in answers if not d.allowed} == \
            {"token rejected: dpop: the proof was used before (jti replayed)"}
        with Client(f"127.0.0.1:{port}") as client:  # a new proof (a new jti) is its own
            assert client.check(_with(request, dpop=mint.dpop_proof(holder, "ES256", "POST", URL, tok))).allowed
        assert server.stop() == 0


def test_a_dpop_proof_replayed_to_another_server_sharing_redis_is_refused(tmp_path):
    from rediskit import RedisServer

    policies, trust = _served_folder(tmp_path)
    holder = mint.generate_key("ES256")
    tok = _dpop_bound(holder)
    request = _with(API, token=tok, http={"method": "POST", "url": URL},
                    dpop=mint.dpop_proof(holder, "ES256", "POST", URL, tok))
    redis = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    try:
        args = ("--addr", "127.0.0.1:0", "--workers", "1", "--trust", str(trust), "--limits", redis.url,
                "--limits-timeout", "5s")
        with ServeProcess(str(policies), *args) as a, ServeProcess(str(policies), *args) as b:
            port_a, port_b = a.wait_ready(), b.wait_ready()
            with Client(f"127.0.0.1:{port_a}") as client:
                assert client.check(request).allowed
            with Client(f"127.0.0.1:{port_b}") as client:
                assert _reason(client.check(request)) == "token rejected: dpop: the proof was used before (jti replayed)"
            redis.stop()  # the replay store is gone: fail closed, never a pass
            with Client(f"127.0.0.1:{port_b}") as client:
                fresh = _with(request, dpop=mint.dpop_proof(holder, "ES256", "POST", URL, tok))
                assert _reason(client.check(fresh)).startswith("token rejected: dpop: the replay store did not answer")
            assert a.stop() == 0 and b.stop() == 0
    finally:
        redis.stop()


def test_over_authzen_http_with_redis_a_dpop_proof_is_accepted_once_and_limits_are_settled(tmp_path):
    # The HTTP server settles limits with redis.asyncio, and verifies tokens on a thread: the
    # replay check of a DPoP proof waits on the same Redis with the blocking client.
    from rediskit import RedisServer, free_port

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.pdl").write_text(POLICY.replace(
        '    reason "bound token of {token.sub}"\n',
        '    reason "bound token of {token.sub}"\n  limit writes 2 per 1h by identity.id\n', 1))
    trust = write_trust(tmp_path / "trust", [key("ES256", "es1")])
    holder = mint.generate_key("ES256")
    tok = token(key("ES256", "es1"), "ES256", scope="payments:write", cnf={"jkt": mint.jkt(holder)})
    http_port = free_port()
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis").start()

    def evaluate(proof: str) -> dict:
        body = {"subject": {"type": "workload", "id": "billing"}, "action": {"name": "charge"},
                "resource": {"type": "api", "id": "a"},
                "context": {"token": tok, "http": {"method": "POST", "url": URL}, "dpop": proof}}
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/access/v1/evaluation",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=WAIT) as response:
            answer = json.loads(response.read())
        reason = answer["context"]["reasons"][0]
        return answer["decision"], reason["rule"], reason["message"]

    try:
        with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--trust", str(trust),
                          "--limits", redis.url, "--limits-timeout", "5s",
                          "--http-addr", f"127.0.0.1:{http_port}") as server:
            server.wait_ready()
            first = mint.dpop_proof(holder, "ES256", "POST", URL, tok)
            allowed = (True, "api.bound_writer", "bound token of spiffe://acme.prod/ns/billing/sa/api")
            assert evaluate(first) == allowed
            assert evaluate(first) == (False, "pdp.token",
                                       "token rejected: dpop: the proof was used before (jti replayed)")
            assert evaluate(mint.dpop_proof(holder, "ES256", "POST", URL, tok)) == allowed
            # A third write with a fresh proof: the token passes, the budget of 2 an hour does not.
            assert evaluate(mint.dpop_proof(holder, "ES256", "POST", URL, tok))[:2] == (False, "api.writes")
            assert server.stop() == 0
    finally:
        redis.stop()


def test_max_once_marks_bounds_the_workers_shared_proof_table(tmp_path):
    """``pdp serve --workers 2 --max-once-marks 1``: the parent's table holds one live proof,
    so a second fresh proof is refused (not the first forgotten) and the first stays a replay."""
    policies, trust = _served_folder(tmp_path)
    holder = mint.generate_key("ES256")
    tok = _dpop_bound(holder)
    http = {"method": "POST", "url": URL}
    first, second = (mint.dpop_proof(holder, "ES256", "POST", URL, tok) for _ in range(2))
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2", "--trust", str(trust),
                      "--max-once-marks", "1") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}") as client:
            def why(proof: str) -> str:
                decision = client.check(_with(API, token=tok, dpop=proof, http=http))
                return "allowed" if decision.allowed else _reason(decision)

            assert why(first) == "allowed"
            assert why(second) == "token rejected: dpop: too many proofs in flight; try again"
            assert why(first) == "token rejected: dpop: the proof was used before (jti replayed)"
        assert server.stop() == 0
