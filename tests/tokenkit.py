"""Shared helpers of the token tests: keys (made once per session), trust files, tokens."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

from pdp.tokens import mint

ISSUER = "https://sts.acme.example"
AUDIENCE = "payments-api"


@lru_cache(maxsize=None)
def key(alg: str, kid: str):
    """A private key for ``alg`` named ``kid`` (RSA keys take a while: each is made once)."""
    return mint.generate_key(alg, kid=kid)


def write_trust(folder: Path, keys=(), issuer: str = ISSUER, extra: str = "", jwks: str | None = None,
                top: str = "", audiences: tuple = (AUDIENCE,)) -> Path:
    """A trust file in ``folder`` whose one issuer's JWKS file holds the public ``keys``."""
    folder.mkdir(parents=True, exist_ok=True)
    if jwks is None:
        (folder / "issuer.jwks.json").write_text(json.dumps(mint.jwks(*keys)))
        jwks = "issuer.jwks.json"
    auds = ", ".join(json.dumps(a) for a in audiences)
    text = (f"issuers:\n  - issuer: {json.dumps(issuer)}\n    jwks: {json.dumps(jwks)}\n"
            f"    audiences: [{auds}]\n{extra}{top}")
    path = folder / "trust.yaml"
    path.write_text(text)
    return path


def token(k, alg: str, lifetime: float = 600, now: float | None = None, issuer: str = ISSUER,
          audience=AUDIENCE, **claims) -> str:
    now = time.time() if now is None else now
    payload = {"iss": issuer, "sub": "spiffe://acme.prod/ns/billing/sa/api", "aud": audience,
               "iat": int(now), "exp": int(now + lifetime), "scope": "payments:read payments:write"}
    payload.update(claims)
    return mint.mint(k, alg, {c: v for c, v in payload.items() if v is not None})
