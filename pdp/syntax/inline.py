"""Building the AST inside the LALR parse, without a parse tree.

Lark's parse-tree builder makes a ``Tree`` per reduction, propagates positions into its
``meta`` and a ``Transformer`` then walks the tree again: for 10,000 rules that was two
thirds of the parse. Here each reduction calls the builder's method for its rule at once,
with the children and positions that method would have seen on the tree: this module
applies Lark's shaping rules (which tokens are kept, which ``?rule``s inline their only
child, which ``_rule``s splice their children into the parent, where a node starts and
ends) to builder values instead of trees. Lark's ``transformer=`` option cannot do this: it
gives no positions.

The lexing and LALR loop are Lark's (contextual lexer, ``feed_token``) in one Python loop,
over the tree parser's own tables and per-state terminal patterns, so any grammar change
applies here as well. It is meant for valid input: on any error the caller falls back to the
tree parser, which recovers and words the diagnostics (see to_ast.py).
"""

from __future__ import annotations

import operator

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import ContextualLexer
from lark.parsers.lalr_analysis import Shift
from lark.tree import Meta
from lark.visitors import _vargs_meta


class _Node:
    """A reduced rule: the builder's value, the extent the node spans in the text (Lark's
    ``container`` positions: parentheses an inlined rule dropped included) and the depth
    the parse tree would have below it (for the nesting limit)."""

    __slots__ = ("value", "line", "column", "start_pos", "end_line", "end_column", "end_pos",
                 "height", "items", "empty")

    def __init__(self):
        self.empty = False


class InlineParser:
    """Parses with ``lark``'s tables and lexer, building values with a builder per parse.

    A builder has a method named after each rule (or alias), called as
    ``method(meta, children)`` like a ``v_args(meta=True)`` Transformer, and a
    ``__default__(data, children, meta)`` for the others. Raises Lark's ``UnexpectedInput``
    when the text does not parse (without Lark's details: the tree parser gives those).
    """

    def __init__(self, lark: Lark):
        options = lark.options
        if options.maybe_placeholders or options.keep_all_tokens or options.parser != "lalr" or options.lexer_callbacks:
            raise ValueError("inline building mirrors an LALR parser without placeholders, kept tokens or token callbacks")
        self._lark = lark
        self._lexers = _lexers(lark)
        table = lark.parser.parser._parse_table
        self._start_states, self._end_states = table.start_states, table.end_states
        nullable = _nullable(lark.rules)
        self._rules = []
        numbers = {}
        for rule in lark.rules:
            kept = rule.options.keep_all_tokens
            include = tuple((i, not sym.is_term and sym.name.startswith("_"))
                            for i, sym in enumerate(rule.expansion)
                            if kept or not (sym.is_term and sym.filter_out))
            numbers[rule] = len(self._rules)
            self._rules.append((
                rule,
                rule.alias or rule.options.template_source or rule.origin.name,
                bool(rule.options.expand1 and not rule.alias),
                include,
                any(not sym.is_term and sym.name in nullable for sym in rule.expansion),
            ))
        # The parse table as plain tuples: a shift is (True, next state); a reduction is
        # (False, (number of children, rule name, rule number)).
        self._actions = {
            state: {
                str(kind): (True, arg) if action is Shift else
                           (False, (len(arg.expansion), str(arg.origin.name), numbers[arg]))
                for kind, (action, arg) in actions.items()
            }
            for state, actions in table.states.items()
        }

    def parse(self, text: str, start: str, builder):
        """``(value, height)``: the start rule's value and the parse tree's depth."""
        result = self._run(text, start, self._callbacks(builder))
        if type(result) is not _Node:
            return result, 0
        return result.value, result.height

    def _run(self, text: str, start: str, callbacks: list):
        """Lark's contextual lexer (BasicLexer.next_token) and LALR loop (ParserState.feed_token)
        in one loop over the same tables: ~40% of a parse was their per-token calls."""
        actions, lexers = self._actions, self._lexers
        states = [self._start_states[start]]
        end_state = self._end_states[start]
        values: list = []
        pos, line, line_start, end = 0, 1, 0, len(text)
        new_str = str.__new__
        last = None
        while True:
            token = None
            scanners, retype, ignore, multiline = lexers[states[-1]]
            while pos < end:
                for scanner in scanners:
                    match = scanner.match(text, pos)
                    if match is not None:
                        break
                else:
                    raise UnexpectedCharacters(text, pos, line, pos - line_start + 1)
                value, kind = match.group(0), match.lastgroup
                ignored = kind in ignore
                if ignored and kind not in retype:
                    if kind in multiline and "\n" in value:
                        line += value.count("\n")
                        line_start = pos + value.rindex("\n") + 1
                    pos += len(value)
                    continue
                token = new_str(Token, value)
                token.type, token.value, token.start_pos = kind, value, pos
                token.line, token.column = line, pos - line_start + 1
                if kind in multiline and "\n" in value:
                    line += value.count("\n")
                    line_start = pos + value.rindex("\n") + 1
                pos += len(value)
                token.end_line, token.end_column, token.end_pos = line, pos - line_start + 1, pos
                if kind in retype:
                    token = retype[kind](token)
                if not ignored:
                    break
                token = None
            if token is None:  # the text is read: reduce on $END until the start rule stands
                token = Token.new_borrow_pos("$END", "", last) if last else Token("$END", "", 0, 1, 1)
            else:
                last = token
            kind = token.type
            while True:  # reduce as the token asks, then shift it
                try:
                    shift, arg = actions[states[-1]][kind]
                except KeyError:
                    raise UnexpectedToken(token, set()) from None
                if shift:
                    if kind == "$END":  # pragma: no cover - Lark's tables never shift $END
                        raise UnexpectedToken(token, set())
                    states.append(arg)
                    values.append(token)
                    break
                size, name, number = arg
                if size:
                    children = values[-size:]
                    del states[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(callbacks[number](children))
                states.append(actions[states[-1]][name][1])
                if kind == "$END" and states[-1] == end_state:
                    return values[-1]

    def _callbacks(self, builder) -> list:
        if any(hasattr(builder, t.name) for t in self._lark.terminals):
            raise ValueError("token callbacks are not mirrored: build tokens in the rules' methods")
        callbacks = []
        for rule, name, expand1, include, may_be_empty in self._rules:
            if expand1 and include == ((0, False),) and len(rule.expansion) == 1:
                # `?a: b`: the child itself, its extent unchanged.
                callbacks.append(operator.itemgetter(0))
                continue
            method = None if name.startswith("_") else _method(builder, name)
            callbacks.append(_reduction(method, expand1, include, may_be_empty))
        return callbacks


def _method(builder, name: str):
    """The builder's method for rule ``name`` as ``f(meta, children)``."""
    method = getattr(builder, name, None)
    if method is None:
        return _default(builder, name)
    wrapper = getattr(method, "visit_wrapper", None)
    if wrapper is _vargs_meta:
        return method.base_func  # skip the wrapper's call: one per node
    if wrapper is None:
        return lambda meta, children: method(children)
    raise ValueError(f"{name}: inline building calls rule methods with (meta, children) or (children)")


def _default(builder, name: str):
    default = builder.__default__

    def build(node, children):
        meta = Meta()
        if not node.empty:
            for attr in ("line", "column", "start_pos", "end_line", "end_column", "end_pos"):
                setattr(meta, attr, getattr(node, attr))
            meta.empty = False
        return default(name, children, meta)
    return build


def _reduction(method, expand1: bool, include: tuple, may_be_empty: bool):
    """One rule's reduction, shaped as Lark's tree builder would shape it (ChildFilter,
    ExpandSingleChild, PropagatePositions); ``method`` None marks a ``_rule`` to splice."""

    def reduce(children):
        filtered = []
        for i, splice in include:
            child = children[i]
            if splice:
                if filtered:
                    filtered += child.items
                else:  # left recursion (`a*` lists): extend the child's list, not a copy
                    filtered = child.items
            else:
                filtered.append(child)
        first = last = None
        if children:
            if may_be_empty:
                first = next((c for c in children if type(c) is not _Node or not c.empty), None)
                last = next((c for c in reversed(children) if type(c) is not _Node or not c.empty), None)
            else:
                first, last = children[0], children[-1]
        if expand1 and len(filtered) == 1:
            node = filtered[0]
            if type(node) is _Node and first is not None:  # an inlined rule: its container grows
                node.line, node.column, node.start_pos = first.line, first.column, first.start_pos
                node.end_line, node.end_column, node.end_pos = last.end_line, last.end_column, last.end_pos
                node.empty = False
            return node
        node = _Node()
        if first is None:
            node.empty = True
        else:
            node.line, node.column, node.start_pos = first.line, first.column, first.start_pos
            node.end_line, node.end_column, node.end_pos = last.end_line, last.end_column, last.end_pos
        if method is None:
            node.items = filtered
            return node
        height = 0
        values = []
        for child in filtered:
            if type(child) is _Node:
                if child.height > height:
                    height = child.height
                values.append(child.value)
            else:
                values.append(child)
        node.height = height + 1
        node.value = method(node, values)
        return node
    return reduce


def _lexers(lark: Lark) -> dict:
    """Per parser state, what its contextual lexer matches with: the terminals' combined
    patterns, the callbacks that retype names that are keywords, the ignored terminals
    and those that may span lines."""
    lexer = lark.parser.lexer
    postlex = lark.options.postlex
    if postlex is not None:
        marker = object()
        if postlex.process(marker) is not marker:
            raise ValueError("inline building mirrors a post-lexer only if it passes tokens through")
        lexer = lexer.lexer
    if not isinstance(lexer, ContextualLexer):
        raise ValueError("inline building mirrors Lark's contextual lexer")
    out = {}
    for state, basic in lexer.lexers.items():
        scanner = basic.scanner  # built on first use, with basic.callback
        out[state] = (tuple(scanner._mres), basic.callback, basic.ignore_types, basic.newline_types)
    return out


def _nullable(rules) -> set[str]:
    """Names of the rules that can match no input (their nodes carry no position)."""
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rule in rules:
            name = rule.origin.name
            if name not in nullable and all(not s.is_term and s.name in nullable for s in rule.expansion):
                nullable.add(name)
                changed = True
    return nullable

