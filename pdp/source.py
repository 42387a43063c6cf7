"""Source text and spans: offsets ⇒ (line, column) and the source line shown under an error."""

from __future__ import annotations

import bisect
from typing import NamedTuple

from .errors import Diagnostic


class SourceFile:
    """The text of one loaded file, with line starts for position look-ups."""

    __slots__ = ("name", "text", "_line_starts")

    def __init__(self, name: str, text: str):
        self.name = name
        self.text = text
        starts = [0]
        find = text.find
        i = find("\n")
        while i >= 0:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._line_starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def line_text(self, line: int) -> str | None:
        if line < 1 or line > len(self._line_starts):
            return None
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return (self.text[start:] if end < 0 else self.text[start:end]).rstrip("\r")

    def diagnostic(self, line: int, column: int, message: str, code: str = "pdl_error") -> Diagnostic:
        return Diagnostic(self.name, line, column, message, code, self.line_text(line))

    def __repr__(self) -> str:
        return f"SourceFile({self.name!r})"


class Span(NamedTuple):
    """Where a node stands in its file; 1-based lines and columns, end exclusive.

    A named tuple: the parser makes one per node, and a tuple is the cheapest immutable record.
    """

    file: SourceFile
    line: int
    column: int
    end_line: int
    end_column: int

    def __repr__(self) -> str:
        return f"Span({self.file.name}:{self.line}:{self.column}-{self.end_line}:{self.end_column})"

    def diagnostic(self, message: str, code: str = "pdl_error") -> Diagnostic:
        return self.file.diagnostic(self.line, self.column, message, code)

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.line, self.column)
