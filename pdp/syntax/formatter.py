"""Canonical layout of policy source text (``pdp fmt``).

The formatter re-spaces the tokens of Lark's parse tree (from a parser that keeps every
token), so an expression form the grammar gains formats without a case of its own. Only the
layout knows the tree:

- one statement per line: an annotation, a policy's head, a ``target``, a ``let``, a rule's
  head; each clause of a rule (:data:`CLAUSES`) on its own line, two spaces further in;
- an ``and``/``or`` chain the author broke across lines gets one operand per line, the
  operator right-aligned under the clause keyword; an unbroken one stays on one line;
- a list or call the author opened with a line break gets one item per line, with a
  trailing comma;
- blank lines between statements are kept (at most one), policies are one blank line apart.

Comments, which the grammar skips, are found by a scan of the text and put back by
position: a comment alone on its line goes above the line of the token that follows it, a
comment after code goes at the end of the line of the token before it.

Formatting never changes what a policy means: the result is parsed again and its syntax tree
must equal the original's, and every comment must still be there, or :class:`FormatError` is raised
and nothing is written.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from lark import Token, Tree

from ..source import SourceFile
from .parser import lark_parser
from .to_ast import parse_module

#: Parse-tree nodes that are clauses of a rule: each goes on its own line under the rule's head.
CLAUSES = frozenset({"when", "unless", "reason"})

#: Tree nodes whose items may be laid out one per line (they always accept a trailing comma).
_ITEM_GROUPS = frozenset({"list", "call"})

_NO_SPACE_AFTER = frozenset({"(", "[", ".", "@"})
_NO_SPACE_BEFORE = frozenset({")", "]", ",", "."})
_VALUE_END_TYPES = frozenset({"NAME", "STRING", "NUMBER", "DURATION"})
_VALUE_END_WORDS = frozenset({")", "]", "true", "false"})
_INDENT = 2


class FormatError(Exception):
    """The formatted text would not mean what the original does (a bug in the formatter)."""


def format_source(text: str, name: str = "<policy>") -> str:
    """The canonical form of a policy file's text.

    Raises ``SyntaxProblem`` (with positions) when the text does not parse, and
    :class:`FormatError` should the result ever differ in meaning or lose a comment.
    """
    text = text.replace("\r\n", "\n")
    original = parse_module(text, SourceFile(name, text))  # positioned errors for bad input
    comments = _comments(text)
    tree = lark_parser(keep_all_tokens=True).parse(text, start="start")
    printer = _Printer(text, tree, comments)
    printer.file(tree)
    result = printer.result()
    _check_same(original, comments, result, name)
    return result


def _check_same(original, comments: list[_Comment], result: str, name: str) -> None:
    again = parse_module(result, SourceFile(name, result))
    if again.policies != original.policies:
        raise FormatError(f"{name}: formatting would change the policies; the file is left as it was")
    # Order may change where a comment stood inside an expression laid out anew; none may be lost.
    if sorted(c.text for c in _comments(result)) != sorted(c.text for c in comments):
        raise FormatError(f"{name}: formatting would lose a comment; the file is left as it was")


# ---- comments -----------------------------------------------------------------------------------


@dataclass
class _Comment:
    pos: int  # offset of '#'
    line: int  # 1-based
    text: str  # from '#' to the end of the line, trailing spaces removed
    alone: bool  # nothing but blanks before it on its line


def comment_start(line: str) -> int | None:
    """Where a line's ``#`` comment starts, as the lexer finds it: outside string literals
    (which never span lines); None without one."""
    in_string = escaped = False
    for i, char in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            return i
    return None


def _comments(text: str) -> list[_Comment]:
    """Every ``#`` comment of ``text``, with its offset and line."""
    found: list[_Comment] = []
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        i = comment_start(line)
        if i is not None:
            found.append(_Comment(offset + i, number, line[i:].rstrip(), not line[:i].strip()))
        offset += len(line) + 1
    return found


# ---- the printer --------------------------------------------------------------------------------


@dataclass
class _Line:
    indent: int
    statement: bool  # the first line of a statement: blank lines before it are kept
    comment_indent: int
    closing: bool = False  # a block's closing brace: never a blank line just before it
    force_blank: bool = False
    pieces: list[str] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)  # every source token placed on it, shown or not
    last: Token | None = None  # the last token shown

    def column(self) -> int:
        return self.indent + sum(map(len, self.pieces))


def _tokens(node) -> list[Token]:
    if isinstance(node, Token):
        return [node]
    out: list[Token] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            out.append(item)
        else:
            stack.extend(reversed(item.children))
    return out


def _space_between(prev: Token | None, tok: Token) -> bool:
    if prev is None:
        return False
    if prev.value in _NO_SPACE_AFTER or tok.value in _NO_SPACE_BEFORE:
        return False
    if prev.value == "{" and tok.value == "}":
        return False
    if tok.value in ("(", "["):
        # A call or an index follows a value directly; a list or a group follows an operator.
        ends_value = prev.type in _VALUE_END_TYPES or prev.value in _VALUE_END_WORDS
        return not ends_value
    return True


class _Printer:
    def __init__(self, text: str, tree: Tree, comments: list[_Comment]):
        self.source = text.split("\n")
        self.out: list[str] = []
        self.line: _Line | None = None
        self.block_start = True
        self.before: dict[int, list[_Comment]] = defaultdict(list)
        self.after: dict[int, list[_Comment]] = defaultdict(list)
        self.end: list[_Comment] = []
        tokens = sorted(_tokens(tree), key=lambda t: t.start_pos)
        self.starts = starts = [t.start_pos for t in tokens]
        for comment in comments:
            at = bisect.bisect_left(starts, comment.pos)
            if comment.alone or at == 0:
                if at < len(tokens):
                    self.before[tokens[at].start_pos].append(comment)
                else:
                    self.end.append(comment)
            else:
                self.after[tokens[at - 1].start_pos].append(comment)

    # -- lines --

    def newline(self, indent: int, statement: bool = False, comment_indent: int | None = None,
                closing: bool = False, force_blank: bool = False) -> None:
        self.flush()
        self.line = _Line(max(indent, 0), statement,
                          indent if comment_indent is None else comment_indent, closing, force_blank)

    def put(self, tok: Token) -> None:
        line = self.line
        assert line is not None
        if _space_between(line.last, tok):
            line.pieces.append(" ")
        line.pieces.append(tok.value)
        line.tokens.append(tok)
        line.last = tok

    def absorb(self, tok: Token) -> None:
        """Place a token without showing it (a trailing comma dropped): its comments stay."""
        assert self.line is not None
        self.line.tokens.append(tok)

    def next_column(self, tok: Token) -> int:
        line = self.line
        assert line is not None
        return line.column() + (1 if _space_between(line.last, tok) else 0)

    def _blank_before(self, line_number: int) -> bool:
        return line_number >= 2 and not self.source[line_number - 2].strip()

    def _emit_blank(self) -> None:
        if self.out and self.out[-1] != "":
            self.out.append("")

    def flush(self) -> None:
        line, self.line = self.line, None
        if line is None or not line.tokens:
            return
        leading = [c for t in line.tokens for c in self.before.pop(t.start_pos, [])]
        first = leading[0].line if leading else line.tokens[0].line
        keep_blank = line.statement and not self.block_start and (leading or not line.closing)
        if line.force_blank or (keep_blank and self._blank_before(first)):
            self._emit_blank()
        for i, comment in enumerate(leading):
            if i and line.statement and self._blank_before(comment.line):
                self._emit_blank()
            self.out.append(" " * line.comment_indent + comment.text)
        code_line = line.tokens[0].line
        if leading and line.statement and not line.closing and self._blank_before(code_line) \
                and code_line - 1 > leading[-1].line:
            self._emit_blank()
        trailing = [c for t in line.tokens for c in self.after.pop(t.start_pos, [])]
        if line.pieces:
            text = " " * line.indent + "".join(line.pieces)
            if trailing:
                text += "  " + trailing.pop(0).text
            self.out.append(text)
        elif trailing and self.out:  # only dropped tokens: the comment goes on the previous line
            self.out[-1] += "  " + trailing.pop(0).text
        if trailing:
            # Several comments ended up after one line: the others go on their own lines,
            # above the next line, where formatting again would put them too.
            at = bisect.bisect_right(self.starts, line.tokens[-1].start_pos)
            if at < len(self.starts):
                self.before[self.starts[at]][:0] = trailing
            else:
                self.end[:0] = trailing
        self.block_start = False

    def result(self) -> str:
        self.flush()
        for comment in self.end:  # after the last policy
            if self._blank_before(comment.line):
                self._emit_blank()
            self.out.append(comment.text)
        while self.out and self.out[-1] == "":
            self.out.pop()
        return "\n".join(self.out) + "\n" if self.out else ""

    # -- structure --

    def file(self, tree: Tree) -> None:
        for number, node in enumerate(tree.children):
            if isinstance(node, Tree) and node.data == "policy":
                self.policy(node, force_blank=number > 0)
            else:
                self.statement(node, 0, force_blank=number > 0)

    def policy(self, node: Tree, force_blank: bool) -> None:
        """Annotations, ``policy NAME {``, the items two spaces in, ``}``."""
        first = True
        head_open = in_body = False
        body: list = []
        closing = node.children[-1]
        for child in node.children[:-1]:
            if in_body:
                body.append(child)
            elif isinstance(child, Tree) and child.data == "annotation":
                self.newline(0, statement=first, force_blank=force_blank and first)
                first = False
                self.expr(child)
            else:
                if not head_open:
                    self.newline(0, statement=first, force_blank=force_blank and first)
                    first, head_open = False, True
                self.expr(child)
                in_body = isinstance(child, Token) and child.value == "{"
        if not body and not self.before.get(closing.start_pos):
            self.put(closing)  # `policy empty {}`
            return
        self.flush()
        self.block_start = True
        for item in body:
            self.statement(item, _INDENT)
        self.newline(0, statement=True, comment_indent=_INDENT, closing=True)
        self.put(closing)
        self.flush()

    def statement(self, node, indent: int, force_blank: bool = False) -> None:
        """A policy item (or anything else at statement level): annotations on their own lines,
        the head, then each clause on its own line."""
        if isinstance(node, Token):
            self.newline(indent, statement=True, force_blank=force_blank)
            self.put(node)
            return
        first = True
        head = False
        for child in node.children:
            if isinstance(child, Tree) and child.data == "annotation" and not head:
                self.newline(indent, statement=first, force_blank=force_blank and first)
                first = False
                self.expr(child)
            elif isinstance(child, Tree) and child.data in CLAUSES:
                self.newline(indent + _INDENT)
                self.clause(child)
            else:
                if not head:
                    self.newline(indent, statement=first, force_blank=force_blank and first)
                    first = False
                    head = True
                self.expr(child)

    def clause(self, node: Tree) -> None:
        for child in node.children:
            self.expr(child)

    def expr(self, node) -> None:
        if isinstance(node, Token):
            self.put(node)
            return
        if node.data in ("and_", "or_") and _broken_chain(node):
            self.chain(node)
            return
        if _multiline_group(node):
            self.group(node)
            return
        children = node.children
        for i, child in enumerate(children):
            if _dropped_comma(children, i):
                self.absorb(child)
            else:
                self.expr(child)

    def chain(self, node: Tree) -> None:
        operand_column = None
        for child in node.children:
            if isinstance(child, Token) and child.value in ("and", "or"):
                assert operand_column is not None
                self.newline(operand_column - len(child.value) - 1)
                self.put(child)
            else:
                if operand_column is None:
                    operand_column = self.next_column(_tokens(child)[0])
                self.expr(child)

    def group(self, node: Tree) -> None:
        """A list or call with one item per line: ``[`` ends its line, ``]`` starts one."""
        assert self.line is not None
        indent = self.line.indent
        children = node.children
        opener = next(i for i, c in enumerate(children) if isinstance(c, Token) and c.value in ("(", "["))
        for child in children[:opener + 1]:
            self.expr(child)
        item_started = False
        for child in children[opener + 1:]:
            if isinstance(child, Token) and child.value in (")", "]"):
                if item_started:
                    self.line.pieces.append(",")  # type: ignore[union-attr]
                self.newline(indent)
                self.put(child)
            elif isinstance(child, Token) and child.value == ",":
                self.absorb(child)
                self.line.pieces.append(",")  # type: ignore[union-attr]
                item_started = False
            else:
                self.newline(indent + _INDENT)
                self.expr(child)
                item_started = True


def _broken_chain(node: Tree) -> bool:
    """True when the author put a line break next to one of the chain's operators."""
    children = node.children
    for i, child in enumerate(children):
        if isinstance(child, Token) and child.value in ("and", "or"):
            before = _tokens(children[i - 1])[-1]
            after = _tokens(children[i + 1])[0]
            if before.end_line != child.line or after.line != child.line:
                return True
    return False


def _multiline_group(node: Tree) -> bool:
    """A list or call whose first item the author put on a new line."""
    if node.data not in _ITEM_GROUPS:
        return False
    children = node.children
    for i, child in enumerate(children):
        if isinstance(child, Token) and child.value in ("(", "["):
            nxt = children[i + 1] if i + 1 < len(children) else None
            if nxt is None or (isinstance(nxt, Token) and nxt.value in (")", "]")):
                return False
            return _tokens(nxt)[0].line != child.line
    return False


def _dropped_comma(children: list, i: int) -> bool:
    """A trailing comma before a closing bracket, which the one-line form leaves out."""
    child = children[i]
    if not (isinstance(child, Token) and child.value == ","):
        return False
    nxt = children[i + 1] if i + 1 < len(children) else None
    return isinstance(nxt, Token) and nxt.value in (")", "]")
