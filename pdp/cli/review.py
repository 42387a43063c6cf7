"""``pdp review LOG... --policies PATH...``: the access review of the machine identities seen in
decision logs (docs/cli.md): per identity what it asked and got, the scopes it holds and the ones
it used, the inventory's identities never seen and the identities seen but not inventoried,
the credentials that break a lifetime rule, each finding mapped to OWASP NHI / NIST CSF.

Exit 0 when the review was made, 1 when the policies do not load, the inventory is missing or
a log cannot be read, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..engine import load
from ..errors import PolicyError

EXAMPLE = """example:
  $ pdp review /var/log/pdp/decisions.jsonl* --policies policies/
  Access review: 9 identities seen, 1,204,331 decisions (revision 1aa79694b31574d9, inventory data.identities)
    billing  requests 812,004  allowed 811,990  denied 14  2026-11-24T00:00:01Z .. 2026-11-30T23:59:58Z
      scopes presented: payments:read, payments:write   used: payments:write   UNUSED: payments:read
      denied by: credential_lifetime.token_too_old 14
  ...
  $ pdp review decisions.jsonl --policies policies/ --json > review.json --html review.html
"""


def register(sub) -> None:
    p = sub.add_parser("review", help="access review of the identities in decision logs (scopes unused, inventory)",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", metavar="LOG", help="decision log files (JSON Lines, .gz too; '-': stdin)")
    p.add_argument("--policies", nargs="+", required=True, metavar="PATH",
                   help="the policy and data files or folders (scope tests, lifetime rules, the inventory)")
    p.add_argument("--inventory", default=None, metavar="NAME",
                   help="the data collection that lists the identities (default: identities, i.e. data.identities)")
    p.add_argument("--json", action="store_true", help="print the review as JSON (for automation)")
    p.add_argument("--html", metavar="FILE", help="also write the review as one self-contained HTML file with plots")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..audit.html import render_html
    from ..audit.review import review

    try:
        engine = load(args.policies)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    inventory = args.inventory or "identities"
    if args.inventory and not isinstance(engine.policy_set.data.get(inventory), dict):
        print(f"pdp review: --inventory {inventory}: the policies have no data.{inventory} map "
              f"(a file {inventory}.data.yaml or .json keyed by identity id)", file=sys.stderr)
        return 1
    try:
        result = review(args.logs, engine, inventory)
    except OSError as err:
        print(f"pdp review: cannot read {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(render_html(result))
        except OSError as err:
            print(f"pdp review: cannot write {args.html}: {err.strerror or err}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_text(result))
    return 0


def render_text(result) -> str:
    data = result.to_dict()
    views = data["identities"]
    inventory = f"inventory data.{result.inventory_name}" if data["inventory"] else "no inventory"
    out = [f"Access review: {len(views)} identities seen, {sum(v['requests'] for v in views):,} decisions "
           f"(revision {data['revision']}, {inventory})"]
    for v in views:
        out.append(f"  {v['id']}  requests {v['requests']:,}  allowed {v['allowed']:,}  denied {v['denied']:,}  "
                   f"{v['first_seen']} .. {v['last_seen']}")
        if v["scopes_presented"]:
            out.append(f"    scopes presented: {', '.join(v['scopes_presented'])}   used: "
                       f"{', '.join(v['scopes_used']) or '-'}   UNUSED: {', '.join(v['scopes_unused']) or '-'}")
        if v["denials_by_rule"]:
            out.append("    denied by: " + ", ".join(f"{r} {n:,}" for r, n in v["denials_by_rule"].items()))
    if data["inventory"]:
        out.append(f"Inventoried, never seen: {', '.join(data['never_seen']) or '-'}")
        out.append(f"Seen, not inventoried: {', '.join(data['not_inventoried']) or '-'}")
    if data["credentials"]:
        out.append("Credentials that break a lifetime rule:")
        for c in data["credentials"]:
            out.append(f"  {c['identity']}: {c['rule']} ({c['requests']:,} requests, {c['first_seen']} .. "
                       f"{c['last_seen']}) credential {json.dumps(c['credential'])}")
    if data["controls"]:
        out.append("Findings by control:")
        for key, entries in data["controls"].items():
            for cid, entry in sorted(entries.items()):
                out.append(f"  {key} {cid} {entry['name']}: {entry['findings']}")
    return "\n".join(out)
