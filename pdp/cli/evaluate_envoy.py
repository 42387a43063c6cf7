"""``pdp eval PATH... --envoy FILE``: answer one Envoy ``CheckRequest`` (proto3 JSON) exactly as
``pdp serve`` would, and show every step: the mapped pdp request, the decision and the
``CheckResponse`` Envoy would get.

The answer comes from ``pdp.server.envoy_authz.answer``, the function the Envoy servicer
calls, so the mapping, the refusal of an unmappable request and the 403 body are the server's
own. Like ``pdp eval``, ``context.time`` is taken as given (no clock-skew check).
"""

from __future__ import annotations

import json
import sys

from ..errors import RequestError
from .evaluate import read_request

#: Exit code for input that is not a CheckRequest in proto3 JSON (bad JSON, unknown fields).
BAD_INPUT = 2


class EnvoyInputError(Exception):
    """The file is not an Envoy CheckRequest in proto3 JSON; the message says where and why."""


def read_check_request(source: str):
    """A ``CheckRequest`` from a proto3 JSON file (``-`` for stdin); raises EnvoyInputError."""
    from google.protobuf import json_format
    from envoy.service.auth.v3 import external_auth_pb2 as ext

    try:
        document = read_request(source)
    except RequestError as err:
        raise EnvoyInputError(err.message) from None
    except RecursionError:
        raise EnvoyInputError(f"{source}: invalid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise EnvoyInputError(f"{source}: an Envoy CheckRequest is a JSON object "
                              f"(proto3 JSON, e.g. {{\"attributes\": {{...}}}}), got {_json_kind(document)}")
    try:
        return json_format.ParseDict(document, ext.CheckRequest())
    except json_format.ParseError as err:
        raise EnvoyInputError(f"{source}: not an Envoy CheckRequest in proto3 JSON: {err}") from None
    except RecursionError:
        raise EnvoyInputError(f"{source}: not an Envoy CheckRequest: nested too deeply") from None


def response_summary(response) -> dict:
    """The ``CheckResponse`` as people read it: the gRPC status code, the HTTP status of a
    denial, the headers (on the 403, or added to the upstream request for OK) and the body."""
    from google.rpc import code_pb2

    code = response.status.code
    out: dict = {"status": code_pb2.Code.Name(code), "code": code}
    if response.HasField("denied_response"):
        denied = response.denied_response
        out["http_status"] = int(denied.status.code)
        out["headers"] = _headers(denied.headers)
        out["body"] = denied.body
    else:
        out["headers"] = _headers(response.ok_response.headers)
    return out


def _headers(options) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


def run(engine, args) -> int:
    from ..server.envoy_authz import answer

    try:
        check_request = read_check_request(args.envoy)
    except EnvoyInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return BAD_INPUT
    result = answer(engine, check_request, deny_body=args.envoy_deny_body)
    envoy = response_summary(result.response)
    explanation = None
    if args.explain and not result.error_code:
        explanation = engine.explain(result.request)
    if args.explain and not args.json:
        print(render(result, envoy, explanation))
        return 0
    out: dict = {"request": _ordered(result.request)}
    if explanation is not None:
        out["explanation"] = explanation.to_dict()
    out["decision"] = result.decision.to_dict()
    out["envoy"] = envoy
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def render(result, envoy: dict, explanation) -> str:
    """The readable form for ``--envoy --explain``: mapped request, trace, Envoy's answer."""
    lines = ["request (mapped from the Envoy CheckRequest):"]
    if result.request is None:
        lines.append("  (none: the CheckRequest could not be mapped)")
    else:
        shown = json.dumps(_ordered(result.request), indent=2, ensure_ascii=False)
        lines.extend("  " + line for line in shown.splitlines())
    lines.append("")
    if explanation is not None:
        lines.append(explanation.render())
    else:  # refused before any rule ran: the server's own DENY
        reason = result.decision.reasons[0]
        lines.append(f"{result.decision.decision}  (revision {result.decision.revision})")
        lines.append(f"  because {reason.effect} {reason.rule}: {reason.message}")
    lines.append("")
    answer = f"envoy answer: {envoy['status']} ({envoy['code']})"
    if "http_status" in envoy:
        answer += f", HTTP {envoy['http_status']}"
    lines.append(answer)
    for key, value in envoy["headers"].items():
        lines.append(f"  {key}: {value}")
    if envoy.get("body"):
        lines.append(f"  body: {envoy['body']}")
    return "\n".join(lines)


def _ordered(request: dict | None) -> dict | None:
    """The request with maps below the attributes (JWT claims, headers) in key order: protobuf
    maps iterate in no fixed order. The roots and their attributes keep the mapping's order."""
    if request is None:
        return None
    return {root: {key: _sorted_keys(value) for key, value in attributes.items()}
            for root, attributes in request.items()}


def _sorted_keys(value: object) -> object:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
