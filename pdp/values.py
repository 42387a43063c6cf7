"""Value semantics shared by every evaluator: types, equality, ordering, times, IP networks, rendering."""

from __future__ import annotations

import ipaddress
import json
import functools
import math
import re
from bisect import bisect_right
from typing import Any, Iterable

from pdp.errors import EvalError

__all__ = [
    "CidrSet",
    "compare",
    "equal",
    "is_number",
    "json_number",
    "parse_network",
    "parse_time",
    "render",
    "type_name",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Messages quote at most this many characters of a request value.
_QUOTE_LIMIT = 64


def _quote(text: str) -> str:
    """Quote a (possibly long, request-supplied) string for an error message."""
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return repr(text)


def quote_key(key: str) -> str:
    """A (possibly long, request-supplied) map key as JSON for an error message, cut like
    ``_quote``: ``data.users["bot-7"] is missing``."""
    if len(key) > _QUOTE_LIMIT:
        key = key[: _QUOTE_LIMIT - 3] + "..."
    return json.dumps(key, ensure_ascii=False)


def is_number(v: Any) -> bool:
    """True for int and float values; bool is never a number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def type_name(v: Any) -> str:
    """The language's name for the type of ``v``: string, number, bool, list, map or cidr set."""
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, CidrSet):
        return "cidr set"
    if v is None:
        return "null"
    return type(v).__name__


# ---------------------------------------------------------------------------------------------
# Equality and ordering


def equal(a: Any, b: Any) -> bool:
    """Structural equality of two values; never raises.

    Values of different types are unequal (``true != 1``); numbers compare by value
    (``1 == 1.0``); lists element-wise; maps by keys and values; cidr sets by their networks.
    Tuples count as lists. Iterative, so deep nesting cannot overflow the stack.
    """
    try:
        pending = [(a, b)]
        while pending:
            x, y = pending.pop()
            if isinstance(x, str):
                if not (isinstance(y, str) and x == y):
                    return False
            elif isinstance(x, bool):
                if not (isinstance(y, bool) and x == y):
                    return False
            elif isinstance(x, (int, float)):
                if not (isinstance(y, (int, float)) and not isinstance(y, bool) and x == y):
                    return False
            elif isinstance(x, (list, tuple)):
                if not (isinstance(y, (list, tuple)) and len(x) == len(y)):
                    return False
                pending.extend(zip(x, y))
            elif isinstance(x, dict):
                if not (isinstance(y, dict) and len(x) == len(y)):
                    return False
                for key, value in x.items():
                    if key not in y:
                        return False
                    pending.append((value, y[key]))
            elif isinstance(x, CidrSet):
                if not (isinstance(y, CidrSet) and x == y):
                    return False
            elif x is None:
                if y is not None:
                    return False
            elif not (type(x) is type(y) and x == y):
                return False
        return True
    except Exception:  # an exotic value with a raising __eq__: unequal, as promised
        return False


_ORDER = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compare(op: str, a: Any, b: Any) -> bool:
    """Evaluate ``a op b`` for op in ``< <= > >=``: two numbers, or two strings by code point.

    Any other pair raises ``EvalError("cannot compare string with number using <")``.
    """
    test = _ORDER.get(op)
    if test is None:
        raise ValueError(f"unknown comparison operator {op!r}")
    if (isinstance(a, str) and isinstance(b, str)) or (is_number(a) and is_number(b)):
        return test(a, b)
    raise EvalError(f"cannot compare {type_name(a)} with {type_name(b)} using {op}")


# ---------------------------------------------------------------------------------------------
# Times

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).

    >>> days_from_civil(1970, 1, 1), days_from_civil(2000, 3, 1)
    (0, 11017)
    """
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(x: Any) -> int | float:
    """Epoch seconds of an RFC 3339 string, or an epoch number returned as is.

    The result is an int unless the string has a non-zero fractional second. Raises
    ``EvalError`` for anything else (``'yesterday' is not an RFC 3339 time``).
    """
    if isinstance(x, str):
        # Only short strings go through the cache: a valid time may carry any number of
        # fraction digits, and request data must not be able to fill memory through it.
        return _parse_rfc3339(x) if len(x) <= _CACHED_TIME_CHARS else _parse_rfc3339.__wrapped__(x)
    if is_number(x):
        if isinstance(x, float) and not math.isfinite(x):
            raise EvalError(f"time expects a finite number, got {render(x)}")
        return x
    raise EvalError(f"time expects a string or number, got {type_name(x)}")


_CACHED_TIME_CHARS = 64


@functools.lru_cache(maxsize=16384)
def _parse_rfc3339(text: str) -> int | float:
    # Cached: credentials' issue times repeat across requests. Errors are not cached (raised).
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise EvalError(f"{_quote(text)} is not an RFC 3339 time")
    year, month, day, hour, minute, second = map(int, m.group(1, 2, 3, 4, 5, 6))
    fraction, sign, off_hour, off_minute = m.group(7, 8, 9, 10)

    def out_of_range(field: str) -> EvalError:
        return EvalError(f"{_quote(text)} is not an RFC 3339 time ({field} out of range)")

    if year < 1:  # calendar/datetime have no year 0
        raise out_of_range("year")
    if not 1 <= month <= 12:
        raise out_of_range("month")
    if not 1 <= day <= days_in_month(year, month):
        raise out_of_range("day")
    if hour > 23:
        raise out_of_range("hour")
    if minute > 59:
        raise out_of_range("minute")
    if second > 60:
        raise out_of_range("second")
    # A leap second (:60) counts as :59 of the same minute: POSIX epoch time has no leap
    # seconds, and clamping keeps the instant inside the minute (and day) the text names.
    second = min(second, 59)
    seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    if sign is not None:
        oh, om = int(off_hour), int(off_minute)
        if oh > 23:
            raise out_of_range("offset hour")
        if om > 59:
            raise out_of_range("offset minute")
        offset = oh * 3600 + om * 60
        seconds += -offset if sign == "+" else offset
    if fraction is not None and fraction.strip("0"):
        return seconds + float("0." + fraction)
    return seconds


# ---------------------------------------------------------------------------------------------
# IP networks


def parse_network(text: str) -> IPNetwork:
    """Parse ``"10.0.0.0/8"``, ``"fd00::/8"`` or a bare address (a /32 or /128 network).

    Raises ValueError for text that is not a network (``'nope' is not an IP network``) or
    has host bits set (``'10.1.0.0/8' has host bits set; did you mean 10.0.0.0/8?``).
    """
    if not isinstance(text, str):
        raise ValueError(f"an IP network must be a string, got {type_name(text)}")
    if "%" in text:  # scoped IPv6 addresses name an interface, not a network
        raise ValueError(f"{_quote(text)} is not an IP network")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{_quote(text)} is not an IP network") from None
    raise ValueError(f"{_quote(text)} has host bits set; did you mean {loose}?")


def _ipv4_int(text: str) -> int | None:
    """Dotted-quad IPv4 text to its integer, or None (no leading zeros, ASCII digits only)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    n = 0
    for part in parts:
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
            return None
        if part[0] == "0" and len(part) > 1:
            return None
        byte = int(part)
        if byte > 255:
            return None
        n = n << 8 | byte
    return n


def _merged_ranges(networks: Iterable[IPNetwork]) -> tuple[list[int], list[int]]:
    """Sorted, merged [first, last] integer ranges of ``networks`` as (starts, ends)."""
    spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in networks)
    starts: list[int] = []
    ends: list[int] = []
    for first, last in spans:
        if ends and first <= ends[-1] + 1:
            ends[-1] = max(ends[-1], last)
        else:
            starts.append(first)
            ends.append(last)
    return starts, ends


def _in_ranges(n: int, starts: list[int], ends: list[int]) -> bool:
    i = bisect_right(starts, n) - 1
    return i >= 0 and n <= ends[i]


class CidrSet:
    """A set of IPv4/IPv6 networks, the value of ``cidr(...)``; ``ip in set`` is ``contains``."""

    __slots__ = ("networks", "_v4", "_v6", "_key")

    def __init__(self, networks: Iterable[IPNetwork]):
        unique: dict[IPNetwork, None] = {}
        for network in networks:
            if not isinstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                raise TypeError(f"CidrSet takes ipaddress networks, got {type(network).__name__}")
            unique[network] = None
        self.networks: tuple[IPNetwork, ...] = tuple(unique)
        self._v4 = _merged_ranges(n for n in self.networks if n.version == 4)
        self._v6 = _merged_ranges(n for n in self.networks if n.version == 6)
        self._key = frozenset(self.networks)

    @classmethod
    def from_strings(cls, texts: Iterable[str]) -> CidrSet:
        """Build from network strings; raises ValueError as ``parse_network`` does."""
        return cls(parse_network(t) for t in texts)

    def contains(self, ip: Any) -> bool:
        """True when the IP address string ``ip`` is in one of the networks.

        IPv4-mapped IPv6 addresses (``::ffff:10.1.2.3``) also match IPv4 networks. Raises
        EvalError when ``ip`` is not a string holding an IPv4 or IPv6 address.
        """
        if not isinstance(ip, str):
            raise EvalError(f"in cidr(...) expects a string IP address, got {type_name(ip)}")
        if ":" not in ip:
            n = _ipv4_int(ip)
            if n is None:
                raise EvalError(f"{_quote(ip)} is not an IP address")
            return _in_ranges(n, *self._v4)
        try:
            address = ipaddress.IPv6Address(ip)
        except ValueError:
            raise EvalError(f"{_quote(ip)} is not an IP address") from None
        if _in_ranges(int(address), *self._v6):
            return True
        mapped = address.ipv4_mapped
        return mapped is not None and _in_ranges(int(mapped), *self._v4)

    def strings(self) -> list[str]:
        """The normalized network strings, in the order given (duplicates dropped)."""
        return [str(n) for n in self.networks]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CidrSet):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return "cidr(" + ", ".join(json.dumps(s) for s in self.strings()) + ")"


# ---------------------------------------------------------------------------------------------
# Rendering


def json_number(v: int | float) -> int | float:
    """A number as JSON shows it: an integral float with abs < 1e16 becomes an int (3.0 -> 3)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return int(v)
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, bool, int)) or v is None:
        return v
    if isinstance(v, float):
        return json_number(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, CidrSet):
        return v.strings()
    return str(v)


def render(v: Any) -> str:
    """Text of a value in a reason: strings as is, numbers and everything else as compact JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    try:
        # Keys sorted: a map's order is not kept by every layer (protobuf maps), so the same
        # request must render the same text whichever way it arrived.
        return json.dumps(_jsonable(v), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    except RecursionError:
        raise EvalError("value is too deeply nested to render") from None
