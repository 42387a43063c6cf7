"""Errors of every stage, and the one renderer of ``file:line:column: message`` with a caret.

``PolicyError`` (a policy set that cannot load), ``RequestError`` (a request that is not of the
shape SPEC §3 fixes) and ``EvalError`` (an evaluation error inside one decision; never escapes
the engine) are the only exception types the stages raise.
"""

from __future__ import annotations

from dataclasses import dataclass

#: At most this many diagnostics are rendered; the rest are counted.
MAX_RENDERED_DIAGNOSTICS = 50


@dataclass(frozen=True)
class Diagnostic:
    """One positioned problem in a policy, data or suite file.

    ``line`` and ``column`` are 1-based; both are 0 when the problem has no position
    (a missing path, an unreadable file).
    """

    file: str
    line: int
    column: int
    message: str
    code: str = "pdl_error"
    source_line: str | None = None

    def render(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        head = f"{self.file}:{self.line}:{self.column}: {self.message}"
        if self.source_line is None:
            return head
        # Keep tabs under tabs so the caret lines up in any terminal.
        prefix = "".join(c if c == "\t" else " " for c in self.source_line[: max(self.column - 1, 0)])
        return f"{head}\n{self.source_line}\n{prefix}^"


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
