"""``pdp build PATH... -o FILE``: compile a policy set into a bundle that starts without parsing."""

from __future__ import annotations

import argparse
import sys

from ..bundle import write_bundle
from ..engine import load
from ..errors import PolicyError

EXAMPLE = """example:
  $ pdp build policies/ -o policies.bundle
  wrote policies.bundle: 14 rules, revision 4f1c0d9a2b7e5c13, 18211 bytes
  $ pdp serve --bundle policies.bundle
"""


def register(sub) -> None:
    p = sub.add_parser("build", help="compile policies into a bundle file",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        engine = load(args.paths)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    try:
        size = write_bundle(engine, args.output)
    except OSError as exc:
        print(f"{args.output}: cannot write the bundle: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(engine.rule_ids)} rules, revision {engine.revision}, {size} bytes")
    return 0
