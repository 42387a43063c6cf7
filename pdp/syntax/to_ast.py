"""Parse tree ⇒ AST: one Transformer method per grammar rule; spans from Lark's positions.

No semantic checks here (that is pdp/check); only literal decoding, whose errors are
collected and raised together as syntax errors.
"""

from __future__ import annotations

import functools

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput

from ..errors import Diagnostic
from ..limits.store import MAX_LIMIT_PERIOD
from ..source import SourceFile, Span
from . import ast
from .literals import decode_string, parse_duration, parse_number
from .inline import InlineParser
from .parser import MAX_NESTING, SyntaxProblem, lark_parser, parse_tree


def parse_module(text: str, source: SourceFile) -> ast.Module:
    """Policy source text ⇒ ``ast.Module``; raises ``SyntaxProblem`` with every syntax error."""
    policies = _parse_valid(text, source, "start")
    if policies is None:  # not valid: the tree parser recovers and words every problem
        tree, diagnostics = parse_tree(text, source)
        builder = _ToAst(source)
        policies = builder.transform(tree)
        if diagnostics or builder.diagnostics:
            raise SyntaxProblem(diagnostics + builder.diagnostics)
    return ast.Module(source.name, tuple(policies))


def parse_expression(text: str, source: SourceFile, line: int = 0, column: int = 0) -> ast.Expr:
    """Expression text ⇒ AST, placed at ``line``/``column`` of ``source`` (for ``{…}`` in reasons)."""
    expr = _parse_valid(text, source, "expr", line, column)
    if expr is None:
        tree, _ = parse_tree(text, source, start="expr", line_offset=line, column_offset=column)
        builder = _ToAst(source, line, column)
        expr = builder.transform(tree)
        if builder.diagnostics:
            raise SyntaxProblem(builder.diagnostics)
    return expr


def _parse_valid(text: str, source: SourceFile, start: str, line: int = 0, column: int = 0):
    """The AST built during the parse (pdp/syntax/inline.py), or None when the text has any
    problem: then the tree parser, which recovers after errors, reports them."""
    builder = _ToAst(source, line, column)
    try:
        value, depth = inline_parser().parse(text, start, builder)
    except UnexpectedInput:
        return None
    if depth > MAX_NESTING or builder.diagnostics:
        return None
    return value


@functools.lru_cache(maxsize=1)
def inline_parser() -> InlineParser:
    return InlineParser(lark_parser())


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, source: SourceFile, line_offset: int = 0, column_offset: int = 0):
        super().__init__()
        self.source = source
        self.line_offset = line_offset
        self.column_offset = column_offset
        self.diagnostics: list[Diagnostic] = []

    # ---- positions ----

    def _span(self, meta) -> Span:
        shift = self.line_offset
        line, end_line = meta.line, meta.end_line
        column_shift = self.column_offset if line == 1 else 0
        end_column_shift = self.column_offset if end_line == 1 else 0
        return Span(self.source, line + shift, meta.column + column_shift,
                    end_line + shift, meta.end_column + end_column_shift)

    def _token_span(self, token: Token) -> Span:
        line = token.line + self.line_offset
        col_shift = self.column_offset if token.line == 1 else 0
        return Span(self.source, line, token.column + col_shift,
                    token.end_line + self.line_offset, token.end_column + col_shift)

    def _error(self, span: Span, message: str, code: str = "pdl_syntax") -> None:
        self.diagnostics.append(span.diagnostic(message, code))

    # ---- declarations ----

    def start(self, meta, children):
        return children

    def policy(self, meta, children):
        annotations = tuple(c for c in children if isinstance(c, ast.Annotation))
        name = next(c for c in children if isinstance(c, Token))
        items = tuple(c for c in children if isinstance(c, (ast.Target, ast.Let, ast.Rule, ast.Limit)))
        return ast.Policy(str(name), annotations, items, self._span(meta), self._token_span(name))

    def annotation(self, meta, children):
        key, value = children
        return ast.Annotation(str(key), self._string(value), self._span(meta))

    def target(self, meta, children):
        return ast.Target(children[0], self._span(meta))

    def let(self, meta, children):
        name, expr = children
        return ast.Let(str(name), expr, self._span(meta))

    def rule(self, meta, children):
        annotations = tuple(c for c in children if isinstance(c, ast.Annotation))
        effect = next(c for c in children if isinstance(c, Tree) and c.data == "effect")
        name = next(c for c in children if isinstance(c, Token))
        clauses = dict(c for c in children if isinstance(c, tuple))
        return ast.Rule(
            str(effect.children[0]), str(name), annotations,
            clauses.get("when"), clauses.get("unless"), clauses.get("reason"),
            self._span(meta), self._token_span(name),
        )

    def limit(self, meta, children):
        annotations = tuple(c for c in children if isinstance(c, ast.Annotation))
        name, count, period = (c for c in children if isinstance(c, Token))
        keys = tuple(c for c in children if not isinstance(c, (ast.Annotation, Token, tuple)))
        clauses = dict(c for c in children if isinstance(c, tuple))
        count_span, period_span = self._token_span(count), self._token_span(period)
        count_value, period_value = self._count(count, count_span), self._period(period, period_span)
        if count_value > round(period_value * 1_000_000):  # Redis counts a unit's return in whole µs
            self._error(count_span, f"a limit's budget is at most one request per microsecond of its period, "
                                    f"got {count} per {period}")
            count_value = 1
        return ast.Limit(
            str(name), annotations, count_value, period_value, str(period),
            keys, clauses.get("when"), clauses.get("unless"), clauses.get("reason"),
            self._span(meta), self._token_span(name), count_span, period_span,
        )

    def _count(self, token: Token, span: Span) -> int:
        """A limit's budget: a whole number of requests, at least 1."""
        try:
            value = parse_number(str(token))
        except ValueError as exc:
            self._error(span, str(exc))
            return 1
        if type(value) is not int or value < 1:
            self._error(span, f"a limit's budget is a whole number of requests of at least 1, got {token}")
            return 1
        return value

    def _period(self, token: Token, span: Span) -> float:
        try:
            value = parse_duration(str(token))
        except ValueError as exc:
            self._error(span, str(exc))
            return 1
        if value <= 0:
            self._error(span, f"a limit's period must be longer than 0s, got {token}")
            return 1
        if value > MAX_LIMIT_PERIOD:  # budgets count nanoseconds in 64 bits
            self._error(span, f"a limit's period is at most 36500d (100 years), got {token}")
            return 1
        return value

    def effect(self, meta, children):
        return Tree("effect", children)

    def when(self, meta, children):
        return ("when", children[0])

    def unless(self, meta, children):
        return ("unless", children[0])

    def reason(self, meta, children):
        return ("reason", self._reason(children[0]))

    # ---- expressions ----

    def or_(self, meta, children):
        return ast.Or(tuple(children), self._span(meta))

    def and_(self, meta, children):
        return ast.And(tuple(children), self._span(meta))

    def not_(self, meta, children):
        return ast.Not(children[0], self._span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.Compare(op, left, right, self._span(meta))

    def compare_op(self, meta, children):
        return " ".join(str(c) for c in children)

    def attribute(self, meta, children):
        obj, name = children
        return ast.Attribute(obj, name, self._span(meta))

    def attr_name(self, meta, children):
        return str(children[0])

    def index(self, meta, children):
        obj, key = children
        return ast.Index(obj, key, self._span(meta))

    def call(self, meta, children):
        func, *args = children
        return ast.Call(str(func), tuple(args), self._span(meta))

    def list(self, meta, children):
        return ast.ListExpr(tuple(children), self._span(meta))

    def name(self, meta, children):
        return ast.Name(str(children[0]), self._span(meta))

    def string(self, meta, children):
        return ast.Literal(self._string(children[0]), str(children[0]), self._span(meta))

    def number(self, meta, children):
        return self._decoded(meta, children[0], parse_number)

    def duration(self, meta, children):
        return self._decoded(meta, children[0], parse_duration)

    def true(self, meta, children):
        return ast.Literal(True, "true", self._span(meta))

    def false(self, meta, children):
        return ast.Literal(False, "false", self._span(meta))

    # ---- literals ----

    def _decoded(self, meta, token: Token, decode) -> ast.Literal:
        span = self._span(meta)
        try:
            value = decode(str(token))
        except ValueError as exc:
            self._error(span, str(exc))
            value = 0
        return ast.Literal(value, str(token), span)

    def _string(self, token: Token) -> str:
        try:
            return decode_string(str(token))
        except ValueError as exc:
            self._error(self._token_span(token), str(exc))
            return ""

    def _reason(self, token: Token) -> ast.Reason:
        """Split a reason's text into literal runs and ``{expr}`` parts (``{{``/``}}`` are braces)."""
        span = self._token_span(token)
        raw = str(token)[1:-1]
        parts: list[str | ast.Expr] = []
        literal: list[str] = []
        i = 0
        while i < len(raw):
            pair = raw[i : i + 2]
            if pair in ("{{", "}}"):
                literal.append(pair[0])
                i += 2
            elif raw[i] == "{":
                end = _closing_brace(raw, i + 1)
                column = span.column + 1 + i  # +1 for the opening quote
                if end is None:
                    self._error(Span(self.source, span.line, column, span.line, column + 1),
                                "unclosed '{' in reason; write '{{' for a literal brace")
                    return ast.Reason(tuple(parts), span)
                if literal:
                    parts.append(self._literal_run("".join(literal), span))
                    literal = []
                parts.append(self._embedded(raw[i + 1 : end], span.line, column + 1))
                i = end + 1
            elif raw[i] == "}":
                column = span.column + 1 + i
                self._error(Span(self.source, span.line, column, span.line, column + 1),
                            "unmatched '}' in reason; write '}}' for a literal brace")
                i += 1
            else:
                literal.append(raw[i : i + 2] if raw[i] == "\\" else raw[i])
                i += 2 if raw[i] == "\\" else 1
        if literal:
            parts.append(self._literal_run("".join(literal), span))
        return ast.Reason(tuple(parts), span)

    def _literal_run(self, raw: str, span: Span) -> str:
        try:
            return decode_string(f'"{raw}"')
        except ValueError as exc:
            self._error(span, str(exc))
            return ""

    def _embedded(self, raw: str, line: int, column: int) -> ast.Expr:
        where = Span(self.source, line, column, line, column + len(raw))
        try:
            text = decode_string(f'"{raw}"')
        except ValueError as exc:
            self._error(where, str(exc))
            return ast.Literal("", "", where)
        if not text.strip():
            self._error(where, "empty '{}' in reason; write '{{}}' for literal braces")
            return ast.Literal("", "", where)
        try:
            return parse_expression(text, _DecodedSource(self.source, text, line, _file_columns(raw, column)))
        except SyntaxProblem as problem:
            self.diagnostics.extend(problem.diagnostics)
            return ast.Literal("", "", where)


class _DecodedSource:
    """A reason's ``{…}`` after its escapes are decoded: positions in that text map back to the file.

    ``{data.roles[\\"admin\\"] == nope}`` is parsed as ``data.roles["admin"] == nope``; each escape
    is one character shorter there than in the file, so a fixed column offset would drift.
    """

    def __init__(self, source: SourceFile, text: str, line: int, columns: list[int]):
        self.name = source.name
        self.text = text
        self._source = source
        self._line = line
        self._columns = columns  # file column of each decoded character, and of the end
        self._decoded = SourceFile(source.name, text)

    def position(self, offset: int) -> tuple[int, int]:
        return self._decoded.position(offset)

    def diagnostic(self, line: int, column: int, message: str, code: str = "pdl_error") -> Diagnostic:
        start = 0
        for _ in range(line - 1):  # decoded text has several lines only when written with \\n
            start = self.text.find("\n", start) + 1
        text_offset = min(max(start + column - 1, 0), len(self._columns) - 1)
        return self._source.diagnostic(self._line, self._columns[text_offset], message, code)


def _file_columns(raw: str, column: int) -> list[int]:
    """The file column of each character that ``raw`` (escaped, starting at ``column``) decodes to."""
    columns = []
    i = 0
    while i < len(raw):
        columns.append(column + i)
        if raw[i] != "\\":
            i += 1
        elif raw[i + 1] != "u":
            i += 2
        elif 0xD800 <= int(raw[i + 2 : i + 6], 16) < 0xDC00:
            i += 12  # a surrogate pair decodes to one character
        else:
            i += 6
    columns.append(column + len(raw))
    return columns


def _closing_brace(raw: str, start: int) -> int | None:
    """Index of the ``}`` closing an interpolation, skipping strings written as ``\\"…\\"``."""
    in_string = False
    i = start
    while i < len(raw):
        if raw.startswith('\\"', i):
            in_string = not in_string
            i += 2
        elif in_string and raw.startswith("\\\\", i):
            # An escape inside the expression's string (`\"`, `\\`, `\n` written as `\\\"`, `\\\\`,
            # `\\n`): the escaped character, `\"` included, does not end the string.
            i += 2
            i += 2 if raw.startswith("\\", i) else 1
        elif raw[i] == "\\":
            i += 2
        elif raw[i] == "}" and not in_string:
            return i
        else:
            i += 1
    return None
