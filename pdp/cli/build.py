"""``pdp build PATH... -o FILE``: compile a policy set into a bundle that starts without parsing."""

from __future__ import annotations

import argparse
import sys

from .. import signing
from ..bundle import write_bundle
from ..engine import load
from ..errors import PolicyError

EXAMPLE = """example:
  $ pdp build policies/ -o policies.bundle
  wrote policies.bundle: 14 rules, revision 4f1c0d9a2b7e5c13, 18211 bytes
  $ pdp serve --bundle policies.bundle
  $ pdp build policies/ -o policies.bundle --sign signing.pem     # an Ed25519 private key (PEM)
  wrote policies.bundle: 14 rules, revision 4f1c0d9a2b7e5c13, 18358 bytes, signed by key 9b0f6c1e2d3a4b5c
  $ pdp serve --bundle policies.bundle --verify-key verify.pem    # serves only bundles that key signed

Keys: openssl genpkey -algorithm ed25519 -out signing.pem
      openssl pkey -in signing.pem -pubout -out verify.pem
"""


def register(sub) -> None:
    p = sub.add_parser("build", help="compile policies into a bundle file",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write")
    p.add_argument("--sign", metavar="KEY", help="sign the bundle with this Ed25519 private key (PEM file)")
    p.set_defaults(run=run)


def run(args) -> int:
    key = None
    if args.sign:
        try:
            key = signing.load_private_key(args.sign)
        except signing.SigningError as err:
            print(f"pdp build: error: {err}", file=sys.stderr)
            return 1
    try:
        engine = load(args.paths)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    try:
        size = write_bundle(engine, args.output, sign_with=key)
    except OSError as exc:
        print(f"{args.output}: cannot write the bundle: {exc.strerror}", file=sys.stderr)
        return 1
    signed = "" if key is None else f", signed by key {signing.key_id(key.public_key())}"
    print(f"wrote {args.output}: {len(engine.rule_ids)} rules, revision {engine.revision}, {size} bytes{signed}")
    return 0
