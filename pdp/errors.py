"""Errors of every stage, and the one renderer of ``file:line:column: message`` with a caret.

``PolicyError`` (a policy set that cannot load), ``RequestError`` (a request that is not of the
shape SPEC §3 fixes) and ``EvalError`` (an evaluation error inside one decision; never escapes
the engine) are the only exception types the stages raise.
"""

from __future__ import annotations

from dataclasses import dataclass

#: At most this many diagnostics are rendered; the rest are counted.
MAX_RENDERED_DIAGNOSTICS = 50

#: A longer source line is shown as this many characters around the column.
MAX_SHOWN_LINE = 160

#: Error text sent to a gRPC caller (status details, trailing metadata, an item's error) is
#: cut to this many characters: gRPC caps the metadata of one answer (8 KiB by default).
MAX_WIRE_TEXT = 1024
_CUT = "..."


@dataclass(frozen=True)
class Diagnostic:
    """One positioned problem in a policy, data or suite file.

    ``line`` and ``column`` are 1-based; both are 0 when the problem has no position
    (a missing path, an unreadable file). ``severity`` is ``error`` (the set cannot load) or
    ``warning`` (``pdp check``'s lint: it loads, but something in it cannot be meant).
    """

    file: str
    line: int
    column: int
    message: str
    code: str = "pdl_error"
    source_line: str | None = None
    severity: str = "error"

    def render(self) -> str:
        message = f"warning: {self.message}" if self.severity == "warning" else self.message
        if self.line <= 0:
            return f"{self.file}: {message}"
        head = f"{self.file}:{self.line}:{self.column}: {message}"
        if self.source_line is None:
            return head
        line, column = self.source_line, self.column
        if len(line) > MAX_SHOWN_LINE:  # minified JSON is one line: show the part around the column
            start = max(0, min(column - 1 - MAX_SHOWN_LINE // 2, len(line) - MAX_SHOWN_LINE))
            end = start + MAX_SHOWN_LINE
            line = ("..." if start else "") + line[start:end] + ("..." if end < len(line) else "")
            column -= start - (3 if start else 0)
        # Keep tabs under tabs so the caret lines up in any terminal.
        prefix = "".join(c if c == "\t" else " " for c in line[: max(column - 1, 0)])
        return f"{head}\n{line}\n{prefix}^"


class PdpError(Exception):
    """Base class of the errors pdp raises on purpose."""


# PUBLIC: exported from pdp — fields file/line/column/diagnostics are part of the API.
class PolicyError(PdpError):
    """A policy set that cannot be loaded: syntax, static check, data or file errors.

    Holds every diagnostic found (sorted by file and position); ``file``, ``line`` and
    ``column`` are those of the first.
    """

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        if not diagnostics:
            raise ValueError("a PolicyError needs at least one diagnostic")
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = self.diagnostics[0]
        self.file = first.file
        self.line = first.line
        self.column = first.column
        self.message = first.message
        self.code = first.code
        super().__init__(self._render())

    def _render(self) -> str:
        shown = [d.render() for d in self.diagnostics[:MAX_RENDERED_DIAGNOSTICS]]
        hidden = len(self.diagnostics) - len(shown)
        if hidden > 0:
            shown.append(f"... and {hidden} more error{'s' if hidden > 1 else ''}")
        return "\n".join(shown)

    def __str__(self) -> str:
        return self.args[0]


# PUBLIC: exported from pdp — fields path/message are part of the API.
class RequestError(PdpError, ValueError):
    """A request that is not of the shape SPEC §3 fixes; ``path`` names where (``identity.type``)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __str__(self) -> str:
        return self.args[0]


class EvalError(Exception):
    """An evaluation error inside one decision (missing attribute, wrong type, bad time or IP).

    Never escapes the engine: the decision procedure turns it into an entry of
    ``Decision.errors`` and fails closed.
    """

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def printable(text: str, limit: int = MAX_WIRE_TEXT) -> str:
    r"""``text`` as printable ASCII of at most ``limit`` characters, for gRPC status details and
    metadata, which carry nothing else (a control character or a BOM there fails the whole call).

    Other characters become JSON escapes (``\u00e9``; two for one beyond U+FFFF), so a quoted
    key stays a JSON string. Past ``limit`` the middle is cut to ``...``: the end of an error
    text (what is wrong) is worth as much as its start (where).

    >>> print(printable("context.caf\u00e9\x01"))
    context.caf\u00e9\u0001
    >>> len(printable("k" * 100_000))
    1024
    """
    if len(text) <= limit:
        if text.isascii() and text.isprintable():
            return text
        shown = _escape(text)
        if len(shown) <= limit:
            return shown
    # Only the two ends can show: escape just those (a 100 KB name costs 1 KB of work).
    keep = limit - len(_CUT)
    head = _escape(text[: keep // 2])[: keep // 2]
    rest = keep - len(head)
    return head + _CUT + _escape(text[-rest:])[-rest:]


def printable_request_error(err: RequestError) -> RequestError:
    """``err`` as a gRPC caller gets it: path and message ``printable``, ``str()`` at most
    MAX_WIRE_TEXT characters, the path at most half of that (so the message always shows)."""
    path = printable(err.path, MAX_WIRE_TEXT // 2)
    return RequestError(path, printable(err.message, MAX_WIRE_TEXT - (len(path) + 2 if path else 0)))


def _escape(text: str) -> str:
    return "".join(c if " " <= c <= "~" else _escape_char(c) for c in text)


def _escape_char(c: str) -> str:
    code = ord(c)
    if code > 0xFFFF:  # a surrogate pair, as JSON writes it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"
