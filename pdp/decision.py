"""Decisions: which rules applied (an evaluator's outcome) ⇒ ALLOW or DENY with reasons.

The combining rule of SPEC §2 is :func:`combine`; everything a user reads about a decision
(reasons, errors, revision, timing) is in :class:`Decision`.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable
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


class _Record:
    """Plain slotted records: equality and repr by fields. Not dataclasses, because a frozen
    dataclass costs about 0.9 µs to build and a decision builds several; treat them as
    read-only."""

    __slots__ = ()

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(tuple(sorted(f.items())) if isinstance(f, Mapping) else f for f in self._fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"


# PUBLIC: exported from pdp — field names are part of the API and of the wire format.
class Reason(_Record):
    __slots__ = ("rule", "effect", "message", "annotations")

    def __init__(self, rule: str, effect: str, message: str, annotations: Mapping[str, str] | None = None):
        self.rule = rule
        self.effect = effect
        self.message = message
        self.annotations = {} if annotations is None else annotations

    def to_dict(self) -> dict:
        return {"rule": self.rule, "effect": self.effect, "message": self.message,
                "annotations": dict(self.annotations)}


DEFAULT_REASON = Reason("default", "forbid", "no permit rule matched", {})


# PUBLIC: exported from pdp.
class RuleError(_Record):
    """An evaluation error met while deciding: the rule whose condition failed, and why."""

    __slots__ = ("rule", "message")

    def __init__(self, rule: str, message: str):
        self.rule = rule
        self.message = message

    def to_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message}


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


def decide_batch(requests: Iterable[object], decide: Callable[[Request], Decision], revision: str) -> list[Decision]:
    """``decide_many`` for the Python evaluators: every request is validated first
    (``RequestError`` names the index of the first malformed one), then each is decided with
    ``decide``; an unexpected exception fails only its own request closed."""
    parsed: list = []
    for i, raw in enumerate(requests):
        try:
            parsed.append(indexed_request(i, raw))
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

