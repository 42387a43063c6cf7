"""Where ``now`` comes from, and the bound that keeps a caller from moving it (SPEC §1).

``now`` is the request's ``context.time`` when it has one, else the server clock when the
request arrived. An engine with a clock bound (``pdp serve``: ``--max-clock-skew``, 30 s by
default) accepts a ``context.time`` only within that many seconds of the server clock, in
either direction: otherwise ``now`` is an evaluation error, so the forbids that read it fail
closed and the permits that read it do not apply. Without a bound (``pdp eval``, ``pdp test``,
the Python API by default) ``context.time`` is taken as given, which keeps tests deterministic.

Every evaluator calls :func:`bounded` with the same numbers, so they agree to the message.
"""

from __future__ import annotations

import math

from .errors import EvalError
from .times import human_duration

#: ``pdp serve``'s bound when ``--max-clock-skew`` is not given, in seconds.
DEFAULT_MAX_SKEW = 30.0


def bounded(requested: int | float, clock: float, max_skew: float) -> int | float:
    """``requested`` (the parsed ``context.time``) when it lies within ``max_skew`` seconds of
    ``clock`` (the server clock), else raise EvalError saying by how much it is off."""
    offset = requested - clock
    if -max_skew <= offset <= max_skew:
        return requested
    direction = "ahead of" if offset > 0 else "behind"
    raise EvalError(f"context.time is {_amount(abs(offset))} {direction} the server clock; "
                    f"at most {human_duration(max_skew)} is allowed (--max-clock-skew)")


def _amount(seconds: float) -> str:
    return human_duration(seconds) if math.isfinite(seconds) else "too far"


def check_max_skew(seconds: float) -> float:
    """A valid bound: a finite number of seconds, at least 0; raises ValueError otherwise."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        raise ValueError(f"a clock bound is a finite number of seconds, at least 0; got {seconds!r}")
    return float(seconds)
