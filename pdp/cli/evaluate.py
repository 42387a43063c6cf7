"""``pdp eval PATH... --request FILE``: decide one request and print the decision as JSON.
With ``--envoy FILE`` instead, the request is an Envoy CheckRequest (``evaluate_envoy``)."""

from __future__ import annotations

import argparse
import json
import re
import sys

from ..engine import load
from ..errors import PolicyError, RequestError

EXAMPLE = """example:
  $ pdp eval policies/ --request request.json
  {"decision": "ALLOW", "reasons": [{"rule": "payments.billing_may_charge", ...}], ...}
  $ echo '{"identity": {"type": "workload", "id": "x"}, "action": "read",
           "resource": {"type": "doc"}}' | pdp eval policies/ --request - --explain
  $ pdp eval policies/ --envoy examples/envoy/check_request.json
  {"request": {...the mapped pdp request...}, "decision": {...}, "envoy": {"status": "OK", ...}}

The exit code is 0 whatever the decision; 1 for a policy or request error; 2 when the
--envoy file is not a CheckRequest in proto3 JSON.
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="decide one request and print the decision",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--request", "-r", metavar="FILE",
                       help="the request as a JSON file, or - for standard input")
    given.add_argument("--envoy", metavar="FILE",
                       help="an Envoy envoy.service.auth.v3.CheckRequest in proto3 JSON (- for standard input): "
                            "print the mapped request, the decision and the answer pdp serve would send")
    p.add_argument("--explain", action="store_true",
                   help="print a readable trace of every rule instead (with --json: the trace as JSON)")
    p.add_argument("--json", action="store_true", help="with --explain, print the trace as JSON")
    p.add_argument("--envoy-deny-body", choices=["reasons", "rules", "none"], default="reasons",
                   help="with --envoy: the body of a 403, as pdp serve --envoy-deny-body (default: reasons)")
    p.add_argument("--trust", metavar="FILE",
                   help="verify the request's context.token against this trust file (docs/tokens.md); "
                        "the token's exp and iat are checked on this machine's clock")
    p.set_defaults(run=run)


def read_request(source: str) -> object:
    """Read a JSON request from a file or stdin; raises RequestError."""
    try:
        text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()
    except OSError as exc:
        raise RequestError("", f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RequestError("", f"{source} is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except _NotJson as exc:  # NaN or Infinity: place it in the text, outside strings
        found = next((m.start(1) for m in _CONSTANT.finditer(text) if m.group(1) == exc.args[0]), 0)
        exc = json.JSONDecodeError(f"{exc.args[0]} is not a JSON number", text, found)
        raise RequestError("", f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except json.JSONDecodeError as exc:
        raise RequestError("", f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


class _NotJson(Exception):
    pass


_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)', re.S)


def _reject_constant(name: str):
    raise _NotJson(name)


def run(args) -> int:
    try:
        engine = load(args.paths, trust=args.trust)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    if args.envoy is not None:
        from . import evaluate_envoy  # imports the Envoy protos only when asked for

        return evaluate_envoy.run(engine, args)
    try:
        request = read_request(args.request)
        if args.explain:
            explanation = engine.explain(request)
            print(json.dumps(explanation.to_dict(), indent=2, ensure_ascii=False) if args.json
                  else explanation.render())
        else:
            print(json.dumps(engine.decide(request).to_dict(), indent=2, ensure_ascii=False))
    except RequestError as err:
        print(f"request error: {err}", file=sys.stderr)
        return 1
    return 0
