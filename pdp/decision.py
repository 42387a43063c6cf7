"""Decisions: which rules applied (an evaluator's outcome) ⇒ ALLOW or DENY with reasons.

The combining rule of SPEC §2 is :func:`combine`; everything a user reads about a decision
(reasons, errors, revision, timing) is in :class:`Decision`.
"""

from __future__ import annotations

from typing import Mapping

ALLOW, DENY = "ALLOW", "DENY"

#: Message prefix of a forbid rule that applies because it could not be evaluated.
FAILED_CLOSED = "failed closed: "


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


# PUBLIC: exported from pdp.
class Decision(_Record):
    """ALLOW or DENY, with reasons, errors, the revision that decided and the evaluation time.

    Equality ignores ``eval_ns``.
    """

    __slots__ = ("decision", "reasons", "errors", "revision", "eval_ns")

    def __init__(self, decision: str, reasons: tuple, errors: tuple, revision: str, eval_ns: int = 0):
        self.decision = decision
        self.reasons = reasons
        self.errors = errors
        self.revision = revision
        self.eval_ns = eval_ns

    def _fields(self) -> tuple:
        return (self.decision, self.reasons, self.errors, self.revision)

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reasons": [r.to_dict() for r in self.reasons],
            "errors": [e.to_dict() for e in self.errors],
            "revision": self.revision,
            "eval_ns": self.eval_ns,
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
