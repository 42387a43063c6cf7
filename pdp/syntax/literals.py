"""Literal decoders: string escapes, numbers and durations, as written ⇒ Python values.

Each raises ``ValueError`` with a short message; the caller adds the position.
"""

from __future__ import annotations

import json
import re

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_ORDER = ("d", "h", "m", "s", "ms")


def decode_string(raw: str) -> str:
    """Decode a quoted string literal with JSON escapes.

    >>> decode_string(r'"tab\\there"')
    'tab\\there'
    """
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        # The lexer already matched the quotes: what is left is a control character or an escape.
        if exc.msg.startswith("Invalid control character"):
            char = raw[exc.pos]
            escape = {"\t": "\\t", "\r": "\\r"}.get(char, f"\\u{ord(char):04x}")
            raise ValueError(f"control character U+{ord(char):04X} in string; write it as {escape}") from None
        start = raw.rfind("\\", 0, exc.pos + 1)
        bad = raw[start : min(start + (6 if raw[start + 1 : start + 2] == "u" else 2), len(raw) - 1)]
        raise ValueError(f"invalid escape '{bad}' in string; strings use JSON escapes") from None
    if not isinstance(value, str):  # pragma: no cover - the lexer only passes quoted text
        raise ValueError("not a string literal")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(value[exc.start])
            raise ValueError(f"invalid escape '\\u{code:04x}' in string: a lone surrogate is not a "
                             "character (pair it, or write the character itself)") from None
    return value


def parse_number(raw: str) -> int | float:
    """``42`` ⇒ int, ``-1.5`` and ``1e3`` ⇒ float; integers must fit in 64 bits.

    >>> parse_number("42"), parse_number("-1.5")
    (42, -1.5)
    """
    if re.fullmatch(r"-?[0-9]+", raw):
        value = int(raw)
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer {raw} does not fit in 64 bits")
        return value
    value = float(raw)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {raw} is too large")
    return value


def parse_duration(raw: str) -> int | float:
    """``1h30m`` ⇒ 5400 seconds; ``500ms`` ⇒ 0.5.

    Integer amounts, each unit at most once, in the order d h m s ms.

    >>> parse_duration("1h30m"), parse_duration("500ms"), parse_duration("2d12h")
    (5400, 0.5, 216000)
    """
    if not re.fullmatch(f"(?:{_DURATION_PART.pattern})+", raw):
        raise ValueError(
            f"malformed duration {raw!r}: write whole amounts with the units d h m s ms, as in 1h30m"
        )
    last = -1
    millis = 0
    for amount, unit in _DURATION_PART.findall(raw):
        if "." in amount:
            raise ValueError(
                f"malformed duration {raw!r}: amounts are whole numbers (write 1h30m, not 1.5h)"
            )
        rank = _UNIT_ORDER.index(unit)
        if rank <= last:
            raise ValueError(
                f"malformed duration {raw!r}: each unit at most once, in the order d h m s ms"
            )
        last = rank
        millis += int(amount) * (1 if unit == "ms" else _UNIT_SECONDS[unit] * 1000)
    seconds, rest = divmod(millis, 1000)
    return seconds if rest == 0 else millis / 1000
