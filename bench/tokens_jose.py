"""Which JOSE library verifies pdp's tokens: joserfc and PyJWT side by side (bench/TOKENS.md).

For each signature algorithm pdp accepts by default (RS256, ES256, PS256, EdDSA), one signed
access token (a typical payload, ~300 bytes) is verified again and again with an imported
public key, by:

- ``joserfc``: ``jws.deserialize_compact(token, key, algorithms=[alg])`` and the payload's JSON;
- ``PyJWT``: ``jwt.PyJWS().decode_complete(token, key, algorithms=[alg])`` and the payload's JSON
  (pdp checks the claims itself, so both stop at the signature);
- ``cryptography``: the signature check alone, the floor both libraries build on.

Also the cost of importing one JWK (once per key set and reload). Prints a Markdown table;
``--json FILE`` writes the figures. Run alone (the machine otherwise idle):

    .venv/bin/python bench/tokens_jose.py
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

PAYLOAD = {"iss": "https://sts.acme.example", "sub": "spiffe://acme.prod/ns/billing/sa/api",
           "aud": ["payments-api"], "scope": "payments:read payments:write", "iat": 1_790_000_000,
           "exp": 1_790_000_900, "jti": "0b6f8f0e-5a5e-4a57-9b0e-3c1d2f7a9e10",
           "client_id": "billing"}


def _keys(alg: str):
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048)
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    return OKPKey.generate_key("Ed25519")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _raw_verifier(alg: str, public):
    """The signature check with cryptography alone."""
    if alg == "RS256":
        return lambda sig, msg: public.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return lambda sig, msg: public.verify(sig, msg, pss, hashes.SHA256())
    if alg == "ES256":
        def verify(sig, msg):
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            public.verify(der, msg, ec.ECDSA(hashes.SHA256()))
        return verify
    return lambda sig, msg: public.verify(sig, msg)


def _per_call(fn, seconds: float) -> float:
    """Median µs per call over 5 rounds of about ``seconds`` / 5 each."""
    fn()
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        spent = time.perf_counter() - start
        if spent > 0.05:
            break
        n *= 2
    per_round = max(1, int(n * (seconds / 5) / spent))
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - start) / per_round * 1e6)
    return statistics.median(rounds)


def measure(seconds: float) -> list[dict]:
    rows = []
    for alg in ("RS256", "ES256", "PS256", "EdDSA"):
        key = _keys(alg)
        public_jwk = key.as_dict(private=False)
        token = jws.serialize_compact({"alg": alg, "kid": "k1", "typ": "at+jwt"},
                                      json.dumps(PAYLOAD).encode(), key, algorithms=[alg])
        jf_key = type(key).import_key(public_jwk)
        pyjwt_key = jwt.PyJWK(public_jwk, algorithm=alg).key
        pyjws = jwt.PyJWS()

        def with_joserfc():
            return json.loads(jws.deserialize_compact(token, jf_key, algorithms=[alg]).payload)

        def with_pyjwt():
            return json.loads(pyjws.decode_complete(token, pyjwt_key, algorithms=[alg])["payload"])

        signing_input, _, sig = token.encode().rpartition(b".")
        signature = _b64(sig)
        raw = _raw_verifier(alg, pyjwt_key)

        assert with_joserfc() == PAYLOAD and with_pyjwt() == PAYLOAD
        rows.append({
            "alg": alg,
            "token_bytes": len(token),
            "joserfc_us": _per_call(with_joserfc, seconds),
            "pyjwt_us": _per_call(with_pyjwt, seconds),
            "cryptography_us": _per_call(lambda: raw(signature, signing_input), seconds),
            "joserfc_import_us": _per_call(lambda: type(key).import_key(public_jwk), seconds / 2),
            "pyjwt_import_us": _per_call(lambda: jwt.PyJWK(public_jwk, algorithm=alg), seconds / 2),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = measure(args.seconds)
    print("| alg | token bytes | joserfc µs | PyJWT µs | cryptography alone µs | import JWK joserfc µs | PyJWT µs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['alg']} | {r['token_bytes']} | {r['joserfc_us']:.1f} | {r['pyjwt_us']:.1f} | "
              f"{r['cryptography_us']:.1f} | {r['joserfc_import_us']:.1f} | {r['pyjwt_import_us']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version.split()[0], "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
