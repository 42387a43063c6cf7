"""Decisions: which rules applied (an evaluator's outcome) ⇒ ALLOW or DENY with reasons.

The combining rule of SPEC §2 is :func:`combine`; everything a user reads about a decision
(reasons, errors, revision, timing) is in :class:`Decision`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

ALLOW, DENY = "ALLOW", "DENY"

#: Message prefix of a forbid rule that applies because it could not be evaluated.
FAILED_CLOSED = "failed closed: "


# PUBLIC: exported from pdp — field names are part of the API and of the wire format.
@dataclass(frozen=True)
class Reason:
    rule: str
    effect: str
    message: str
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "effect": self.effect, "message": self.message,
                "annotations": dict(self.annotations)}


DEFAULT_REASON = Reason("default", "forbid", "no permit rule matched", {})


# PUBLIC: exported from pdp.
@dataclass(frozen=True)
class RuleError:
    """An evaluation error met while deciding: the rule whose condition failed, and why."""

    rule: str
    message: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message}


# PUBLIC: exported from pdp.
@dataclass(frozen=True)
class Decision:
    decision: str  # ALLOW | DENY
    reasons: tuple[Reason, ...]
    errors: tuple[RuleError, ...]
    revision: str
    eval_ns: int = field(default=0, compare=False)

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
