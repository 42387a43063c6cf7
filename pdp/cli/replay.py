"""``pdp replay LOG... --against PATH...``: decide every logged input again with a candidate
policy set, at its logged time, and report what would change (docs/cli.md).

Exit 0 when the replay ran (whatever changed), 1 with ``--fail-on-change`` when any decision
changed, 1 when the candidate does not load or a log cannot be read, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..engine import load
from ..errors import PolicyError

EXAMPLE = """example:
  $ pdp replay /var/log/pdp/decisions.jsonl* --against policies/
  Replayed 1,204,331 decisions against revision 9c1e4f0a7b2d3e58 in 53.1s (22,680/s).
    changed: 312  (allow_to_deny 310, deny_to_allow 2)
    skipped: 0 lines without input
  Rules behind the changes (the candidate's reasons):
    least_privilege.missing_scope: allow_to_deny 310, deny_to_allow 0
  ...
  $ pdp replay decisions.jsonl --against policies/ --fail-on-change --json > replay.json   # a CI gate

Each line's input is decided as it was: when it has no context.time (the server used its
clock), the line's time is used, so freshness rules decide as they did. Lines without
input (--decision-log-input off, or requests that got no decision) are counted as skipped.
Logs may be gzip-compressed; '-' reads stdin.
"""


def register(sub) -> None:
    p = sub.add_parser("replay", help="decide logged requests again with candidate policies; report changes",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", metavar="LOG", help="decision log files (JSON Lines, .gz too; '-': stdin)")
    p.add_argument("--against", nargs="+", required=True, metavar="PATH",
                   help="the candidate policy and data files or folders")
    p.add_argument("--json", action="store_true", help="print the report as JSON (for automation)")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 when any decision changed")
    p.add_argument("--examples", type=int, default=10, metavar="N", help="changed decisions to show (default 10)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..audit.logfile import Progress, ReadStats, total_bytes
    from ..audit.replay import render_text, replay

    try:
        # Budgets depend on the pace of the live traffic, which a replay does not have: limit
        # rules take no unit here (docs/limits.md).
        candidate = load(args.against).without_limits()
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    stats = ReadStats(bytes_total=total_bytes(args.logs))
    progress = Progress(stats)
    try:
        result = replay(args.logs, candidate, examples=max(args.examples, 0), stats=stats,
                        on_progress=progress.update)
    except OSError as err:
        progress.done()
        print(f"pdp replay: cannot read {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1
    progress.done()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_text(result))
    if stats.unreadable:
        print(f"pdp replay: warning: {stats.unreadable} lines are not JSON objects (first at "
              f"{stats.first_unreadable})", file=sys.stderr)
    return 1 if args.fail_on_change and result.changed else 0
