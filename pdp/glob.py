"""Glob patterns for ``matches`` (SPEC §1): validated once, matched in time linear in the input."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

__all__ = ["MAX_GLOB_CHARS", "Glob", "compile_glob", "glob_error", "one_star_parts"]

#: Longer patterns are malformed. The NFA costs O(len(text) * len(pattern) / 64) steps, so a
#: bounded pattern keeps matching linear in the text, also when the pattern is request data.
MAX_GLOB_CHARS = 1024
#: Only patterns up to this long are cached: a compiled pattern may take ~250 bytes per
#: character, and patterns from requests must not be able to fill memory through the cache.
_CACHED_GLOB_CHARS = 128

# Tokens of a pattern: a literal is its one-character string; the wildcards are these objects.
_QMARK = object()  # ?  one character except '/'
_STAR = object()  # *  any run of characters except '/'
_DSTAR = object()  # ** any run of characters, '/' included


def glob_error(pattern: str) -> str | None:
    """Return why ``pattern`` is malformed, or None when it is a valid glob."""
    if len(pattern) > MAX_GLOB_CHARS:
        return f"a glob may be at most {MAX_GLOB_CHARS} characters, got {len(pattern)}"
    if "***" in pattern:
        return "'***' is not allowed in a glob; use '*' or '**'"
    return None


def compile_glob(pattern: str) -> Glob:
    """Compile ``pattern`` (cached when short); raise ValueError when it is malformed."""
    if len(pattern) > _CACHED_GLOB_CHARS:
        return Glob(pattern)
    return _compile_cached(pattern)


@lru_cache(maxsize=4096)
def _compile_cached(pattern: str) -> Glob:
    return Glob(pattern)


compile_glob.cache_info = _compile_cached.cache_info  # type: ignore[attr-defined]
compile_glob.cache_clear = _compile_cached.cache_clear  # type: ignore[attr-defined]


class Glob:
    """A compiled glob; ``match(text)`` tells whether the whole of ``text`` matches."""

    __slots__ = ("pattern", "one_star", "_match")

    def __init__(self, pattern: str):
        error = glob_error(pattern)
        if error is not None:
            raise ValueError(error)
        self.pattern = pattern
        #: ``(prefix, suffix)`` when the pattern is ``prefix*suffix`` (the common shape, which
        #: the compiled evaluator matches in C), else None.
        self.one_star = one_star_parts(pattern)
        self._match = _matcher(pattern)

    def match(self, text: str) -> bool:
        """True when the whole of ``text`` matches the pattern."""
        return self._match(text)

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Glob) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)


def _tokens(pattern: str) -> list:
    """Split a valid pattern into literal characters and wildcard tokens."""
    tokens: list = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                tokens.append(_DSTAR)
                i += 2
                continue
            tokens.append(_STAR)
        elif c == "?":
            tokens.append(_QMARK)
        else:
            tokens.append(c)
        i += 1
    return tokens


def one_star_parts(pattern: str) -> tuple[str, str] | None:
    """``(prefix, suffix)`` of a pattern with exactly one wildcard, a ``*``; else None."""
    if "?" in pattern or pattern.count("*") != 1:
        return None
    prefix, suffix = pattern.split("*")
    return prefix, suffix


def _matcher(pattern: str) -> Callable[[str], bool]:
    """Choose the cheapest correct strategy for ``pattern``."""
    if "*" not in pattern and "?" not in pattern:
        return pattern.__eq__
    if "?" not in pattern:
        if "**" in pattern:
            if "*" not in pattern.replace("**", ""):
                # Only '**' wildcards: literal pieces in order, gaps unconstrained.
                pieces = pattern.split("**")
                return lambda text: _pieces_in_order(pieces, text)
        elif (parts := one_star_parts(pattern)) is not None:
            # One '*' (the common "prefix/*"): the text between prefix and suffix has no '/'.
            prefix, suffix = parts
            lead, trail = len(prefix), len(suffix)

            def one_star(text: str) -> bool:
                end = len(text) - trail
                return (
                    end >= lead
                    and text.startswith(prefix)
                    and text.endswith(suffix)
                    and text.find("/", lead, end) < 0
                )

            return one_star
        else:
            # Only '*' wildcards: '/' is matched literally, so the text has exactly the
            # pattern's '/'-separated components, and within one component '*' is unconstrained.
            return _component_matcher(pattern)
    return _nfa_matcher(_tokens(pattern))


def _pieces_in_order(pieces: list[str], text: str) -> bool:
    """Match ``pieces[0] GAP pieces[1] ... GAP pieces[-1]`` where a gap is any run (maybe empty).

    Taking the leftmost occurrence of each middle piece is optimal: it leaves the most room
    for the pieces after it. ``str.find`` is linear in the text for a fixed piece.
    """
    first, last = pieces[0], pieces[-1]
    end = len(text) - len(last)
    if end < len(first) or not text.startswith(first) or not text.endswith(last):
        return False
    pos = len(first)
    for piece in pieces[1:-1]:
        found = text.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def _component_matcher(pattern: str) -> Callable[[str], bool]:
    """Matcher for a pattern whose only wildcard is a single '*'."""
    slashes = pattern.count("/")
    # Per component: a literal string, or the pieces around its stars.
    components = [c.split("*") if "*" in c else c for c in pattern.split("/")]

    def match(text: str) -> bool:
        if text.count("/") != slashes:
            return False
        for want, got in zip(components, text.split("/")):
            if isinstance(want, str):
                if want != got:
                    return False
            elif not _pieces_in_order(want, got):
                return False
        return True

    return match


def _nfa_matcher(tokens: list) -> Callable[[str], bool]:
    """Simulate the pattern's NFA with one bit per pattern position (bit-parallel, no backtracking).

    State ``i`` means "``tokens[:i]`` matched the text read so far"; state ``len(tokens)``
    accepts. Each text character costs a constant number of integer operations on masks of
    ``len(tokens) + 1`` bits, so matching is O(len(text) * len(pattern) / word size).
    """
    # A literal prefix and suffix are checked with startswith/endswith; the NFA runs on the middle.
    head = 0
    while head < len(tokens) and isinstance(tokens[head], str):
        head += 1
    tail = len(tokens)
    while tail > head and isinstance(tokens[tail - 1], str):
        tail -= 1
    prefix = "".join(tokens[:head])
    suffix = "".join(tokens[tail:])
    middle = tokens[head:tail]

    literal: dict[str, int] = {}  # character -> positions whose token is that literal
    qmark = star = dstar = 0
    for i, token in enumerate(middle):
        bit = 1 << i
        if token is _QMARK:
            qmark |= bit
        elif token is _STAR:
            star |= bit
        elif token is _DSTAR:
            dstar |= bit
        else:
            literal[token] = literal.get(token, 0) | bit
    # Positions that advance on a character c: its literal, or '?' unless c is '/'.
    advance = {c: bits | (0 if c == "/" else qmark) for c, bits in literal.items()}
    advance_slash = literal.get("/", 0)
    stars = star | dstar  # stay on any character but '/'; also match the empty run
    final = 1 << len(middle)
    # A run of stars is one token, so star tokens are never adjacent and a single
    # epsilon step (a star position also enables the position after it) is a full closure.
    start = 1 | (1 & stars) << 1
    lead, trail = len(prefix), len(suffix)

    def match(text: str) -> bool:
        if lead or trail:
            if len(text) < lead + trail or not text.startswith(prefix) or not text.endswith(suffix):
                return False
            text = text[lead : len(text) - trail]
        state = start
        get = advance.get
        for c in text:
            if c == "/":
                state = (state & advance_slash) << 1 | (state & dstar)
            else:
                state = (state & get(c, qmark)) << 1 | (state & stars)
            if not state:
                return False
            state |= (state & stars) << 1
        return bool(state & final)

    return match
