"""Test credentials: key pairs, key sets and signed tokens, for suites, examples and demos.

pdp never signs in production; this is what ``pdp token`` (pdp/cli/token.py) and the tests
use to make tokens that a trust file accepts:

>>> key = generate_key("ES256", kid="k1")
>>> token = mint(key, "ES256", {"iss": "https://sts.example", "aud": "api", "exp": 2_000_000_000})
>>> token.count(".")
2
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import warnings

from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from .verify import b64url

_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def generate_key(alg: str, kid: str | None = None):
    """A new private key for ``alg`` (RSA 2048 for RS*/PS*, the curve of ES*, Ed25519 for EdDSA)."""
    if alg[:2] in ("RS", "PS"):
        key = RSAKey.generate_key(2048, parameters={"kid": kid} if kid else None)
    elif alg in _CURVES:
        key = ECKey.generate_key(_CURVES[alg], parameters={"kid": kid} if kid else None)
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", parameters={"kid": kid} if kid else None)
    else:
        raise ValueError(f"no key for {alg!r}: pdp verifies RS*, PS*, ES* and EdDSA")
    return key


def private_jwk(key) -> dict:
    return key.as_dict(private=True)


def public_jwk(key) -> dict:
    return key.as_dict(private=False)


def load_key(jwk: dict):
    """A private JWK (a dict) ⇒ a key ``mint`` signs with."""
    return import_key(jwk, jwk["kty"])


def jwks(*keys) -> dict:
    """The public JWKS of ``keys``."""
    return {"keys": [public_jwk(k) for k in keys]}


def mint(key, alg: str, claims: dict, header: dict | None = None) -> str:
    """A compact JWS of ``claims`` signed with ``key``; the header gets ``alg``, the key's
    ``kid`` (when it has one) and ``header``."""
    protected = {"alg": alg, "typ": "at+jwt"}
    kid = key.kid
    if kid:
        protected["kid"] = kid
    protected.update(header or {})
    protected = {k: v for k, v in protected.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc: RFC 9864 deprecates the name EdDSA
        return jws.serialize_compact(protected, json.dumps(claims, separators=(",", ":")).encode(), key,
                                     algorithms=[protected["alg"]])


def access_token(key, alg: str, issuer: str, audience: str | list, subject: str, scopes: list[str] = (),
                 lifetime: float = 900, now: float | None = None, **claims) -> str:
    """An access token (RFC 9068 shape) valid for ``lifetime`` seconds from ``now``."""
    now = time.time() if now is None else now
    payload = {"iss": issuer, "sub": subject, "aud": audience, "iat": int(now), "exp": int(now + lifetime),
               "jti": str(uuid.uuid4())}
    if scopes:
        payload["scope"] = " ".join(scopes)
    payload.update(claims)
    return mint(key, alg, payload)


def dpop_proof(key, alg: str, method: str, url: str, token: str | None = None, now: float | None = None,
               jti: str | None = None) -> str:
    """A DPoP proof (RFC 9449 §4.2) for one request, with ``ath`` when ``token`` is given."""
    claims = {"htm": method, "htu": url, "iat": int(time.time() if now is None else now),
              "jti": jti or str(uuid.uuid4())}
    if token is not None:
        claims["ath"] = b64url(hashlib.sha256(token.encode("ascii")).digest())
    header = {"typ": "dpop+jwt", "jwk": public_jwk(key), "kid": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jws.serialize_compact({"alg": alg, **{k: v for k, v in header.items() if v is not None}},
                                     json.dumps(claims, separators=(",", ":")).encode(), key, algorithms=[alg])


def jkt(key) -> str:
    """The RFC 7638 thumbprint of ``key``'s public part: the ``cnf.jkt`` of a DPoP-bound token."""
    return key.thumbprint()
