"""Decisions: which rules applied (an evaluator's outcome) ⇒ ALLOW or DENY with reasons.

The combining rule of SPEC §2 is :func:`combine`; everything a user reads about a decision
(reasons, errors, revision, timing) is in :class:`Decision`.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Mapping

from .errors import RequestError
from .request import Request, indexed_request

ALLOW, DENY = "ALLOW", "DENY"

#: Message prefix of a forbid rule that applies because it could not be evaluated.
FAILED_CLOSED = "failed closed: "
#: The rule id of the reason (and error) of a decision that met an internal error.
INTERNAL_ERROR = "internal_error"
#: Every reason message is cut to this many characters (``REASON_CUT`` ends a cut one).
MAX_REASON_CHARS = 4096
REASON_CUT = "...[truncated]"


class FrozenMap(dict):
    """A map that refuses every change (the annotations of a reason): a dict underneath, so
    reading it, ``json.dumps`` and MessagePack cost what a dict costs; ``dict(m)`` is a
    mutable copy."""

    __slots__ = ()

    def __new__(cls, items: Mapping | Iterable = ()) -> FrozenMap:
        self = dict.__new__(cls)
        dict.update(self, items)
        return self

    def __init__(self, *args: object) -> None:
        pass  # filled by __new__: calling __init__ again must not refill it

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("annotations are read-only: decisions are immutable values (copy with dict(...))")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


def frozen_map(items: Mapping | None) -> FrozenMap:
    """``items`` as a FrozenMap (itself when it already is one: nothing to copy)."""
    if type(items) is FrozenMap:
        return items  # type: ignore[return-value]
    return FrozenMap(() if items is None else items)


class _Record:
    """Plain slotted records: equality and repr by fields, immutable (built by ``__new__``, so
    no ``__init__`` can be called again to refill one). Not dataclasses, because a frozen
    dataclass costs about 0.9 µs to build and a decision builds several."""

    __slots__ = ()

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: decisions are immutable values")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: decisions are immutable values")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self):
        return (type(self), self._fields())


def _setters(cls: type) -> tuple:
    """The slot descriptors' setters of ``cls``, which its ``__new__`` fills the slots with
    (its own ``__setattr__`` refuses)."""
    return tuple(vars(cls)[name].__set__ for name in cls.__slots__)


_new = object.__new__


# PUBLIC: exported from pdp — field names are part of the API and of the wire format.
class Reason(_Record):
    __slots__ = ("rule", "effect", "message", "annotations")

    def __new__(cls, rule: str, effect: str, message: str, annotations: Mapping[str, str] | None = None) -> Reason:
        self = _new(cls)
        _set_rule(self, rule)
        _set_effect(self, effect)
        _set_message(self, message)
        _set_annotations(self, annotations if type(annotations) is FrozenMap else frozen_map(annotations))
        return self

    def to_dict(self) -> dict:
        return {"rule": self.rule, "effect": self.effect, "message": self.message,
                "annotations": dict(self.annotations)}


_set_rule, _set_effect, _set_message, _set_annotations = _setters(Reason)

DEFAULT_REASON = Reason("default", "forbid", "no permit rule matched", {})


# PUBLIC: exported from pdp.
class RuleError(_Record):
    """An evaluation error met while deciding: the rule whose condition failed, and why."""

    __slots__ = ("rule", "message")

    def __new__(cls, rule: str, message: str) -> RuleError:
        self = _new(cls)
        _set_error_rule(self, rule)
        _set_error_message(self, message)
        return self

    def to_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message}


_set_error_rule, _set_error_message = _setters(RuleError)


_FIELDS = ("decision", "reasons", "errors", "revision", "eval_ns")


# PUBLIC: exported from pdp.
class Decision(tuple):
    """ALLOW or DENY, with reasons, errors, the revision that decided and the evaluation time.

    Immutable. A tuple underneath, because a decision is made per request and a tuple is the
    cheapest immutable record to build (``Decision.of`` is one C call from the evaluators).
    Equality ignores ``eval_ns``.
    """

    __slots__ = ()

    def __new__(cls, decision: str, reasons: tuple, errors: tuple, revision: str, eval_ns: int = 0):
        return tuple.__new__(cls, (decision, reasons, errors, revision, eval_ns))

    decision = property(operator.itemgetter(0), doc="ALLOW or DENY")
    reasons = property(operator.itemgetter(1), doc="tuple of Reason")
    errors = property(operator.itemgetter(2), doc="tuple of RuleError")
    revision = property(operator.itemgetter(3), doc="the policy set's revision")
    eval_ns = property(operator.itemgetter(4), doc="evaluation time in nanoseconds")

    @property
    def allowed(self) -> bool:
        return self[0] == ALLOW

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self[:4] == other[:4]

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self[:4])

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(_FIELDS, self))
        return f"Decision({inner})"

    def __reduce__(self):
        return (Decision, tuple(self))

    def to_dict(self) -> dict:
        return {
            "decision": self[0],
            "reasons": [r.to_dict() for r in self[1]],
            "errors": [e.to_dict() for e in self[2]],
            "revision": self[3],
            "eval_ns": self[4],
        }


def combine(forbids: list[Reason], permits: list[Reason], errors: list[RuleError],
            revision: str, eval_ns: int) -> Decision:
    """Deny overrides, default deny (SPEC §2). ``forbids``/``permits``: the rules that applied,
    in source order; a forbid that failed closed is among ``forbids``."""
    if forbids:
        # Any applying forbid wins; permits were not even evaluated.
        return Decision(DENY, tuple(forbids), tuple(errors), revision, eval_ns)
    if permits:
        return Decision(ALLOW, tuple(permits), tuple(errors), revision, eval_ns)
    # Nothing permits: deny by default.
    return Decision(DENY, (DEFAULT_REASON,), tuple(errors), revision, eval_ns)


def cap_reason(message: str) -> str:
    """A reason message cut to ``MAX_REASON_CHARS`` characters, ending ``REASON_CUT`` when cut
    (interpolating a large request value must not make a large answer). Every evaluator calls it.

    >>> len(cap_reason("x" * 10_000)) == MAX_REASON_CHARS
    True
    """
    if len(message) <= MAX_REASON_CHARS:
        return message
    return message[:MAX_REASON_CHARS - len(REASON_CUT)] + REASON_CUT


_log = logging.getLogger("pdp.engine")
#: A traceback is logged at most once per this many seconds per exception type; the other
#: occurrences are counted and the count is logged with the next traceback.
_TRACEBACK_EVERY = 60.0
_last_traceback: dict[str, float] = {}
_suppressed: dict[str, int] = {}
_log_lock = threading.Lock()


def failed_closed(exc: BaseException, revision: str) -> Decision:
    """The decision for a request whose evaluation raised an unexpected exception (a bug, or an
    exhausted resource): DENY, whatever the policies say, with the reason ``internal_error``.

    The caller sees only the exception's type; the log (logger ``pdp.engine``) gets the
    traceback, at most once a minute per exception type so that a request that triggers a
    bug cannot flood it.
    """
    kind = type(exc).__name__
    message = f"internal error: {kind}"
    now = time.monotonic()
    with _log_lock:
        last = _last_traceback.get(kind)
        loud = last is None or now - last >= _TRACEBACK_EVERY
        if loud:
            _last_traceback[kind] = now
            suppressed = _suppressed.pop(kind, 0)
        else:
            _suppressed[kind] = _suppressed.get(kind, 0) + 1
    if loud:
        _log.error("internal error while deciding (revision %s); failed closed with DENY%s", revision,
                   f" ({suppressed} more since the last traceback)" if suppressed else "", exc_info=exc)
    else:
        _log.error("internal error while deciding (revision %s): %s; failed closed with DENY", revision, kind)
    return Decision(DENY, (Reason(INTERNAL_ERROR, "forbid", FAILED_CLOSED + message, {}),),
                    (RuleError(INTERNAL_ERROR, message),), revision, 0)


def decide_batch(requests: Iterable[object], decide: Callable[[Request], Decision], revision: str,
                 tokens: Sequence[dict | None] | None = None) -> list[Decision]:
    """``decide_many`` for the Python evaluators: every request is validated first
    (``RequestError`` names the index of the first malformed one), then each is decided with
    ``decide``; an unexpected exception fails only its own request closed. ``tokens``: the
    verified token of each request (its ``Request.token``), when some have one."""
    parsed: list = []
    for i, raw in enumerate(requests):
        try:
            request = indexed_request(i, raw)
            parsed.append(request if tokens is None else Request(request.attrs, request.arrival, tokens[i]))
        except RequestError:
            raise
        except Exception as exc:  # a bug in validation: that request fails closed
            parsed.append(exc)
    out = []
    for request in parsed:
        if isinstance(request, Exception):
            out.append(failed_closed(request, revision))
            continue
        try:
            out.append(decide(request))
        except Exception as exc:
            out.append(failed_closed(exc, revision))
    return out

