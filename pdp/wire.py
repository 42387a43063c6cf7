"""Conversions between SPEC §3 requests / SPEC §2 decisions and the ``pdp.v1`` messages.

Pure functions, no server and no engine: the gRPC server decodes every request with
:func:`pb_to_request` and encodes every answer with :func:`decision_to_pb` (the one
definition of that encoding); the client does the reverse. Both directions run per request, so they are written for speed: exact ``type()``
dispatch first, scalars handled inline, path strings built only when something is wrong.

A request travels in one of two forms (proto/pdp/v1/decision.proto; bench/WIRE_FORMAT.md has
the measurements behind them):

* ``"value"``, the canonical form: the four maps of ``pdp.v1.Value`` trees. Integers stay
  integers, exact over [-2**63, 2**64-1] (``int_value``, or ``uint_value`` above 2**63-1),
  floats stay floats, and JSON null is absent.
* ``"msgpack"``, the fast path: the whole request object as MessagePack in
  ``request_msgpack``; the server decodes it several times faster.

Every problem is reported as :class:`pdp.errors.RequestError` naming the path
(``identity.scopes[2]``, ``context.headers["user-agent"]``); nothing else escapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgpack

from pdp.decision import Decision, Reason, RuleError
from pdp.errors import RequestError
from pdp.request import ROOT_KEYS, base_value
from pdp.v1 import decision_pb2 as pb

__all__ = [
    "MAX_DEPTH",
    "TOP_LEVEL_KEYS",
    "decision_to_pb",
    "error_to_pb",
    "pb_to_decision_dict",
    "pb_to_request",
    "request_to_pb",
]

#: The request objects of SPEC §3; no other top-level key exists (defined in pdp.request).
TOP_LEVEL_KEYS = ROOT_KEYS

#: How many lists/maps may nest inside one attribute value (the attribute's own list or map
#: is the first). The protobuf parser on the server stops at a fixed message depth (100 in
#: upb, and one map level costs three), so the encoder refuses deeper values with a clear error
#: instead of sending a request that the server cannot parse; the engine has the same limit.
MAX_DEPTH = 31

_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_INT_MIN = -(2**63)

_CheckRequest = pb.CheckRequest
_CheckResponse = pb.CheckResponse
_DECISION_TO_PB = {"ALLOW": pb.DECISION_ALLOW, "DENY": pb.DECISION_DENY}
_EFFECT_TO_PB = {"permit": pb.EFFECT_PERMIT, "forbid": pb.EFFECT_FORBID}
_EFFECT_FROM_PB = {pb.EFFECT_PERMIT: "permit", pb.EFFECT_FORBID: "forbid"}
_NO_KIND = ("a Value with no kind set (set one of string_value, int_value, uint_value, float_value, "
            "bool_value, list_value, map_value)")


def _msgpack_default(x: object) -> object:
    """Called by the packer for types it does not know: other mappings go as maps."""
    if isinstance(x, Mapping):
        return dict(x)
    raise TypeError(f"{type(x).__name__} is not a JSON value")


_packb = msgpack.Packer(use_bin_type=True, datetime=False, default=_msgpack_default).pack
_unpackb = msgpack.unpackb


class _Bad(Exception):
    """A problem deep in a value; each level adds its key or index on the way out."""

    def __init__(self, message: str, *path: str | int):
        self.message = message
        self.path: list[str | int] = list(path)  # innermost first

    def to_request_error(self, *outer: str | int) -> RequestError:
        return RequestError(_render_path([*outer, *reversed(self.path)]), self.message)


def _render_path(parts: list[str | int]) -> str:
    """``identity``, ``.scopes``, ``[2]``, ``["odd key"]`` (the language's own index syntax)."""
    out = []
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}" if out else part)
        else:
            out.append(f'[{json.dumps(part, ensure_ascii=False)}]')
    return "".join(out)


def _type_name(x: object) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, Mapping):
        return "an object"
    if isinstance(x, (list, tuple)):
        return "a list"
    if isinstance(x, (int, float)):
        return "a number"
    return type(x).__name__


def _check_top_level(request: object) -> None:
    if not isinstance(request, Mapping):
        raise RequestError("", f"a request must be an object, not {_type_name(request)}")
    for key in request:
        if key not in TOP_LEVEL_KEYS:
            where = key if isinstance(key, str) else repr(key)
            raise RequestError(where, "unknown top-level key; a request has only identity, action, resource "
                                      "and context")


def _not_an_object(key: str, obj: object) -> RequestError:
    what = "an object or a string" if key == "action" else "an object"
    return RequestError(key, f"must be {what}, not {_type_name(obj)}")


# --------------------------------------------------------------------------------------------
# request dict -> CheckRequest


def request_to_pb(request: Mapping[str, Any], request_id: str = "", *, form: str = "value") -> pb.CheckRequest:
    """Encode a SPEC §3 request dict as a ``CheckRequest``, in the ``"value"`` or ``"msgpack"`` form.

    ``"value"`` (the default): a bare-string ``action`` is sent as ``{"name": action}``; null
    map entries (and null top-level objects) are left out. Raises :class:`RequestError` naming
    the path for what the wire cannot carry: an unknown top-level key, an object that is not a
    map, a non-string key, an integer outside [-2**63, 2**64-1], NaN or an infinity, a null
    inside a list, a string that is not valid Unicode, a value of another type, or nesting
    deeper than MAX_DEPTH.

    ``"msgpack"``: checks the top level and what MessagePack itself cannot carry (an
    unsupported type, an integer out of range, invalid Unicode) and sends the rest as given;
    the server checks it as it checks the ``"value"`` form (NaN, a null inside a list, a
    non-string key, nesting ...), and its errors name the path the same way.

    The required attributes (``identity.type`` ...) are the engine's to check, not the wire's.
    """
    if type(request_id) is not str:
        raise RequestError("request_id", f"must be a string, not {_type_name(request_id)}")
    _check_top_level(request)
    if form == "msgpack":
        for key, obj in request.items():
            if obj is not None and not isinstance(obj, Mapping) and not (key == "action" and isinstance(obj, str)):
                raise _not_an_object(key, obj)
        try:
            data = _packb(request)
        except Exception as exc:  # TypeError, OverflowError, UnicodeEncodeError: find the path
            request_to_pb(request)  # raises, naming it
            raise RequestError("", f"cannot be encoded as MessagePack: {exc}") from None
        return _CheckRequest(request_id=request_id, request_msgpack=data)
    if form != "value":
        raise ValueError(f"form must be 'value' or 'msgpack', not {form!r}")
    msg = _CheckRequest(request_id=request_id)
    for key, obj in request.items():
        if obj is None:
            continue
        if key == "action" and isinstance(obj, str):
            obj = {"name": obj}
        if not isinstance(obj, Mapping):
            raise _not_an_object(key, obj)
        try:
            _fill_map(getattr(msg, key), obj, 1)
        except _Bad as bad:
            raise bad.to_request_error(key) from None
    return msg


def _fill_map(fields, obj: Mapping, depth: int) -> None:
    for k, x in obj.items():
        if type(k) is not str:
            if not isinstance(k, str):
                raise _Bad(f"keys must be strings, not {_type_name(k)} ({k!r})")
            k = str.__str__(k)  # a str subclass (a StrEnum member) is its text
        t = type(x)
        try:
            if t is str:
                fields[k].string_value = x
            elif t is int and _INT_MIN <= x <= _INT64_MAX:
                fields[k].int_value = x
            elif t is bool:
                fields[k].bool_value = x
            elif t is float and x - x == 0.0:  # not NaN nor an infinity
                fields[k].float_value = x
            elif x is not None:
                _fill(fields[k], x, depth)
        except _Bad as bad:
            bad.path.append(k)
            raise
        except UnicodeEncodeError:
            raise _Bad("not valid Unicode (a lone surrogate?)", k) from None


def _fill(value, x: Any, depth: int) -> None:
    t = type(x)
    if t is str:
        try:
            value.string_value = x
        except UnicodeEncodeError:
            raise _Bad("not valid Unicode (a lone surrogate?)") from None
    elif t is int:
        if _INT_MIN <= x <= _INT64_MAX:
            value.int_value = x
        elif _INT64_MAX < x <= _UINT64_MAX:
            value.uint_value = x
        else:
            raise _Bad(f"integer {x} does not fit in 64 bits (the range is -2**63 to 2**64-1)")
    elif t is bool:
        value.bool_value = x
    elif t is float:
        if x - x != 0.0:
            raise _Bad(f"numbers must be finite, not {x}")
        value.float_value = x
    elif t is dict:
        if depth > MAX_DEPTH:
            raise _Bad(f"nested deeper than {MAX_DEPTH} lists/maps")
        fields = value.map_value.fields
        if x:
            _fill_map(fields, x, depth + 1)
        if not fields:  # {} or only nulls: still a map, so mark it present
            value.map_value.SetInParent()
    elif t is list or t is tuple:
        if depth > MAX_DEPTH:
            raise _Bad(f"nested deeper than {MAX_DEPTH} lists/maps")
        if x:
            add = value.list_value.values.add
            i = 0
            for item in x:
                if item is None:
                    raise _Bad("null is not allowed inside a list", i)
                try:
                    _fill(add(), item, depth + 1)
                except _Bad as bad:
                    bad.path.append(i)
                    raise
                i += 1
        else:
            value.list_value.SetInParent()
    elif x is None:
        raise _Bad("null is only allowed as a map value (where it means absent)")
    else:
        # A subclass of a JSON type (StrEnum, IntEnum, OrderedDict ...) is its base type's
        # value, as the engine reads it (pdp.request.base_value); other mappings are maps.
        base = dict(x) if isinstance(x, Mapping) and not isinstance(x, dict) else base_value(x)
        if base is None:
            raise _Bad(f"{type(x).__name__} is not a JSON value (strings, numbers, booleans, lists and objects "
                       "are)")
        _fill(value, base, depth)


# --------------------------------------------------------------------------------------------
# CheckRequest -> request dict


def pb_to_request(msg: pb.CheckRequest, *, check: bool = True) -> dict[str, Any]:
    """Decode a ``CheckRequest`` (either form) into a SPEC §3 request dict of plain values.

    ``identity``, ``action`` and ``resource`` are always present (empty when the message has
    none, so that the engine reports the missing required attribute); ``context`` only when
    non-empty. Raises :class:`RequestError` naming the path for a ``Value`` with no kind set,
    a NaN or infinite float, both forms at once, or ``request_msgpack`` that is not valid
    MessagePack or holds something that is not a JSON value.

    With ``check=False`` a ``request_msgpack`` payload is returned as MessagePack decodes it,
    after checking only that it is a map: for a caller that validates the request anyway
    (the engine does), to spare a second walk over the values. The Value form is always
    checked; it costs nothing extra there.
    """
    data = msg.request_msgpack
    if data:
        if msg.identity or msg.action or msg.resource or msg.context:
            raise RequestError("request_msgpack", "set either request_msgpack or identity/action/resource/"
                                                  "context, not both")
        return _from_msgpack(data, check)
    try:
        request = {"identity": _map(msg.identity), "action": _map(msg.action), "resource": _map(msg.resource)}
        if msg.context:
            request["context"] = _map(msg.context)
    except _Bad:
        for key in TOP_LEVEL_KEYS:
            try:
                _map(getattr(msg, key))
            except _Bad as bad:
                raise bad.to_request_error(key) from None
        raise  # pragma: no cover - the loop above re-raises
    return request


def _map(fields) -> dict[str, Any]:
    out = {}
    for k in fields:
        v = fields[k]
        kind = v.WhichOneof("kind")
        if kind is None:
            raise _Bad(_NO_KIND, k)
        x = getattr(v, kind)
        t = type(x)
        if t is str or t is int or t is bool:
            out[k] = x
        elif t is float:
            if x - x != 0.0:
                raise _Bad(f"numbers must be finite, not {x}", k)
            out[k] = x
        else:
            try:
                out[k] = _map(x.fields) if kind == "map_value" else _list(x.values)
            except _Bad as bad:
                bad.path.append(k)
                raise
    return out


def _list(values) -> list[Any]:
    out = []
    append = out.append
    i = 0
    for v in values:
        kind = v.WhichOneof("kind")
        if kind is None:
            raise _Bad(_NO_KIND, i)
        x = getattr(v, kind)
        t = type(x)
        if t is str or t is int or t is bool:
            append(x)
        elif t is float:
            if x - x != 0.0:
                raise _Bad(f"numbers must be finite, not {x}", i)
            append(x)
        else:
            try:
                append(_map(x.fields) if kind == "map_value" else _list(x.values))
            except _Bad as bad:
                bad.path.append(i)
                raise
        i += 1
    return out


def _from_msgpack(data: bytes, check: bool) -> dict[str, Any]:
    try:
        obj = _unpackb(data, raw=False, strict_map_key=False, timestamp=0)
    except msgpack.ExtraData:
        raise RequestError("request_msgpack", "extra bytes after the request object") from None
    except UnicodeDecodeError:
        raise RequestError("request_msgpack", "a string is not valid UTF-8") from None
    except msgpack.StackError:
        raise RequestError("request_msgpack", "nested too deeply") from None
    except Exception as exc:  # FormatError, incomplete input, unhashable keys, ...
        raise RequestError("request_msgpack", f"not valid MessagePack: {exc or type(exc).__name__}") from None
    if type(obj) is not dict:
        raise RequestError("request_msgpack", f"must hold a map (the request object), not {_type_name(obj)}")
    return _checked_request(obj) if check else obj


def _checked_request(obj: dict) -> dict[str, Any]:
    """A freshly decoded request object, checked and normalized (in place) as the Value form decodes."""
    _check_top_level(obj)
    request = {}
    for key in TOP_LEVEL_KEYS:
        value = obj.get(key)
        if value is None:
            if key != "context":
                request[key] = {}
            continue
        if key == "action" and type(value) is str:
            value = {"name": value}
        if type(value) is not dict:
            raise _not_an_object(key, value)
        try:
            _check_map(value, 1)
        except _Bad as bad:
            raise bad.to_request_error(key) from None
        if value or key != "context":
            request[key] = value
    return request


def _check_map(obj: dict, depth: int) -> None:
    """Check every value of a decoded map, recursively, and drop its null entries in place."""
    nulls = None
    for k, x in obj.items():
        if type(k) is not str:
            raise _Bad(f"keys must be strings, not {_type_name(k)} ({k!r})")
        t = type(x)
        if t is str or t is bool or (t is int and _INT_MIN <= x <= _UINT64_MAX) or (t is float and x - x == 0.0):
            continue
        if x is None:
            if nulls is None:
                nulls = [k]
            else:
                nulls.append(k)
            continue
        try:
            _check(x, depth)
        except _Bad as bad:
            bad.path.append(k)
            raise
    if nulls:
        for k in nulls:
            del obj[k]


def _check_list(items: list, depth: int) -> None:
    i = 0
    for x in items:
        t = type(x)
        if not (t is str or t is bool or (t is int and _INT_MIN <= x <= _UINT64_MAX)
                or (t is float and x - x == 0.0)):
            try:
                if x is None:
                    raise _Bad("null is not allowed inside a list")
                _check(x, depth)
            except _Bad as bad:
                bad.path.append(i)
                raise
        i += 1


def _check(x: Any, depth: int) -> None:
    """Check one decoded value that is not a plain string, boolean or in-range number."""
    t = type(x)
    if t is dict or t is list:
        if depth > MAX_DEPTH:
            raise _Bad(f"nested deeper than {MAX_DEPTH} lists/maps")
        if t is dict:
            _check_map(x, depth + 1)
        else:
            _check_list(x, depth + 1)
    elif t is int:
        raise _Bad(f"integer {x} does not fit in 64 bits (the range is -2**63 to 2**64-1)")
    elif t is float:
        raise _Bad(f"numbers must be finite, not {x}")
    elif t is bytes:
        raise _Bad("binary data (MessagePack bin) is not a JSON value; send a string")
    else:
        raise _Bad(f"{type(x).__name__} is not a JSON value (strings, numbers, booleans, lists and objects are)")


# --------------------------------------------------------------------------------------------
# decisions


def decision_to_pb(decision: Decision | Mapping[str, Any], request_id: str = "") -> pb.CheckResponse:
    """Encode a decision as a ``CheckResponse``: a :class:`pdp.Decision` (the server's case,
    once per decision: read directly) or its dict form (``Decision.to_dict()``, SPEC §2)."""
    if not isinstance(decision, Decision):
        decision = _decision_of(decision)
    msg = _CheckResponse(request_id=request_id, decision=_DECISION_TO_PB[decision.decision],
                         revision=decision.revision, eval_ns=decision.eval_ns)
    add = msg.reasons.add
    for r in decision.reasons:
        reason = add(rule=r.rule, effect=_EFFECT_TO_PB[r.effect], message=r.message)
        if r.annotations:
            reason.annotations.update(r.annotations)
    if decision.errors:
        add_error = msg.errors.add
        for e in decision.errors:
            add_error(rule=e.rule, message=e.message)
    return msg


def _decision_of(d: Mapping[str, Any]) -> Decision:
    """The Decision of a decision dict (``reasons``, ``errors``, ``revision``, ``eval_ns`` and a
    reason's ``message`` and ``annotations`` may be left out)."""
    reasons = tuple(Reason(r["rule"], r["effect"], r.get("message", ""), r.get("annotations"))
                    for r in d.get("reasons", ()))
    errors = tuple(RuleError(e["rule"], e["message"]) for e in d.get("errors", ()))
    return Decision(d["decision"], reasons, errors, d.get("revision", ""), d.get("eval_ns", 0))


def error_to_pb(error: RequestError | str, request_id: str = "", code: int = 3) -> pb.CheckResponse:
    """The CheckBatch/CheckStream answer to an item that got no decision.

    ``code`` is a gRPC status code: 3 (INVALID_ARGUMENT, the default) for a malformed request.
    """
    if isinstance(error, RequestError):
        item = pb.ItemError(code=code, message=str(error), path=error.path)
    else:
        item = pb.ItemError(code=code, message=str(error))
    return _CheckResponse(request_id=request_id, error=item)


def pb_to_decision_dict(msg: pb.CheckResponse) -> dict[str, Any]:
    """Decode a ``CheckResponse`` into the decision dict shape (SPEC §2's ``to_dict()``).

    Fails closed: any decision other than DECISION_ALLOW (DECISION_UNSPECIFIED, or a value
    this client does not know) reads as "DENY". A response with ``error`` set is not a
    decision: raises :class:`RequestError` with its path and message.
    """
    if msg.HasField("error"):
        err = msg.error
        text = err.message or f"no decision (status code {err.code})"
        if err.path and text.startswith(err.path + ": "):
            text = text[len(err.path) + 2 :]
        raise RequestError(err.path, text)
    return {
        "decision": "ALLOW" if msg.decision == pb.DECISION_ALLOW else "DENY",
        "reasons": [
            {
                "rule": r.rule,
                # EFFECT_UNSPECIFIED is never sent; an unknown effect reads on the deny side.
                "effect": _EFFECT_FROM_PB.get(r.effect, "forbid"),
                "message": r.message,
                "annotations": dict(r.annotations),
            }
            for r in msg.reasons
        ],
        "errors": [{"rule": e.rule, "message": e.message} for e in msg.errors],
        "revision": msg.revision,
        "eval_ns": msg.eval_ns,
    }
