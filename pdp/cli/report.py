"""``pdp report PATH...``: which controls are enforced by which rules, and covered by which tests.

Controls are read from rule and policy annotations (by default ``@owasp`` — the OWASP
Non-Human Identities Top 10 — and ``@nist_csf`` — NIST CSF 2.0 subcategories). The suites
found under PATH are run to find, for each rule, the tests in which it applied. Exit 0 when
the report was made (failing tests are marked in it), 1 on a policy or suite error.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import PolicyError
from ..testing import controls
from ..testing.runner import Tester

EXAMPLE = """example:
  $ pdp report policies/
  Control report — revision 4f1c0d9a2b7e5c13: 36 rules, 112 tests (112 passed, 0 failed), rule coverage 100.0%

  OWASP Non-Human Identities Top 10 (2025)  (annotation @owasp)
    NHI1  Improper Offboarding  [covered]
      forbid identity_inventory.unknown_identity  (policies/controls/identity_inventory.pdl:10)
        tested by identity_inventory::an identity missing from the inventory is refused
    ...
  $ pdp report policies/ --format markdown > controls.md
  $ pdp report policies/ --format json --framework owasp --framework soc2

A control's status is "covered" when each of its rules applied in some test, "partly
covered", "not covered" (rules, but no test), or "not addressed" (no rule; listed for the
OWASP NHI Top 10, whose entries are all known).
"""


def register(sub) -> None:
    p = sub.add_parser("report", help="map controls (annotations) to the rules and tests behind them",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders (with their suites)")
    p.add_argument("--format", choices=sorted(controls.RENDERERS), default="text", help="output format (text)")
    p.add_argument("--framework", dest="frameworks", action="append", metavar="KEY",
                   help="an annotation key whose values are control ids (repeatable; "
                        f"default: {', '.join(controls.DEFAULT_FRAMEWORKS)})")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        tester = Tester.load(args.paths)
        suites = tester.load_suites()
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    result = tester.run(suites)
    report = controls.build(tester.rules, result, tester.engine.revision,
                            tuple(args.frameworks or controls.DEFAULT_FRAMEWORKS))
    print(controls.RENDERERS[args.format](report))
    return 0
