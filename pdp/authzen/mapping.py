"""AuthZEN request bodies ⇒ pdp requests, pdp decisions ⇒ AuthZEN answers (SPEC §10).

- ``subject`` ⇒ ``identity``: ``type``, ``id``, and each ``properties`` member as an attribute;
  a property never replaces ``type`` or ``id`` (the enforcement point vouched for those).
- ``action`` ⇒ ``action`` (``name``, properties likewise), ``resource`` ⇒ ``resource``
  (``type``, ``id``, properties), ``context`` ⇒ ``context``.
- Any other member, at the top level or inside an entity, is ignored: AuthZEN requires it
  (pdp's own request format refuses unknown keys instead, SPEC §3).

A body that cannot be mapped raises ``BadRequest`` naming the member (``subject.type``).
"""

from __future__ import annotations

from typing import Any

from ..decision import Decision

#: ``options.evaluations_semantic`` values, and the decision after which each stops.
EXECUTE_ALL = "execute_all"
DENY_ON_FIRST_DENY = "deny_on_first_deny"
PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"
SEMANTICS = {EXECUTE_ALL: None, DENY_ON_FIRST_DENY: False, PERMIT_ON_FIRST_PERMIT: True}

#: The fields each entity must carry, and the pdp root it becomes.
ENTITIES = {"subject": ("identity", ("type", "id")), "action": ("action", ("name",)),
            "resource": ("resource", ("type", "id"))}


class BadRequest(Exception):
    """A body that cannot be mapped: HTTP 400 with ``{"error": str(self)}``."""

    def __init__(self, member: str, message: str):
        super().__init__(f"{member}: {message}" if member else message)
        self.member = member


def _object(value: Any, member: str) -> dict:
    if type(value) is not dict:
        raise BadRequest(member, "must be a JSON object" if value is not None else "is required")
    return value


def request_body(value: Any) -> dict:
    """The JSON value of a whole body, which must be an object (``null`` is one that is not)."""
    if type(value) is not dict:
        raise BadRequest("request body", "must be a JSON object" + (", got null" if value is None else ""))
    return value


def entity(body: dict, name: str, required: tuple[str, ...] | None = None) -> dict:
    """``body[name]`` (an AuthZEN entity) ⇒ a pdp attribute map; ``required`` overrides the
    fields that must be present (a search leaves out the one it searches for)."""
    value = _object(body.get(name), name)
    fields = ENTITIES[name][1]
    out: dict = {}
    properties = value.get("properties")
    if properties is not None:
        out.update(_object(properties, f"{name}.properties"))
    for field in fields:
        v = value.get(field)
        if v is None:
            if required is not None and field not in required:
                out.pop(field, None)  # a property must not stand in for the searched field
                continue
            raise BadRequest(f"{name}.{field}", "is required")
        if type(v) is not str or not v:
            raise BadRequest(f"{name}.{field}", "must be a non-empty string")
        out[field] = v
    return out


def context(body: dict) -> dict | None:
    value = body.get("context")
    if value is None:
        return None
    return dict(_object(value, "context"))


def to_request(body: Any) -> dict:
    """An Access Evaluation request body ⇒ a pdp request."""
    body = request_body(body)
    request = {"identity": entity(body, "subject"), "action": entity(body, "action"),
               "resource": entity(body, "resource")}
    ctx = context(body)
    if ctx is not None:
        request["context"] = ctx
    return request


def batch(body: Any) -> tuple[list[dict | BadRequest], bool | None] | None:
    """An Access Evaluations request body ⇒ (one pdp request or the BadRequest of each item,
    the decision that stops the batch or None); None when the body has no ``evaluations``
    (AuthZEN: it is then a single Access Evaluation)."""
    body = request_body(body)
    items = body.get("evaluations")
    if items is None or items == []:
        return None
    if type(items) is not list:
        raise BadRequest("evaluations", "must be a JSON array")
    options = body.get("options")
    semantic = EXECUTE_ALL
    if options is not None:
        semantic = _object(options, "options").get("evaluations_semantic", EXECUTE_ALL)
        if semantic not in SEMANTICS:
            raise BadRequest("options.evaluations_semantic", f"must be one of {', '.join(SEMANTICS)}, "
                                                             f"got {semantic!r}")
    defaults = {key: body[key] for key in ("subject", "action", "resource", "context") if key in body}
    out: list[dict | BadRequest] = []
    for i, item in enumerate(items):
        if type(item) is not dict:
            out.append(BadRequest(f"evaluations[{i}]", "must be a JSON object"))
            continue
        try:
            out.append(to_request({**defaults, **item}))
        except BadRequest as err:
            out.append(err)
    return out, SEMANTICS[semantic]


def answer(decision: Decision) -> dict:
    """A decision as an Access Evaluation response."""
    ctx: dict = {"reasons": [{"rule": r.rule, "effect": r.effect, "message": r.message} for r in decision.reasons],
                 "revision": decision.revision}
    if decision.errors:
        ctx["errors"] = [{"rule": e.rule, "message": e.message} for e in decision.errors]
    return {"decision": decision.decision == "ALLOW", "context": ctx}


def error_answer(message: str, status: int = 400) -> dict:
    """An evaluations item that could not be decided."""
    return {"decision": False, "context": {"error": {"status": status, "message": message}}}
