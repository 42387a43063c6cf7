"""``pdp token``: test credentials for trying verified tokens (docs/tokens.md).

``keygen`` makes a key pair (the private JWK, and the public JWKS a trust file names);
``mint`` signs an access token with it; ``thumbprint`` prints a certificate's ``x5t#S256``
(what a certificate-bound token's ``cnf`` carries). pdp never signs in production: these
are for examples, demos and tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

EXAMPLE = """example:
  $ pdp token keygen --alg ES256 --kid demo-1 --private /tmp/sts.jwk --jwks keys/sts.jwks.json
  $ pdp token mint --key /tmp/sts.jwk --iss https://sts.acme.example --aud payments-api \\
        --sub spiffe://acme.prod/ns/billing/sa/api --scope payments:write --lifetime 15m
  eyJhbGciOiJFUzI1NiIsImtpZCI6ImRlbW8tMSIsInR5cCI6ImF0K2p3dCJ9.eyJ...
  $ pdp token thumbprint client.crt
  Xx3kqf0lBq7bvuvyNGaqOAMRmBZl5VhLkR8Rv0L1ZtE
"""


def register(sub) -> None:
    p = sub.add_parser("token", help="test credentials: key pairs, signed tokens, certificate thumbprints",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    keygen = actions.add_parser("keygen", help="make a key pair: a private JWK and a public JWKS")
    keygen.add_argument("--alg", default="ES256", choices=["RS256", "PS256", "ES256", "ES384", "EdDSA"],
                        help="the algorithm the key signs with (default ES256)")
    keygen.add_argument("--kid", required=True, help="the key id tokens will name")
    keygen.add_argument("--private", required=True, metavar="FILE",
                        help="write the private JWK here (mode 0600; keep it out of version control)")
    keygen.add_argument("--jwks", required=True, metavar="FILE",
                        help="write (or add the key to) this public JWKS, the file a trust file names")
    keygen.set_defaults(run=_keygen)

    mint = actions.add_parser("mint", help="sign an access token and print it")
    mint.add_argument("--key", required=True, metavar="FILE", help="the private JWK (from keygen)")
    mint.add_argument("--iss", required=True, help="the issuer (a trust file's `issuer`)")
    mint.add_argument("--aud", required=True, action="append", help="an audience (repeatable)")
    mint.add_argument("--sub", required=True, help="the subject (a SPIFFE ID for a JWT-SVID)")
    mint.add_argument("--scope", action="append", default=[], help="a scope (repeatable)")
    mint.add_argument("--lifetime", default="15m", help="how long it is valid (a duration, default 15m)")
    mint.add_argument("--issued", default=None, metavar="AGO",
                      help="issue it this long ago (a duration), to try the lifetime rules")
    mint.add_argument("--bind-cert", metavar="PEM",
                      help="bind it to this client certificate (cnf x5t#S256, RFC 8705)")
    mint.add_argument("--claim", action="append", default=[], metavar="NAME=JSON",
                      help="another claim, its value as JSON (or as a string when it is not JSON)")
    mint.set_defaults(run=_mint)

    thumb = actions.add_parser("thumbprint", help="print a PEM certificate's x5t#S256")
    thumb.add_argument("certificate", metavar="PEM")
    thumb.set_defaults(run=_thumbprint)


def _duration(text: str) -> float:
    from ..syntax.literals import parse_duration

    return float(parse_duration(text))


def _keygen(args) -> int:
    from ..tokens import mint
    from ..tokens.keys import parse_jwks

    key = mint.generate_key(args.alg, kid=args.kid)
    jwk = {**mint.private_jwk(key), "alg": args.alg}
    fd = os.open(args.private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(jwk, f)
    keys = []
    if os.path.exists(args.jwks):
        with open(args.jwks) as f:
            keys = [k for k in json.load(f).get("keys", []) if k.get("kid") != args.kid]
    document = {"keys": keys + [{**mint.public_jwk(key), "alg": args.alg, "use": "sig"}]}
    parse_jwks(document)  # the set pdp will read: public keys only
    with open(args.jwks, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
    print(f"private key: {args.private} (kid {args.kid}, {args.alg}); public key set: {args.jwks}", file=sys.stderr)
    return 0


def _mint(args) -> int:
    from ..tokens import mint
    from ..tokens.binding import certificate_thumbprint

    try:
        with open(args.key) as f:
            jwk = json.load(f)
        key = mint.load_key(jwk)
        alg = jwk.get("alg") or {"EC": "ES256", "RSA": "RS256", "OKP": "EdDSA"}[jwk["kty"]]
        now = time.time() - (_duration(args.issued) if args.issued else 0)
        claims = {}
        for item in args.claim:
            name, _, value = item.partition("=")
            try:
                claims[name] = json.loads(value)
            except ValueError:
                claims[name] = value
        if args.bind_cert:
            with open(args.bind_cert, "rb") as f:
                claims["cnf"] = {"x5t#S256": certificate_thumbprint(f.read())}
        audience = args.aud[0] if len(args.aud) == 1 else args.aud
        print(mint.access_token(key, alg, args.iss, audience, args.sub, args.scope, _duration(args.lifetime), now,
                                **claims))
    except (OSError, ValueError, KeyError) as exc:
        print(f"pdp token mint: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _thumbprint(args) -> int:
    from ..tokens.binding import certificate_thumbprint

    try:
        with open(args.certificate, "rb") as f:
            print(certificate_thumbprint(f.read()))
    except (OSError, ValueError) as exc:
        print(f"pdp token thumbprint: error: {exc}", file=sys.stderr)
        return 1
    return 0
