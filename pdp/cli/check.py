"""``pdp check PATH...``: load and statically check a policy set; exit 1 with positioned errors.

Warnings (pdp.check.lint: what loads but cannot be meant, such as a glob with ``[`` or a rule
that can never apply) are printed with their position too; they fail the check only with
``--strict``."""

from __future__ import annotations

import argparse
import json
import sys

from ..engine import load
from ..errors import PolicyError

EXAMPLE = """example:
  $ pdp check policies/
  ok: 3 policies, 12 rules, 1 data file (revision 4f1c0d9a2b7e5c13)
  $ pdp check policies/ --strict      # warnings fail the check too (CI)
"""


def register(sub) -> None:
    p = sub.add_parser("check", help="load and statically check policies",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when there are warnings (a glob with [, a comparison that can never hold, a rule "
                        "that can never apply), not only on errors")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        engine = load(args.paths)
    except PolicyError as err:
        if args.json:
            print(json.dumps({"ok": False, "errors": [
                {"file": d.file, "line": d.line, "column": d.column, "message": d.message, "code": d.code}
                for d in err.diagnostics]}, indent=2))
        else:
            print(err, file=sys.stderr)
            count = len(err.diagnostics)
            print(f"{count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    policies = engine.policy_set.policies
    rules = len(engine.rule_ids)
    data = len(engine.policy_set.data)
    warnings = engine.policy_set.warnings
    failed = bool(warnings) and args.strict
    if args.json:
        print(json.dumps({"ok": not failed, "policies": len(policies), "rules": rules, "data": data,
                          "revision": engine.revision, "warnings": [
                              {"file": d.file, "line": d.line, "column": d.column, "message": d.message,
                               "code": d.code} for d in warnings]}, indent=2))
        return 1 if failed else 0
    for warning in warnings:
        print(warning.render(), file=sys.stderr)
    if warnings:
        print(_count(len(warnings), "warning"), file=sys.stderr)
    if failed:
        return 1
    print(f"ok: {_count(len(policies), 'policy', 'policies')}, {_count(rules, 'rule')}, "
          f"{_count(data, 'data file')} (revision {engine.revision})")
    return 0


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
