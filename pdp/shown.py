"""Values as a trace shows them to people: compact JSON, cut at ``MAX_SHOWN_CHARS``.

A trace shows the value of every sub-expression, and one of them may be a whole data file (a
2,000-entry inventory is 200 KB of JSON). ``preview`` writes JSON piece by piece and stops once
the limit is passed, so a large value costs no more than its first ``MAX_SHOWN_CHARS``.
"""

from __future__ import annotations

import json
from typing import Iterator

#: The most characters of one value, expression, message or error a trace shows.
MAX_SHOWN_CHARS = 200
ELLIPSIS = "…"


def preview(value: object, limit: int = MAX_SHOWN_CHARS) -> tuple[str, bool]:
    """``(text, cut)``: ``value`` as compact JSON, or its first ``limit`` characters followed by
    an ellipsis and the value's size when it is longer.

    >>> preview({"a": [1, 2]})
    ('{"a": [1, 2]}', False)
    >>> preview(list(range(1000)), 20)
    ('[0, 1, 2, 3, 4, 5, 6,… (1000 items)', True)
    """
    parts: list[str] = []
    size = 0
    for piece in _pieces(value):
        parts.append(piece)
        size += len(piece)
        if size > limit:
            return "".join(parts)[:limit] + ELLIPSIS + _size(value), True
    return "".join(parts), False


def cut(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text``, or its first ``limit`` characters and an ellipsis."""
    return text if len(text) <= limit else text[:limit] + ELLIPSIS


def _pieces(value: object) -> Iterator[str]:
    # The separators of json.dumps's defaults, so a short value reads as it always did.
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield json.dumps(key, ensure_ascii=False)
            yield ": "
            yield from _pieces(item)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(item)
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False)


def _size(value: object) -> str:
    if isinstance(value, dict):
        return f" ({len(value)} entries)"
    if isinstance(value, (list, tuple)):
        return f" ({len(value)} items)"
    if isinstance(value, str):
        return f" ({len(value)} characters)"
    return ""
