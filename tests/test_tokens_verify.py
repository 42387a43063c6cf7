"""Token verification (SPEC §8): the trust file, every WHY with real signed tokens, key
selection and rotation, algorithm confusion, the result cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import pdp
from pdp.tokens import TokenGate, load_trust, mint
from pdp.tokens.verify import Rejected, verify

from tokenkit import AUDIENCE, ISSUER, key, token, write_trust


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _why(trust, tok, now=None) -> str:
    with pytest.raises(Rejected) as info:
        verify(trust, tok, time.time() if now is None else now)
    return info.value.message


@pytest.fixture
def es_trust(tmp_path):
    return load_trust(write_trust(tmp_path, [key("ES256", "es1")]))


# ---- the trust file


def test_trust_file_defaults_and_relative_jwks(tmp_path):
    trust = load_trust(write_trust(tmp_path / "conf", [key("ES256", "es1")]))
    issuer = trust.issuers[ISSUER]
    assert trust.leeway == 30
    assert issuer.algorithms == {"RS256", "ES256", "PS256", "EdDSA"}
    assert issuer.audiences == (AUDIENCE,)
    assert issuer.keys.current().by_kid.keys() == {"es1"}


@pytest.mark.parametrize("extra, line, column, fragment", [
    ("    algorithms: [ES256, HS256]\n", 5, 25, "shared-secret (HMAC) algorithms are never accepted"),
    ("    algorithms: [none]\n", 5, 18, "never accepts unsigned tokens"),
    ("    max_lifetime: 1.5h\n", 5, 19, "malformed duration"),
    ("    colour: blue\n", 5, 5, "unknown key 'colour'"),
])
def test_trust_file_errors_are_positioned(tmp_path, extra, line, column, fragment):
    path = write_trust(tmp_path, [key("ES256", "es1")], extra=extra)
    with pytest.raises(pdp.PolicyError) as info:
        load_trust(path)
    err = info.value
    assert (err.file, err.line, err.column) == (str(path), line, column)
    assert fragment in err.message
    assert "^" in str(err)


def test_trust_file_refuses_private_and_secret_keys(tmp_path):
    folder = tmp_path / "t"
    path = write_trust(folder, [key("ES256", "es1")])
    (folder / "issuer.jwks.json").write_text(json.dumps({"keys": [mint.private_jwk(key("ES256", "es1"))]}))
    with pytest.raises(pdp.PolicyError, match="holds a private key"):
        load_trust(path)
    (folder / "issuer.jwks.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    with pytest.raises(pdp.PolicyError, match="shared secret"):
        load_trust(path)
    (folder / "issuer.jwks.json").write_text("{not json")
    with pytest.raises(pdp.PolicyError) as info:
        load_trust(path)
    assert info.value.line == 3 and "not JSON" in info.value.message


def test_trust_file_missing_members_all_reported(tmp_path):
    path = tmp_path / "trust.yaml"
    path.write_text("issuers:\n  - issuer: x\n  - jwks: http://plain.example/jwks\n    audiences: [a]\n")
    with pytest.raises(pdp.PolicyError) as info:
        load_trust(path)
    messages = [d.message for d in info.value.diagnostics]
    assert any("`audiences` is required" in m for m in messages)
    assert any("`jwks` must be a non-empty string" in m for m in messages)
    assert any("not http://" in m for m in messages)


# ---- every WHY, with real signed tokens


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA"])
def test_each_default_algorithm_verifies(tmp_path, alg):
    k = key(alg, f"{alg}-1")
    trust = load_trust(write_trust(tmp_path, [k]))
    now = time.time()
    verified = verify(trust, token(k, alg, now=now), now)
    view = verified.view
    assert view["iss"] == ISSUER and view["aud"] == [AUDIENCE]
    assert view["scopes"] == ["payments:read", "payments:write"]
    assert view["sub"] == "spiffe://acme.prod/ns/billing/sa/api"
    assert view["bound"] is False and view["claims"]["scope"] == "payments:read payments:write"
    assert view["issued_at"].endswith("Z") and view["expires_at"].endswith("Z")


def test_malformed(es_trust):
    assert _why(es_trust, "not-a-token") == "token rejected: malformed: the token is not a compact JWS (three base64url parts)"
    assert _why(es_trust, "a.b.c").startswith("token rejected: malformed")
    k = key("ES256", "es1")
    assert _why(es_trust, token(k, "ES256", exp=None)) == "token rejected: malformed: exp is missing"
    assert _why(es_trust, token(k, "ES256", exp="soon")).startswith("token rejected: malformed")
    assert _why(es_trust, token(k, "ES256", iss=None)).startswith("token rejected: malformed")


def test_algorithm(tmp_path, es_trust):
    k = key("ES256", "es1")
    unsigned = _b64(json.dumps({"alg": "none", "kid": "es1"}).encode()) + "." + token(k, "ES256").split(".")[1] + "."
    assert _why(es_trust, unsigned) == "token rejected: algorithm: 'none' is not accepted"
    # ES384 is a real algorithm, but not on this issuer's list
    only_rs = load_trust(write_trust(tmp_path / "rs", [key("RS256", "rs1")], extra="    algorithms: [RS256]\n"))
    assert _why(only_rs, token(key("ES256", "es1"), "ES256")) == \
        "token rejected: algorithm: ES256 is not accepted from this issuer"
    # an RS256 token naming the EC key: the key's type decides
    rs_on_ec = mint.mint(key("RS256", "rs1"), "RS256", json.loads(base64.urlsafe_b64decode(
        token(k, "ES256").split(".")[1] + "==")), header={"kid": "es1"})
    assert _why(es_trust, rs_on_ec).startswith("token rejected: algorithm: RS256 does not fit the EC key")


def test_algorithm_confusion_rsa_public_key_as_hmac_secret(tmp_path):
    """The classic attack: sign HS256 with the issuer's RSA public key (PEM or JWK bytes) as
    the HMAC secret. The name HS256 is refused, whatever the trust file says."""
    rsa = key("RS256", "rs1")
    trust = load_trust(write_trust(tmp_path, [rsa]))
    pem = rsa.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "kid": "rs1", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "iat": now}).encode())
    for secret in (pem, json.dumps(mint.public_jwk(rsa)).encode()):
        signature = _b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        assert _why(trust, f"{header}.{payload}.{signature}") == "token rejected: algorithm: 'HS256' is not accepted"
    with pytest.raises(pdp.PolicyError, match="HMAC"):
        load_trust(write_trust(tmp_path / "hs", [rsa], extra="    algorithms: [RS256, HS256]\n"))


def test_unknown_issuer_and_unknown_key(es_trust):
    k = key("ES256", "es1")
    assert _why(es_trust, token(k, "ES256", issuer="https://evil.example")) == \
        "token rejected: unknown issuer: https://evil.example"
    other = key("ES256", "es-other")
    assert _why(es_trust, token(other, "ES256")) == "token rejected: unknown key: no key 'es-other'"


def test_key_without_kid_is_the_only_key_of_its_type(tmp_path):
    k = mint.generate_key("ES256")  # no kid
    two = [k, mint.generate_key("ES256")]
    assert verify(load_trust(write_trust(tmp_path / "one", [k])), token(k, "ES256"), time.time())
    assert _why(load_trust(write_trust(tmp_path / "two", two)), token(k, "ES256")) == \
        "token rejected: unknown key: no kid, and not exactly one EC key"
    # the only EC key, of another curve: it does not fit ES256
    p384 = mint.generate_key("ES384")
    assert _why(load_trust(write_trust(tmp_path / "other-curve", [p384])), token(k, "ES256")).startswith(
        "token rejected: algorithm: ES256 does not fit the EC key")


def test_signature(es_trust):
    good = token(key("ES256", "es1"), "ES256")
    forged = token(key("ES256", "es2"), "ES256").split(".")
    head, body, _ = good.split(".")
    assert _why(es_trust, f"{head}.{body}.{forged[2]}") == "token rejected: signature"
    # the payload changed after signing
    tampered = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered["scope"] = "admin"
    assert _why(es_trust, f"{head}.{_b64(json.dumps(tampered).encode())}.{good.split('.')[2]}") == \
        "token rejected: signature"


def test_expired_and_not_yet_valid_with_leeway(es_trust):
    k = key("ES256", "es1")
    now = time.time()
    assert _why(es_trust, token(k, "ES256", now=now - 700, lifetime=600), now) == "token rejected: expired"
    # 20 s past exp: within the 30 s leeway
    assert verify(es_trust, token(k, "ES256", now=now - 620, lifetime=600), now)
    assert _why(es_trust, token(k, "ES256", nbf=int(now) + 120), now) == \
        "token rejected: not yet valid: nbf is in the future"
    assert _why(es_trust, token(k, "ES256", now=now + 120), now) == \
        "token rejected: not yet valid: iat is in the future"
    assert verify(es_trust, token(k, "ES256", nbf=int(now) + 20), now)


def test_audience(es_trust):
    k = key("ES256", "es1")
    assert _why(es_trust, token(k, "ES256", audience="other-api")) == "token rejected: audience"
    assert _why(es_trust, token(k, "ES256", audience=None)) == "token rejected: audience: the token has no aud"
    assert verify(es_trust, token(k, "ES256", audience=["other-api", AUDIENCE]), time.time())


def test_lifetime(tmp_path):
    k = key("ES256", "es1")
    trust = load_trust(write_trust(tmp_path, [k], extra="    max_lifetime: 1h\n"))
    now = time.time()
    assert verify(trust, token(k, "ES256", lifetime=3600, now=now), now)
    assert _why(trust, token(k, "ES256", lifetime=7200, now=now), now) == \
        "token rejected: lifetime: 7200s; the limit is 3600s"
    assert _why(trust, token(k, "ES256", iat=None), now) == "token rejected: lifetime: the token has no iat"


def test_jwt_svid_single_audience_and_spiffe_subject(tmp_path):
    k = key("ES256", "es1")
    trust = load_trust(write_trust(tmp_path, [k], extra="    jwt_svid: true\n", audiences=(AUDIENCE, "b")))
    view = verify(trust, token(k, "ES256"), time.time()).view
    assert view["sub"].startswith("spiffe://")
    assert _why(trust, token(k, "ES256", audience=[AUDIENCE, "b"])) == \
        "token rejected: audience: a JWT-SVID carries exactly one audience"
    assert _why(trust, token(k, "ES256", sub="billing")) == \
        "token rejected: malformed: a JWT-SVID's sub must be a SPIFFE ID"


def test_scopes_from_scope_or_scp(es_trust):
    k = key("ES256", "es1")
    assert verify(es_trust, token(k, "ES256", scope=None, scp=["a", "b"]), time.time()).view["scopes"] == ["a", "b"]
    assert verify(es_trust, token(k, "ES256", scope=None), time.time()).view["scopes"] == []


# ---- key rotation


def test_key_rotation_follows_the_jwks_file_on_reload(tmp_path):
    old, new = key("ES256", "2026-01"), key("ES256", "2026-02")
    path = write_trust(tmp_path, [old])
    before = load_trust(path)
    assert verify(before, token(old, "ES256"), time.time())
    assert _why(before, token(new, "ES256")).startswith("token rejected: unknown key")
    write_trust(tmp_path, [old, new])  # the issuer publishes the next key beside the old one
    during = load_trust(path)
    assert verify(during, token(old, "ES256"), time.time()) and verify(during, token(new, "ES256"), time.time())
    write_trust(tmp_path, [new])  # and retires the old one
    after = load_trust(path)
    assert _why(after, token(old, "ES256")).startswith("token rejected: unknown key")


# ---- the gate's cache


def test_gate_caches_outcomes_until_expiry(tmp_path):
    k = key("ES256", "es1")
    clock = [time.time()]
    gate = TokenGate(load_trust(write_trust(tmp_path, [k], top="leeway: 0s\n")), clock=lambda: clock[0])
    tok = token(k, "ES256", now=clock[0], lifetime=60)
    request = {"context": {"token": tok}}
    first = gate.check(request)
    assert gate.check(request) is first  # the cached outcome
    clock[0] += 61
    with pytest.raises(Rejected, match="expired"):
        gate.check(request)
    assert gate.check({"context": {}}) is None and gate.check({"identity": {}}) is None
    with pytest.raises(Rejected, match="malformed: context.token is not a string"):
        gate.check({"context": {"token": 42}})


def test_gate_cache_is_bounded(tmp_path):
    k = key("ES256", "es1")
    gate = TokenGate(load_trust(write_trust(tmp_path, [k])), max_cached=8)
    for i in range(30):
        gate.check({"context": {"token": token(k, "ES256", jti=str(i))}})
    assert len(gate._cache) <= 8


def test_gate_cache_is_bounded_in_bytes_too(tmp_path):
    """10,000 tokens of 16 KB would be 160 MB: the token text the cache holds is capped too."""
    k = key("ES256", "es1")
    gate = TokenGate(load_trust(write_trust(tmp_path, [k])), max_cached_bytes=64 * 1024)
    tokens = [token(k, "ES256", jti=str(i), padding="x" * 9000) for i in range(20)]
    assert all(12_000 < len(t) < 16 * 1024 for t in tokens)
    for tok in tokens:
        assert gate.check({"context": {"token": tok}}).view["claims"]["jti"]
        assert sum(map(len, gate._cache)) <= 64 * 1024 and gate._cached_bytes == sum(map(len, gate._cache))
    assert tokens[-1] in gate._cache  # the newest stays


def test_gate_cache_keeps_a_verified_token_until_exp_plus_leeway_then_drops_it(tmp_path):
    k = key("ES256", "es1")
    clock = [float(int(time.time()))]
    gate = TokenGate(load_trust(write_trust(tmp_path, [k], top="leeway: 30s\n")), clock=lambda: clock[0])
    tok = token(k, "ES256", now=clock[0], lifetime=60)
    first = gate.check({"context": {"token": tok}})
    clock[0] += 60 + 29  # past exp, within the leeway: still the cached outcome
    assert gate.check({"context": {"token": tok}}) is first
    clock[0] += 1  # exp + leeway: expired, and forgotten
    with pytest.raises(Rejected, match="^token rejected: expired$"):
        gate.check({"context": {"token": tok}})
    assert tok not in gate._cache and gate._cached_bytes == 0
