"""Parsing: policy source text ⇒ Lark parse tree, with syntax errors in a policy author's words.

The Lark LALR parser is built once per process from ``grammar/pdl.lark``. After a syntax
error the parser resumes at the next top-level ``policy`` (or annotation) so one run
reports the syntax errors of every policy in a file, not only the first.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import Diagnostic
from ..source import SourceFile

#: Deeper expressions are refused: every stage after the parser recurses over the tree.
MAX_NESTING = 100

#: At most this many syntax errors are collected from one file.
MAX_SYNTAX_ERRORS = 20

_TOKEN_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "DURATION": "a duration",
    "$END": "end of file",
}
_COMPARISON_OPS = {"==", "!=", "<", "<=", ">", ">=", "in", "contains", "contains_any",
                   "contains_all", "matches", "startswith", "endswith"}
_CHARACTER_HINTS = {
    "&": "use 'and' to combine conditions",
    "|": "use 'or' to combine conditions",
    "!": "use 'not' to negate, or '!=' to compare",
    "'": "strings use double quotes",
    '"': "the string is not closed on this line",
    "=": "use '==' to compare",
}
_NEXT_ITEM_WORDS = {"'permit'", "'forbid'", "'limit'", "'let'", "'target'", "'@'", "'}'"}
_RESUME = re.compile(r"^(?:@|policy\b)", re.MULTILINE)


class SyntaxProblem(Exception):
    """Raised by :func:`parse_tree` with every syntax diagnostic of one file."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))


class _AcceptNamesEverywhere:
    """A Lark post-lexer that makes every lexer state consider NAME.

    Keywords are then recognised only as whole words (``andy`` is a name, not ``and`` + ``y``),
    while after ``.`` — where only NAME is expected — keywords stay attribute names.
    """

    always_accept = ("NAME",)

    def process(self, stream):
        return stream


def grammar_text() -> str:
    """The grammar: packaged beside this module in a wheel, at ``grammar/`` in a checkout."""
    packaged = resources.files("pdp").joinpath("pdl.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammar" / "pdl.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=2)
def lark_parser(keep_all_tokens: bool = False) -> Lark:
    """The parser; ``keep_all_tokens`` keeps punctuation and keywords in the tree (for pdp fmt)."""
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        keep_all_tokens=keep_all_tokens,
        postlex=_AcceptNamesEverywhere(),
        start=["start", "expr"],
    )


def parse_tree(text: str, source: SourceFile, start: str = "start",
               line_offset: int = 0, column_offset: int = 0) -> tuple[Tree, list[Diagnostic]]:
    """Parse ``text`` (all of ``source``, or an expression inside it) into a Lark tree.

    ``line_offset``/``column_offset`` place an embedded expression (a reason's ``{…}``) at its
    position in the file. After a syntax error the parse resumes at the next top-level item:
    returns the tree of what parsed last and the errors met before it; raises
    :class:`SyntaxProblem` when nothing parsed.
    """
    parser = lark_parser()
    diagnostics: list[Diagnostic] = []
    remaining = text
    while True:
        try:
            tree = parser.parse(remaining, start=start)
        except UnexpectedInput as exc:
            diagnostic = _diagnose(exc, source, line_offset, column_offset)
            if start == "expr":  # a reason's `{…}`: its text ends at the brace, not at the end of the file
                diagnostic = dataclasses.replace(
                    diagnostic, message=diagnostic.message.replace("end of file", "end of '{...}'"))
            diagnostics.append(diagnostic)
            resume = _resume_offset(remaining, exc) if start == "start" else None
            if resume is None or len(diagnostics) >= MAX_SYNTAX_ERRORS:
                raise SyntaxProblem(diagnostics) from None
            # Blank out what was read, keeping line breaks so positions stay true.
            remaining = re.sub(r"[^\n]", " ", remaining[:resume]) + remaining[resume:]
            continue
        _check_nesting(tree, source, line_offset, column_offset)
        return tree, diagnostics


def _resume_offset(text: str, exc: UnexpectedInput) -> int | None:
    pos = getattr(exc, "pos_in_stream", None)
    if pos is None:
        token = getattr(exc, "token", None)
        pos = getattr(token, "start_pos", None)
    if pos is None:
        return None
    line_end = text.find("\n", pos)
    if line_end < 0:
        return None
    match = _RESUME.search(text, line_end + 1)
    return match.start() if match else None


def _place(line: int, column: int, line_offset: int, column_offset: int) -> tuple[int, int]:
    return line + line_offset, column + (column_offset if line == 1 else 0)


def _diagnose(exc: UnexpectedInput, source: SourceFile, line_offset: int, column_offset: int) -> Diagnostic:
    line, column = _place(exc.line if exc.line > 0 else 1, exc.column if exc.column > 0 else 1,
                          line_offset, column_offset)
    token = getattr(exc, "token", None)
    if isinstance(token, Token) and token.type == "$END" and token.end_line:
        # Lark places the end of input at the last token read: the caret goes just after it.
        line, column = _place(token.end_line, token.end_column, line_offset, column_offset)
    if isinstance(exc, UnexpectedCharacters):
        char = exc.char
        shown = repr(char) if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"
        if shown.startswith("U+") and unicodedata.name(char, ""):  # invisible: name it (a pasted no-break space)
            shown += f" ({unicodedata.name(char).lower()})"
        message = f"unexpected character {shown}"
        if char in _CHARACTER_HINTS:
            message += f"; {_CHARACTER_HINTS[char]}"
    elif isinstance(exc, UnexpectedToken):
        # `accepts` is exact for the state the parser is in; `expected` may list more.
        message = _unexpected_token_message(exc.token, set(exc.accepts or exc.expected))
    elif isinstance(exc, UnexpectedEOF):
        line, column = _end_position(source)
        message = f"unexpected end of file; expected {_describe_expected(set(exc.expected))}"
    else:  # pragma: no cover - Lark raises only the three kinds above
        message = "syntax error"
    return source.diagnostic(line, column, message, "pdl_syntax")


def _end_position(source: SourceFile) -> tuple[int, int]:
    return source.position(len(source.text.rstrip()))


def _unexpected_token_message(token: Token, expected: set[str]) -> str:
    if token.type == "$END":
        found = "end of file"
    elif token.type == "NAME":
        found = f"name {token.value!r}"
    elif token.type in _TOKEN_WORDS:
        found = f"{_TOKEN_WORDS[token.type][2:]} {token.value}"
    else:
        found = repr(str(token.value))
    message = f"unexpected {found}; expected {_describe_expected(expected)}"
    if str(token.value) in _COMPARISON_OPS and "AND" in expected:
        message += "; comparisons do not chain: join them with 'and'"
    elif token.type == "EQUAL":
        message += "; use '==' to compare"
    return message


def _describe_expected(names: set[str]) -> str:
    parser = lark_parser()
    words: list[str] = []
    operators = False
    for name in names:
        if name in _TOKEN_WORDS:
            words.append(_TOKEN_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        value = pattern.value if pattern.type == "str" else None
        if value is None:
            continue
        if value in _COMPARISON_OPS:
            operators = True
        else:
            words.append(repr(value))
    if operators:
        words.append("an operator such as '==' or 'in'")
    if "'permit'" in words and "'}'" in words:
        # Anything that may start the next item of a policy: name the idea, not every keyword.
        words = [w for w in words if w not in _NEXT_ITEM_WORDS] + ["the next rule or '}'"]
    words = sorted(set(words), key=lambda w: (not w.startswith("'"), w))
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return "one of " + ", ".join(words[:-1]) + " or " + words[-1]


def _check_nesting(tree: Tree, source: SourceFile, line_offset: int, column_offset: int) -> None:
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            meta = node.meta
            line, column = _place(getattr(meta, "line", 1), getattr(meta, "column", 1),
                                  line_offset, column_offset)
            raise SyntaxProblem([source.diagnostic(
                line, column, f"expression nested too deeply (more than {MAX_NESTING} levels)",
                "pdl_nesting")])
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))
