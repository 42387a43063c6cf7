"""``pdp test PATH...``: run the policy test suites (``*_test.yaml``) found under PATH.

Each suite tests the policies and data loaded from the same PATHs. Failures print the test,
the expected and actual decision with its reasons, and the trace of the rules that decided
it; the last line is ``N passed, M failed``. Exit 0 when every test passed, 1 on a failure,
a policy or suite error, or coverage below --min-coverage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PolicyError
from .args import percent
from ..testing import report
from ..testing.runner import Tester

EXAMPLE = """example:
  $ cat policies/payments_test.yaml
  suite: payments
  fixtures:
    identities:
      billing: {type: workload, id: billing, env: prod, scopes: [payments:write],
                spiffe_id: "spiffe://acme.prod/ns/billing/sa/api",
                credential: {issued_at: "2026-11-27T10:00:00Z"}}
    resources:
      pay1: {type: payment, id: pay-1, env: prod}
  tests:
    - name: fresh billing credential may charge
      identity: billing
      action: charge
      resource: pay1
      context: {time: "2026-11-27T10:05:00Z"}
      expect: allow
      reasons: [payments.billing_may_charge]

  $ pdp test policies/
  1 passed, 0 failed
  $ pdp test policies/ -k payments --coverage --min-coverage 90 --junit report.xml

A rule is covered when it applied in at least one test; --coverage also lists the rules
never evaluated (no test got past their policy's target, or a forbid always decided first).
"""


def register(sub) -> None:
    p = sub.add_parser("test", help="run the policy test suites (*_test.yaml)",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders (suites are found there)")
    p.add_argument("-k", dest="patterns", action="append", default=[], metavar="PATTERN",
                   help="run only tests whose 'suite::name' contains PATTERN (ignoring case; repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the tests that passed")
    p.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML to FILE")
    p.add_argument("--coverage", action="store_true",
                   help="print rule coverage per policy: rules no test made apply, rules never evaluated")
    p.add_argument("--min-coverage", type=percent, metavar="P",
                   help="fail when less than P%% of the rules applied in some test (implies --coverage)")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        tester = Tester.load(args.paths)
        suites = tester.load_suites()
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    if not suites:
        print(f"no test suites (*_test.yaml) under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    result = tester.run(suites, args.patterns)
    if not result.results:
        print(f"no test matches -k {' -k '.join(args.patterns)}", file=sys.stderr)
        print(report.summary(result))
        return 1
    for test in result.results:
        if not test.passed:
            print(report.failure(test))
            print()
        elif args.verbose:
            print(report.passed_line(test))
    if args.junit:
        try:
            Path(args.junit).write_bytes(report.junit_xml(result))
        except OSError as exc:
            print(f"cannot write {args.junit}: {exc.strerror}", file=sys.stderr)
            return 1
    status = 1 if result.failed else 0
    if args.coverage or args.min_coverage is not None:
        if args.verbose and result.failed == 0:
            print()
        print(report.coverage_table(result.coverage))
        print()
        if args.min_coverage is not None and result.coverage.percent < args.min_coverage:
            print(f"coverage {result.coverage.percent:.1f}% is below the minimum of {args.min_coverage:g}%")
            status = 1
    print(report.summary(result))
    return status
