"""Times for people: durations as people read them, and wall-clock fields of a time in an IANA
time zone. Shared by the built-ins (every evaluator), the clock bound's message and the CLI.

Zones come from the standard library's ``zoneinfo`` (the system's zone database, else the
``tzdata`` package, a dependency of pdp). A zone is looked up once and kept.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import EvalError
from .values import is_number, parse_time, render, type_name

#: The units a duration is written in, largest first (the language's own, SPEC §1).
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
#: A duration for people shows at most this many units, the largest first: 6d1h16m, not
#: 6d1h16m33s (the units below are cut, not rounded: "6d1h16m ago" never overstates).
SHOWN_UNITS = 3

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def human_duration(seconds: int | float) -> str:
    """``seconds`` as people read a duration, in the language's own units: ``6d1h16m``.

    At most three units, the largest first, the rest cut (not rounded); below a second,
    milliseconds; a negative duration gets a ``-``. The text is a valid duration literal.

    >>> human_duration(522993.919123888), human_duration(3605), human_duration(0.25), human_duration(-90)
    ('6d1h16m', '1h5s', '250ms', '-1m30s')
    >>> human_duration(0), human_duration(59.9), human_duration(86400)
    ('0s', '59s', '1d')
    """
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        millis = math.floor(seconds * 1000)
        return f"{sign}{millis}ms" if millis else "0s"
    whole = math.floor(seconds)
    parts: list[str] = []
    shown = 0
    for unit, size in _UNITS:
        amount, whole = divmod(whole, size)
        if shown or amount:
            shown += 1
            if amount:
                parts.append(f"{amount}{unit}")
        if shown == SHOWN_UNITS:
            break
    return sign + "".join(parts)


def duration_of(now, x) -> str:
    """The built-in ``duration(x)``: a number of seconds as people read it."""
    if not is_number(x):
        raise EvalError(f"duration expects a number of seconds, got {type_name(x)}")
    if isinstance(x, float) and not math.isfinite(x):
        raise EvalError(f"duration expects a finite number, got {render(x)}")
    return human_duration(x)


# ---- time zones ------------------------------------------------------------------------------

#: Zones looked up (found or not) are kept; request data may name zones, so the memory is bounded.
_ZONE_CACHE = 512


def zone_error(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone, or None when it is one ("Europe/Paris", "UTC")."""
    return _zone(name)[1]


@functools.lru_cache(maxsize=_ZONE_CACHE)
def _zone(name: str) -> tuple[ZoneInfo | None, str | None]:
    try:
        return ZoneInfo(name), None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a zone key at all ("../etc", an absolute path); OSError: a folder.
        shown = name if len(name) <= 64 else name[:61] + "..."
        return None, f"unknown time zone {shown!r}; use an IANA name such as \"UTC\" or \"Europe/Paris\""


#: Datetimes exist for the years 1 to 9999: epoch seconds outside have no calendar date.
_EPOCH_MIN, _EPOCH_MAX = -62135596800, 253402300799
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def local_time(func: str, x: object, zone: object) -> datetime:
    """The wall-clock time in ``zone`` of the time ``x`` (RFC 3339 string or epoch number)."""
    if not isinstance(zone, str):
        raise EvalError(f"{func} expects a time zone name (a string) as its second argument, got {type_name(zone)}")
    seconds = parse_time(x)
    found, problem = _zone(zone)
    if found is None:
        raise EvalError(problem)  # type: ignore[arg-type]
    if not _EPOCH_MIN + 86400 <= seconds <= _EPOCH_MAX - 86400:  # a day's margin for the zone's offset
        raise EvalError(f"{func}: the time {render(seconds)} is outside the years 1 to 9999")
    try:
        return datetime.fromtimestamp(seconds, found)  # 3x faster than the arithmetic below
    except (OverflowError, OSError, ValueError):  # the platform's own limits (negative times on some)
        return (_EPOCH + timedelta(seconds=seconds)).astimezone(found)


def _hour(now, x, zone):
    return local_time("hour", x, zone).hour


def _minute(now, x, zone):
    return local_time("minute", x, zone).minute


def _weekday(now, x, zone):
    return WEEKDAYS[local_time("weekday", x, zone).weekday()]


def _date(now, x, zone):
    return local_time("date", x, zone).date().isoformat()


IMPLEMENTATIONS = {"hour": _hour, "minute": _minute, "weekday": _weekday, "date": _date}
